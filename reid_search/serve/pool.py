"""Open galleries (and their models) shared by a server's requests.

A gallery is opened once and kept; its FAISS index catches up by itself when ``index``
adds entries (SQLite's ``data_version`` moves), so a growing gallery is served without a
restart and only committed batches are ever seen. A rebuilt gallery (a new SQLite file
swapped in) is reopened. Names are checked against the galleries that exist in the
indexes folder: a request can never make the server open a path of its choosing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..gallery import DB_FILE, Gallery, GalleryError, default_indexes_dir, list_galleries
from ..search.service import embedder_for_gallery
from .batcher import EmbedBatcher


class UnknownGallery(GalleryError):
    """A gallery name that is not one of the served galleries."""

    http_status = 404


@dataclass
class Handle:
    """One open gallery: its SQLite connection and FAISS cache (used under ``lock``), its model
    (loaded on the first request that embeds; listing never does) and that model's batcher."""

    gallery: Gallery
    db_inode: int
    batch_images: int = 64
    lock: threading.Lock = field(default_factory=threading.Lock)
    _embedder: object = None
    _batcher: EmbedBatcher | None = None
    _load_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def embedder(self):
        with self._load_lock:
            if self._embedder is None:
                self._embedder = embedder_for_gallery(self.gallery)
            return self._embedder

    @property
    def batcher(self) -> EmbedBatcher:
        embedder = self.embedder
        with self._load_lock:
            if self._batcher is None:
                self._batcher = EmbedBatcher(embedder, self.batch_images)
            return self._batcher

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        self.gallery.close()


class GalleryPool:
    """name -> open gallery and its embedder, opened on first use."""

    def __init__(self, indexes_dir: Path | None = None, default: str | None = None, batch_images: int = 64):
        self.indexes_dir = Path(indexes_dir) if indexes_dir else default_indexes_dir()
        self.default = default
        self.batch_images = batch_images
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
        if name not in known:
            raise UnknownGallery(f"no gallery {name[:80]!r} (served: {', '.join(known) or 'none'})")
        return name

    @contextmanager
    def use(self, name: str | None) -> Iterator[Handle]:
        """The gallery ``name`` (validated), its SQLite and FAISS held for this block only."""
        handle = self.handle(name)
        with handle.lock:
            yield handle

    def handle(self, name: str | None) -> Handle:
        """The open gallery ``name`` (validated); use ``handle.lock`` around its gallery."""
        return self._handle(self.resolve(name))

    def _handle(self, name: str) -> Handle:
        path = self.indexes_dir / name
        try:
            inode = (path / DB_FILE).stat().st_ino
        except OSError:
            raise GalleryError(
                f"gallery {name}: damaged (no {DB_FILE}); rebuild it with 'index --rebuild'"
            ) from None
        with self._lock:
            handle = self._handles.get(name)
            if handle is not None and handle.db_inode == inode:
                return handle
            if handle is not None:  # rebuilt and swapped in: open the new one
                handle.close()
            handle = Handle(Gallery.open(path), inode, self.batch_images)
            self._handles[name] = handle
            return handle

    def close(self) -> None:
        with self._lock:
            for handle in self._handles.values():
                handle.close()
            self._handles.clear()
