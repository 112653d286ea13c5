"""``reid-search serve``: a JSON API and a one-page web UI over the galleries of an indexes folder.

Needs the ``[serve]`` extra (FastAPI, uvicorn, python-multipart). Usage::

    from reid_search.serve import ServeConfig, create_app
    app = create_app(ServeConfig(indexes_dir="indexes"))
    import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

from .config import ServeConfig


def create_app(config: ServeConfig | None = None):
    """The FastAPI application (imported here so ``reid_search.serve`` loads without FastAPI)."""
    from .app import create_app as _create

    return _create(config or ServeConfig())


__all__ = ["ServeConfig", "create_app"]
