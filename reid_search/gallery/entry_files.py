"""A gallery entry's image file, handed out only while it is still the file that was indexed.

A server shows an entry's picture by id, never by a path from the request. Even so, the
path stored at indexing time may since have become something else: a symlink re-pointed
to ``/etc/passwd``, a file replaced, a folder moved. :func:`entry_image` gives the path
only if its real location (symlinks resolved) is inside a folder the gallery was built
from and its bytes are still the ones indexed (SHA-256 of a one-image entry; for a
tracklet's first frame, the width and height recorded).

Usage::

    path = entry_image(Gallery.open("cuhk"), 17)
"""

from __future__ import annotations

import os
import stat
from functools import lru_cache
from pathlib import Path

from .._files import file_sha256
from .store import MANIFEST_FILE, Gallery, GalleryError, read_manifest


class EntryUnavailable(GalleryError):
    """No such entry, or its file is missing, moved outside its folder, or changed."""


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


@lru_cache(maxsize=4096)
def _sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    return file_sha256(path)


@lru_cache(maxsize=64)
def _source_roots(manifest: str, mtime_ns: int) -> list[Path]:
    """The real paths of the folders a gallery was built from (re-read when its manifest changes)."""
    sources = read_manifest(Path(manifest)).get("sources", [])
    return [Path(os.path.realpath(s["root"])) for s in sources if s.get("root")]


def _image_size(path: Path) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except Exception:  # not (any more) an image PIL can read
        return None


def entry_image(gallery: Gallery, faiss_id: int) -> Path:
    """The real path of entry ``faiss_id``'s image; EntryUnavailable if there is none to serve."""
    row = gallery.rows([faiss_id]).get(faiss_id)
    if row is None:
        raise EntryUnavailable(f"no entry {faiss_id} in gallery {gallery.name}")
    stored = Path(row["path"])
    real = Path(os.path.realpath(stored))
    manifest = gallery.path / MANIFEST_FILE  # a growing gallery's latest folders
    roots = _source_roots(str(manifest), manifest.stat().st_mtime_ns)
    if not _inside(real, roots):
        raise EntryUnavailable(f"entry {faiss_id}: its file is no longer inside the indexed folder")
    try:
        info = real.stat()
    except OSError:
        raise EntryUnavailable(f"entry {faiss_id}: its image file is no longer on disk") from None
    if not stat.S_ISREG(info.st_mode):
        raise EntryUnavailable(f"entry {faiss_id}: its path is no longer a regular file")
    if (row.get("n_frames") or 1) == 1 and row.get("sha256"):
        same = _sha256(str(real), info.st_size, info.st_mtime_ns, info.st_ino) == row["sha256"]
    else:
        same = row.get("width") is None or _image_size(real) == (row["width"], row["height"])
    if not same:
        raise EntryUnavailable(f"entry {faiss_id}: its file changed since it was indexed")
    return real
