"""What a server is allowed to do: where galleries live, who may ask, how big an upload may be."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SERVE_EXTRA_HINT = "reid-search serve needs FastAPI and uvicorn: pip install 'reid-search[serve]'"


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one server (``reid-search serve`` options).

    >>> ServeConfig(token="s3cret").max_upload_bytes
    8388608
    """

    indexes_dir: Path | None = None  # None: $REID_SEARCH_INDEXES or ./indexes
    default_gallery: str | None = None  # None: the only gallery, else the request must name one
    token: str | None = None  # when set, every /api call needs it (header or ?token=)
    max_upload_bytes: int = 8 * 2**20  # per image
    max_pixels: int = 25_000_000  # per image (width x height), checked before decoding
    max_files: int = 32  # images per query (one tracklet)
    thumb_height: int = 160

    @property
    def max_request_bytes(self) -> int:
        """Whole request bodies above this are refused (413) before they are read."""
        return self.max_upload_bytes * self.max_files + 2**20


def require_serve_extra() -> None:
    """A clear error naming the extra when FastAPI or uvicorn is missing."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        raise ModuleNotFoundError(f"{SERVE_EXTRA_HINT} (missing: {', '.join(missing)})")
