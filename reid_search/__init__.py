"""reid-search: person re-identification gallery search.

The public API (imported lazily, so ``import reid_search`` does not load TensorFlow)::

    from reid_search import Embedder, Gallery, build_gallery, search_gallery, evaluate

    embedder = Embedder()                                   # the default model
    gallery, report = build_gallery("data/bbox_test", name="demo", embedder=embedder)
    result = search_gallery(gallery, embedder, ["query.jpg"], top_k=5)
    metrics = evaluate("data/bbox_test", embedder=embedder)
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter quiet

_EXPORTS = {
    "Embedder": "reid_search.embedding.embedder",
    "Gallery": "reid_search.gallery",
    "build_gallery": "reid_search.gallery",
    "search_gallery": "reid_search.search.query",
    "compare_images": "reid_search.search.compare",
    "evaluate": "reid_search.evaluation",
    "scan_dataset": "reid_search.data.layouts",
    "load_model": "reid_search.embedding.backends",
    "generate_dataset": "reid_search.data.synthetic",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'reid_search' has no attribute {name!r}")
