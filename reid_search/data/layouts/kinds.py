"""The layouts the project knows, each a :class:`Layout` (how to recognise a folder of it, how
to list its images) in the :data:`LAYOUTS` registry, tried in order by detection (generic last):
``mars``, ``kaggle-mars``, ``market1501``, ``unlabelled``, ``generic``.

A new layout is one ``LAYOUTS.register(...)`` call here (a match and a scan function).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...registry import Registry
from .scan import (
    CAMERA_FOLDER,
    DATE_FOLDER,
    IMAGE_SUFFIXES,
    KIND_DISTRACTOR,
    KIND_IDENTITY,
    KIND_JUNK,
    KIND_UNLABELLED,
    MARKET_NAME,
    MARKET_SPLITS,
    MARS_NAME,
    MARS_SPLITS,
    DatasetScan,
    ImageRecord,
    LayoutError,
    Skipped,
)
from .walk import _files_below, _is_dir, _is_file, _sorted_entries


def _looks_like_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


# --------------------------------------------------------------------------- MARS
def parse_mars_name(path: Path, split: str = "") -> ImageRecord | None:
    """Read person/camera/tracklet/frame from a MARS frame name, or None if it is not one.

    >>> parse_mars_name(Path("0744C1T0001F003.jpg")).camera
    1
    """
    m = MARS_NAME.match(path.stem)
    if not m:
        return None
    person = m["person"]
    kind = KIND_JUNK if person == "00-1" else KIND_DISTRACTOR if person == "0000" else KIND_IDENTITY
    return ImageRecord(
        path=str(path),
        person=person,
        camera=int(m["cam"]),
        tracklet=int(m["tracklet"]),
        frame=int(m["frame"]),
        split=split,
        kind=kind,
    )


def _scan_mars_split(folder: Path, split: str, scan: DatasetScan) -> None:
    for path in _files_below(folder, scan.skipped):
        record = parse_mars_name(path, split)
        if record is None:
            scan.skipped.append(Skipped(str(path), "name does not follow MARS PPPPCcTttttFfff"))
        else:
            scan.records.append(record)


def _mars_split_folders(root: Path) -> list[Path]:
    return [root / s for s in MARS_SPLITS if (root / s).is_dir()]


def _is_mars_split_folder(root: Path) -> bool:
    """A folder of ``PPPP/`` sub-folders whose first image is MARS-named."""
    for entry in _sorted_entries(root)[:5]:
        if _is_dir(entry):
            for sub in _sorted_entries(Path(entry.path))[:3]:
                if _is_file(sub) and MARS_NAME.match(Path(sub.name).stem):
                    return True
    return False


def _match_mars(root: Path) -> bool:
    return bool(_mars_split_folders(root)) or _is_mars_split_folder(root)


def _scan_mars(root: Path, scan: DatasetScan) -> None:
    folders = _mars_split_folders(root)
    if folders:
        for folder in folders:
            _scan_mars_split(folder, folder.name, scan)
    elif _is_mars_split_folder(root):
        _scan_mars_split(root, root.name, scan)
    else:
        raise LayoutError(f"{root}: no bbox_train/ or bbox_test/ and no MARS-named frames")


# ---------------------------------------------------------------------- Kaggle MARS
def _match_kaggle(root: Path) -> bool:
    return (root / "categories").is_dir()


def _scan_kaggle(root: Path, scan: DatasetScan) -> None:
    base = root / "categories"
    if not base.is_dir():
        raise LayoutError(f"{root}: no categories/ folder (Kaggle MARS layout)")
    _scan_identity_folders(base, "categories", scan, parse_mars=True)


# ----------------------------------------------------------------------- Market-1501
def parse_market_name(path: Path, split: str = "") -> ImageRecord | None:
    """Read a Market-1501 name ``PPPP_cCsS_FFFFFF_NN.jpg``; the sequence is the tracklet.

    >>> r = parse_market_name(Path("0002_c1s1_000451_03.jpg"))
    >>> (r.person, r.camera, r.tracklet, r.frame)
    ('0002', 1, 1, 451)
    """
    m = MARKET_NAME.match(path.stem)
    if not m:
        return None
    person = m["person"]
    kind = KIND_JUNK if person == "-1" else KIND_DISTRACTOR if person == "0000" else KIND_IDENTITY
    return ImageRecord(
        path=str(path),
        person=person,
        camera=int(m["cam"]),
        tracklet=int(m["seq"]),
        frame=int(m["frame"]),
        split=split,
        kind=kind,
    )


def _market_split_folders(root: Path) -> list[Path]:
    return [root / s for s in MARKET_SPLITS if (root / s).is_dir()]


def _is_market_split_folder(root: Path) -> bool:
    for entry in _sorted_entries(root)[:5]:
        if _is_file(entry) and MARKET_NAME.match(Path(entry.name).stem):
            return True
    return False


def _match_market(root: Path) -> bool:
    return bool(_market_split_folders(root)) or _is_market_split_folder(root)


def _scan_market(root: Path, scan: DatasetScan) -> None:
    folders = _market_split_folders(root) or ([root] if _is_market_split_folder(root) else [])
    if not folders:
        raise LayoutError(f"{root}: no bounding_box_test/, query/ or Market-1501-named images")
    for folder in folders:
        for path in _files_below(folder, scan.skipped):
            if not _looks_like_image(path):
                continue  # Market ships Thumbs.db and the like
            record = parse_market_name(path, folder.name)
            if record is None:
                scan.skipped.append(Skipped(str(path), "name does not follow Market-1501 PPPP_cCsS"))
            else:
                scan.records.append(record)


# --------------------------------------------------------------------------- generic
def _scan_identity_folders(base: Path, split: str, scan: DatasetScan, parse_mars: bool = False) -> None:
    for entry in _sorted_entries(base, scan.skipped):
        if not _is_dir(entry):
            if _is_file(entry):
                scan.skipped.append(Skipped(entry.path, "file outside an identity folder"))
            continue
        person = entry.name
        for path in _files_below(Path(entry.path), scan.skipped):
            record = parse_mars_name(path, split) if parse_mars else None
            scan.records.append(record or ImageRecord(path=str(path), person=person, split=split))


def _match_generic(root: Path) -> bool:
    return any(_is_dir(e) for e in _sorted_entries(root))


def _scan_generic(root: Path, scan: DatasetScan) -> None:
    if not _match_generic(root):
        raise LayoutError(f"{root}: expected one sub-folder per identity")
    _scan_identity_folders(root, root.name, scan)


# ------------------------------------------------------------------------ unlabelled
def _structure_folder(name: str) -> bool:
    """A folder named for a camera or a day, not for a person."""
    return bool(CAMERA_FOLDER.match(name) or DATE_FOLDER.match(name))


def _holds_images(folder: Path) -> bool:
    """Does ``folder`` hold image files directly (not only in sub-folders)?"""
    return any(_is_file(e) and _looks_like_image(Path(e.name)) for e in _sorted_entries(folder))


def _match_unlabelled(root: Path, sample: int = 50) -> bool:
    """Crops, not identities: no sub-folder that reads as a person (one holding images
    directly and not named for a camera or a day), and images somewhere below."""
    folders = [Path(e.path) for e in _sorted_entries(root) if _is_dir(e)]
    people = [f for f in folders if not _structure_folder(f.name)][:sample]
    if any(_holds_images(f) for f in people):
        return False
    return next(_files_below(root), None) is not None


def _camera_from_folders(path: Path, root: Path) -> int | None:
    """The camera a ``cam3/`` (``camera_3``, ``c3``) folder on the way to ``path`` names."""
    for part in reversed(path.relative_to(root).parts[:-1]):
        m = CAMERA_FOLDER.match(part)
        if m:
            return int(m.group(1))
    return None


def _scan_unlabelled(root: Path, scan: DatasetScan) -> None:
    for path in _files_below(root, scan.skipped):
        if not _looks_like_image(path):
            scan.skipped.append(Skipped(str(path), "not an image file"))
            continue
        camera = _camera_from_folders(path, root)
        scan.records.append(
            ImageRecord(path=str(path), person=None, camera=camera, split=root.name, kind=KIND_UNLABELLED)
        )


def image_share(root: Path, limit: int = 20_000) -> tuple[int, int]:
    """(images, files) among the first ``limit`` non-hidden files below ``root``."""
    images = files = 0
    for path in _files_below(root):
        files += 1
        images += _looks_like_image(path)
        if files >= limit:
            break
    return images, files


def _plausible_dataset(root: Path) -> None:
    """Refuse to guess 'generic' for a tree that is mostly other files (a home or temp folder)."""
    images, files = image_share(root)
    if files == 0 or images < 0.9 * files:
        raise LayoutError(
            f"{root}: does not look like a dataset ({images} of {files} files are images); "
            "pass --layout unlabelled (or generic) to index it anyway"
        )


# --------------------------------------------------------------------------- public
@dataclass(frozen=True)
class Layout:
    """One dataset layout: how to recognise a folder of it and how to list its images."""

    name: str
    matches: Callable[[Path], bool]
    scan: Callable[[Path, DatasetScan], None]
    labelled: bool = True  # does it say who is in each image?


LAYOUTS: Registry[Layout] = Registry("layout", LayoutError)  # detection tries them in this order
for _layout in (
    Layout("mars", _match_mars, _scan_mars),
    Layout("kaggle-mars", _match_kaggle, _scan_kaggle),
    Layout("market1501", _match_market, _scan_market),
    Layout("unlabelled", _match_unlabelled, _scan_unlabelled, labelled=False),
    Layout("generic", _match_generic, _scan_generic),  # last: the fallback
):
    LAYOUTS.register(_layout.name, _layout)
GUESSED_LAYOUTS = ("unlabelled", "generic")  # matched by shape only: the tree must be mostly images
