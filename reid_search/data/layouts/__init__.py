"""Dataset layouts: find every image of a re-ID dataset and what its name says.

A layout turns a folder into :class:`ImageRecord` rows (person, camera, tracklet,
frame) plus :class:`Skipped` rows for files it cannot use. Five layouts are known:

* ``mars``     MARS official: ``bbox_train/``, ``bbox_test/``, ``PPPPCcTttttFfff.jpg``;
  person ``0000`` is a distractor, ``00-1`` junk. ``info/`` is handled by
  :mod:`reid_search.evaluation.protocols`.
* ``kaggle-mars`` MARS as re-packed on Kaggle: ``categories/PPPP/*.jpg`` (no cameras
  unless the file names still follow the MARS pattern).
* ``market1501`` ``bounding_box_train/``, ``bounding_box_test/``, ``query/``,
  ``PPPP_cCsS_FFFFFF_NN.jpg``; ``-1`` junk, ``0000`` distractor.
* ``unlabelled`` crops nobody has labelled: images at any depth, person unknown; a
  ``cam3/`` (``camera_3``, ``c3``) folder on the way gives the camera. Guessed when no
  sub-folder reads as a person: one holding images directly and not named for a camera
  (``cam3``) or a day (``2026-11-25``). ``crops/2026/11/25/*.jpg`` is unlabelled,
  ``people/alice/*.jpg`` generic; ``--layout unlabelled`` settles any other case.
* ``generic``  one folder per identity, any image PIL reads.

Any layout takes camera, time and extra metadata from a file-name pattern or a CSV
sidecar (:mod:`reid_search.data.metadata`).

Usage::

    from reid_search.data.layouts import scan_dataset
    scan = scan_dataset("../shared/data/cuhk03-mars/bbox_test")
    scan.layout, len(scan.records), scan.records[0].person
    # ('mars', 938, '0744')
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .kinds import (
    GUESSED_LAYOUTS,
    LAYOUTS,
    Layout,
    _plausible_dataset,
    image_share,
    parse_market_name,
    parse_mars_name,
)
from .scan import *  # noqa: F403  (the vocabulary: records, kinds, suffixes, split names)
from .scan import DatasetScan, ImageRecord, LayoutError
from .scan import __all__ as _scan_names

__all__ = [
    *_scan_names, "GUESSED_LAYOUTS", "LAYOUTS", "Layout", "default_gallery_splits", "detect_layout",
    "image_share", "parse_any_name", "parse_market_name", "parse_mars_name", "scan_dataset",
]  # fmt: skip


def detect_layout(root: str | Path) -> str:
    """Name the layout of ``root``: the first registered layout that matches (generic last).

    Unlabelled and generic are only guessed for a tree that is mostly images.
    """
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder")
    for layout in LAYOUTS.values():
        if layout.matches(root):
            if layout.name in GUESSED_LAYOUTS:
                _plausible_dataset(root)
            return layout.name
    raise LayoutError(f"{root}: no known layout fits (known: {', '.join(LAYOUTS.names())})")


def scan_dataset(
    root: str | Path,
    layout: str | None = None,
    name_pattern: str | None = None,
    splits: Iterable[str] | None = None,
    metadata: str | Path | None = None,
) -> DatasetScan:
    """List every image below ``root`` with what its layout says of it.

    ``layout`` None means auto-detect; ``splits`` keeps only those split folders;
    ``name_pattern`` and ``metadata`` (a CSV) add camera, time and extra metadata
    (:mod:`reid_search.data.metadata`).
    """
    from ..metadata import MetadataError, apply_metadata, compile_name_pattern, read_metadata_csv

    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise LayoutError(f"{root}: not a folder")
    name = layout or detect_layout(root_path)
    chosen = LAYOUTS.get(name)
    try:
        pattern = compile_name_pattern(name_pattern)
        table = read_metadata_csv(metadata, root_path) if metadata else None
    except MetadataError as exc:
        raise LayoutError(str(exc)) from None
    scan = DatasetScan(root=str(root_path), layout=name)
    chosen.scan(root_path, scan)
    if pattern is not None or table is not None:
        scan.metadata_given = True
        try:
            scan.records, scan.metadata_unmatched = apply_metadata(scan.records, pattern, table)
        except MetadataError as exc:
            raise LayoutError(str(exc)) from None
    if splits is not None:
        wanted = set(splits)
        unknown = wanted - set(scan.splits)
        if unknown:
            raise LayoutError(
                f"{root}: no split {', '.join(sorted(unknown))} (has: {', '.join(scan.splits)})"
            )
        scan.records = [r for r in scan.records if r.split in wanted]
    return scan


def default_gallery_splits(scan: DatasetScan) -> list[str]:
    """The splits a gallery is built from when none is named: the test split if any."""
    for test_split in ("bbox_test", "bounding_box_test"):
        if test_split in scan.splits:
            return [test_split]
    return scan.splits


def parse_any_name(path: str | Path) -> ImageRecord | None:
    """Read identity and camera from a MARS or Market-1501 file name (for query images)."""
    p = Path(path)
    return parse_mars_name(p) or parse_market_name(p)
