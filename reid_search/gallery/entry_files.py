"""A gallery entry's image file, handed out only while it is still the file that was indexed.

A server shows an entry's picture by id, never by a path from the request. Even so, the
path stored at indexing time may since have become something else: a symlink re-pointed
to ``/etc/passwd``, a file replaced, a folder moved, a FIFO. :func:`entry_image` opens the
path once and gives its bytes only if the open file is a regular file whose real location
is inside a folder the gallery was built from, whose content is an image, and whose bytes
are still the ones indexed (SHA-256 of a one-image entry; for a tracklet's first frame, the
width and height recorded). Check and serve use the same descriptor and the same bytes.

Usage::

    entry = entry_image(Gallery.open("cuhk"), 17)
    entry.data, entry.media_type   # the verified bytes and the type their content has
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .._files import NotRegularFile, descriptor_path, open_regular, read_descriptor
from .store import MANIFEST_FILE, Gallery, GalleryError, read_manifest


class EntryUnavailable(GalleryError):
    """No such entry, or its file is missing, moved outside its folder, or changed."""

    http_status = 404


MAX_ENTRY_BYTES = 64 * 2**20  # an indexed crop or frame larger than this is not served
IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp",
               "GIF": "image/gif", "TIFF": "image/tiff", "PPM": "image/x-portable-anymap"}  # fmt: skip


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


@lru_cache(maxsize=64)
def _source_roots(manifest: str, mtime_ns: int) -> list[Path]:
    """The real paths of the folders a gallery was built from (re-read when its manifest changes)."""
    sources = read_manifest(Path(manifest)).get("sources", [])
    return [Path(os.path.realpath(s["root"])) for s in sources if s.get("root")]


def _image_facts(data: bytes) -> tuple[str, tuple[int, int]] | None:
    """(PIL format, size) of encoded image bytes, None if they are not an image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format or "", img.size
    except Exception:  # not (any more) an image PIL can read
        return None


@dataclass(frozen=True)
class EntryFile:
    """The verified bytes of an entry's image and the image type their content has."""

    data: bytes
    media_type: str


def entry_image(gallery: Gallery, faiss_id: int) -> EntryFile:
    """Entry ``faiss_id``'s image as verified bytes; EntryUnavailable if there is none to serve.

    The file is opened once; its real location (of the open descriptor), type, size and
    SHA-256 (a one-image entry; a tracklet's first frame: the recorded width and height) are
    checked on what was read, and exactly those bytes are returned: a symlink swapped
    between the check and the read cannot slip another file through."""
    row = gallery.rows([faiss_id]).get(faiss_id)
    if row is None:
        raise EntryUnavailable(f"no entry {faiss_id} in gallery {gallery.name}")
    stored = Path(row["path"])
    try:
        fd, info = open_regular(stored)
    except NotRegularFile:
        raise EntryUnavailable(f"entry {faiss_id}: its path is no longer a regular file") from None
    except OSError:
        raise EntryUnavailable(f"entry {faiss_id}: its image file is no longer on disk") from None
    try:
        real = descriptor_path(fd, stored)
        manifest = gallery.path / MANIFEST_FILE  # a growing gallery's latest folders
        roots = _source_roots(str(manifest), manifest.stat().st_mtime_ns)
        if not _inside(real, roots):
            raise EntryUnavailable(f"entry {faiss_id}: its file is no longer inside the indexed folder")
        if info.st_size > MAX_ENTRY_BYTES:
            raise EntryUnavailable(f"entry {faiss_id}: its file changed since it was indexed")
        data = read_descriptor(fd, MAX_ENTRY_BYTES)
    finally:
        os.close(fd)
    facts = _image_facts(data)
    if facts is None or facts[0] not in IMAGE_TYPES:
        raise EntryUnavailable(f"entry {faiss_id}: its file is no longer an image")
    if (row.get("n_frames") or 1) == 1 and row.get("sha256"):
        same = hashlib.sha256(data).hexdigest() == row["sha256"]
    else:
        same = row.get("width") is None or facts[1] == (row["width"], row["height"])
    if not same:
        raise EntryUnavailable(f"entry {faiss_id}: its file changed since it was indexed")
    return EntryFile(data, IMAGE_TYPES[facts[0]])
