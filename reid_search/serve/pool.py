"""Open galleries (and their models) shared by a server's requests, one request at a time each.

A gallery is opened once and kept; its FAISS index catches up by itself when ``index``
adds entries (SQLite's ``data_version`` moves), so a growing gallery is served without a
restart and only committed batches are ever seen. A rebuilt gallery (a new SQLite file
swapped in) is reopened. Names are checked against the galleries that exist in the
indexes folder: a request can never make the server open a path of its choosing.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..gallery import DB_FILE, Gallery, GalleryError, default_indexes_dir, list_galleries

GALLERY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class UnknownGallery(GalleryError):
    """A gallery name that is not one of the served galleries."""


@dataclass
class Handle:
    gallery: Gallery
    db_inode: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    _embedder: object = None

    @property
    def embedder(self):
        """The gallery's model, loaded on the first request that embeds (listing never does)."""
        if self._embedder is None:
            from ..embedding.embedder import Embedder

            model = self.gallery.manifest["model"].get("path")
            self._embedder = Embedder(model if model and Path(model).is_file() else None)
        return self._embedder


class GalleryPool:
    """name -> open gallery and its embedder, opened on first use."""

    def __init__(self, indexes_dir: Path | None = None, default: str | None = None):
        self.indexes_dir = Path(indexes_dir) if indexes_dir else default_indexes_dir()
        self.default = default
        self._handles: dict[str, Handle] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return [p.name for p in list_galleries(self.indexes_dir)]

    def resolve(self, name: str | None) -> str:
        """A served gallery's name from a request (None: the default or the only one)."""
        name = name or self.default
        known = self.names()
        if name is None:
            if len(known) == 1:
                return known[0]
            raise UnknownGallery(f"name a gallery (served: {', '.join(known) or 'none'})")
        if not GALLERY_NAME.match(name) or name not in known:
            raise UnknownGallery(f"no gallery {name!r} (served: {', '.join(known) or 'none'})")
        return name

    @contextmanager
    def use(self, name: str | None) -> Iterator[Handle]:
        """The gallery ``name`` (validated), held for this request only."""
        handle = self._handle(self.resolve(name))
        with handle.lock:
            yield handle

    def _handle(self, name: str) -> Handle:
        path = self.indexes_dir / name
        inode = (path / DB_FILE).stat().st_ino
        with self._lock:
            handle = self._handles.get(name)
            if handle is not None and handle.db_inode == inode:
                return handle
            if handle is not None:  # rebuilt and swapped in: open the new one
                handle.gallery.close()
            handle = Handle(Gallery.open(path), inode)
            self._handles[name] = handle
            return handle

    def close(self) -> None:
        with self._lock:
            for handle in self._handles.values():
                handle.gallery.close()
            self._handles.clear()
