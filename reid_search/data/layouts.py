"""Dataset layouts: find every image of a re-ID dataset and what its name says.

A layout turns a folder into :class:`ImageRecord` rows (person, camera, tracklet,
frame) plus :class:`Skipped` rows for files it cannot use. Five layouts are known:

* ``mars``     MARS official: ``bbox_train/``, ``bbox_test/``, ``PPPPCcTttttFfff.jpg``;
  person ``0000`` is a distractor, ``00-1`` junk. ``info/`` is handled by
  :mod:`reid_search.data.protocols`.
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

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}

KIND_IDENTITY = "identity"
KIND_DISTRACTOR = "distractor"
KIND_JUNK = "junk"
KIND_UNLABELLED = "unlabelled"  # a crop whose person nobody has said
TRAIN_SPLITS = ("bbox_train", "bounding_box_train")  # the train split's folder in MARS / Market-1501

MARS_NAME = re.compile(r"^(?P<person>\d{4}|00-1)C(?P<cam>\d)T(?P<tracklet>\d{4})F(?P<frame>\d{3,})$")
MARKET_NAME = re.compile(r"^(?P<person>-1|\d{4})_c(?P<cam>\d)s(?P<seq>\d)_(?P<frame>\d{6})_(?P<box>\d{2})$")

CAMERA_FOLDER = re.compile(r"^(?:cam(?:era)?|c)[ _-]?(\d+)$", re.IGNORECASE)
DATE_FOLDER = re.compile(r"^\d{4}-?\d{2}-?\d{2}(?:$|[T_ -])")
MARS_SPLITS = ("bbox_train", "bbox_test")
MARKET_SPLITS = ("bounding_box_train", "bounding_box_test", "query")


class LayoutError(InputError):
    """A folder does not follow the layout asked for, or no known layout fits it."""


def tracklet_key(person, camera, tracklet) -> str:
    """The one spelling of a tracklet's key: person, camera and tracklet number.

    >>> tracklet_key("0744", 1, 3)
    '0744|c1|t3'
    """
    return f"{person}|c{camera}|t{tracklet}"


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image of a dataset and what its location says about it.

    ``person`` is the identity label as written in the dataset (``"0744"``, ``"alice"``);
    ``kind`` says whether it is a real identity, a distractor or junk.
    """

    path: str
    person: str | None
    camera: int | None = None
    tracklet: int | None = None
    frame: int | None = None
    split: str = ""
    kind: str = KIND_IDENTITY
    time: str | None = None  # ISO 8601, from a name pattern or a metadata CSV
    extra: str | None = None  # JSON object of further metadata (site, ...)

    @property
    def sighting_key(self) -> str:
        """One sighting, for the junk rule when cameras are unknown: the tracklet, else the file itself."""
        if self.tracklet is None:
            return self.path
        return f"{Path(self.path).parent}|{self.tracklet_key}"

    @property
    def tracklet_key(self) -> str:
        """The key grouping frames of one tracklet (person, camera, tracklet number)."""
        return tracklet_key(self.person, self.camera, self.tracklet)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file that was passed over, and why."""

    path: str
    reason: str


@dataclass
class DatasetScan:
    """Everything a layout found below ``root``."""

    root: str
    layout: str
    records: list[ImageRecord] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    metadata_given: bool = False  # a name pattern or CSV was applied (it is then the truth)
    metadata_unmatched: list[str] = field(default_factory=list)  # CSV paths that are no image here

    def split(self, name: str) -> list[ImageRecord]:
        """The records of one split (``bbox_test``, ``query``...)."""
        return [r for r in self.records if r.split == name]

    @property
    def splits(self) -> list[str]:
        return sorted({r.split for r in self.records})

    def train_records(self) -> list[ImageRecord]:
        """The train split's records (``bbox_train``, ``bounding_box_train``) if there is one, else all."""
        split = next((name for name in TRAIN_SPLITS if name in self.splits), None)
        return self.split(split) if split else self.records

    def people_records(
        self, records: list[ImageRecord] | None = None, purpose: str = "this", hint: str = ""
    ) -> list[ImageRecord]:
        """The records (of ``records``, default all) that name a person; none is a
        :class:`LayoutError` saying what ``purpose`` needs (and ``hint``, another way)."""
        records = self.records if records is None else records
        named = [r for r in records if r.kind == KIND_IDENTITY]
        if not named:
            raise LayoutError(
                f"{self.root}: none of its {len(records)} images names a person (layout {self.layout}); "
                f"{purpose} needs crops of known people (README: Dataset layouts){hint}"
            )
        return named


from .walk import _files_below, _is_dir, _is_file, _sorted_entries  # noqa: E402  (after Skipped, which they report)


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


LAYOUT_REGISTRY: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("mars", _match_mars, _scan_mars),
        Layout("kaggle-mars", _match_kaggle, _scan_kaggle),
        Layout("market1501", _match_market, _scan_market),
        Layout("unlabelled", _match_unlabelled, _scan_unlabelled, labelled=False),
        Layout("generic", _match_generic, _scan_generic),  # last: the fallback
    )
}
GUESSED_LAYOUTS = ("unlabelled", "generic")  # matched by shape only: the tree must be mostly images
LAYOUTS = tuple(LAYOUT_REGISTRY)


def detect_layout(root: str | Path) -> str:
    """Name the layout of ``root``: the first registered layout that matches (generic last).

    Unlabelled and generic are only guessed for a tree that is mostly images.
    """
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder")
    for layout in LAYOUT_REGISTRY.values():
        if layout.matches(root):
            if layout.name in GUESSED_LAYOUTS:
                _plausible_dataset(root)
            return layout.name
    raise LayoutError(f"{root}: no known layout fits (known: {', '.join(LAYOUTS)})")


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
    from .metadata import MetadataError, apply_metadata, compile_name_pattern, read_metadata_csv

    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise LayoutError(f"{root}: not a folder")
    name = layout or detect_layout(root_path)
    if name not in LAYOUTS:
        raise LayoutError(f"unknown layout {name!r}; known layouts: {', '.join(LAYOUTS)}")
    try:
        pattern = compile_name_pattern(name_pattern)
        table = read_metadata_csv(metadata, root_path) if metadata else None
    except MetadataError as exc:
        raise LayoutError(str(exc)) from None
    scan = DatasetScan(root=str(root_path), layout=name)
    LAYOUT_REGISTRY[name].scan(root_path, scan)
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
