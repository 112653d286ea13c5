"""What a layout finds: image records, skipped files, the scan of a dataset folder, and the
constants of their vocabulary (record kinds, image suffixes, split names, name patterns).

    >>> ImageRecord("a/0001C1T0001F001.jpg", "0001", camera=1, tracklet=1).tracklet_key
    '0001|c1|t1'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import InputError

__all__ = [
    "CAMERA_FOLDER", "DATE_FOLDER", "IMAGE_SUFFIXES", "KIND_DISTRACTOR", "KIND_IDENTITY", "KIND_JUNK",
    "KIND_UNLABELLED", "MARKET_NAME", "MARKET_SPLITS", "MARS_NAME", "MARS_SPLITS", "TRAIN_SPLITS",
    "DatasetScan", "ImageRecord", "LayoutError", "Skipped", "tracklet_key",
]  # fmt: skip

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
