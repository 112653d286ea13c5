"""What a server is allowed to do: where galleries live, who may ask, how big an upload may be."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:
    from .uploads import UploadBudget

CONFIG_ENV = "REID_SEARCH_SERVE_CONFIG"  # a ServeConfig as JSON, for worker processes


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
    max_pixels: int = 25_000_000  # per image (width x height), read from the header before decoding
    max_request_pixels: int = 40_000_000  # all images of one request together
    max_files: int = 32  # images per query (one tracklet)
    thumb_height: int = 160
    body_timeout: float = 30.0  # seconds a client may pause while sending its body
    allowed_hosts: tuple[str, ...] = ()  # Host names answered (empty: any); DNS-rebinding guard
    batch_images: int = 64  # most images one model call embeds across concurrent requests
    decode_slots: int = 2  # requests decoding their uploads at once (bounds memory)

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_request_pixels", "max_files", "thumb_height"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name} must be positive, not {getattr(self, name)}")
        if not self.body_timeout > 0:
            raise InputError(f"body_timeout must be positive, not {self.body_timeout}")

    def to_json(self) -> str:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["indexes_dir"] = str(self.indexes_dir) if self.indexes_dir else None
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        data = json.loads(text)
        data["indexes_dir"] = Path(data["indexes_dir"]) if data.get("indexes_dir") else None
        data["allowed_hosts"] = tuple(data.get("allowed_hosts") or ())
        return cls(**data)

    @property
    def upload_budget(self) -> UploadBudget:
        """The per-request upload limits, as the upload checks take them."""
        from .uploads import UploadBudget

        return UploadBudget(self.max_upload_bytes, self.max_pixels, self.max_request_pixels, self.max_files)

    @property
    def max_request_bytes(self) -> int:
        """Whole request bodies above this are refused (413), chunked or not, before the rest is read."""
        return self.max_upload_bytes * self.max_files + 2**20


def require_serve_extra() -> None:
    """A :class:`~reid_search.errors.MissingExtra` naming ``[serve]`` when FastAPI, uvicorn or
    python-multipart is missing."""
    import importlib.util

    from ..errors import require_extra

    for module in ("fastapi", "uvicorn"):
        require_extra(module, "serve", "reid-search serve")
    if importlib.util.find_spec("python_multipart") is None:  # older releases: only ``multipart``
        require_extra("multipart", "serve", "reid-search serve")
