"""Galleries: SQLite rows with their vectors (the truth), a derived FAISS index, a manifest.

* :mod:`.store`  the gallery folder: open, rows, vectors, search, single writer, removal
* :mod:`.index`  the FAISS index: factory strings, ``auto``, watermark catch-up, rebuild
* :mod:`.build`  building, growing and rebuilding a gallery on this machine

Usage::

    from reid_search.gallery import Gallery, build_gallery
    gallery, report = build_gallery("bbox_test", name="cuhk")
    Gallery.open("cuhk").size
    # 938
"""

from .build import BuildReport, Unit, build_gallery, make_units, model_info
from .filters import EntryFilter
from .index import AUTO, IndexTypeError, auto_index_type
from .store import (
    DB_FILE,
    DEFAULT_FRAMES_PER_TRACKLET,
    LEVELS,
    MANIFEST_FILE,
    Gallery,
    GalleryError,
    check_gallery_name,
    default_indexes_dir,
    list_galleries,
    read_manifest,
    resolve_gallery_path,
)

__all__ = [
    "AUTO",
    "DB_FILE",
    "DEFAULT_FRAMES_PER_TRACKLET",
    "LEVELS",
    "MANIFEST_FILE",
    "BuildReport",
    "EntryFilter",
    "Gallery",
    "GalleryError",
    "IndexTypeError",
    "Unit",
    "auto_index_type",
    "build_gallery",
    "check_gallery_name",
    "default_indexes_dir",
    "list_galleries",
    "make_units",
    "model_info",
    "read_manifest",
    "resolve_gallery_path",
]
