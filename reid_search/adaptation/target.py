"""The crops a model adapts to, and what is known of each without any identity label.

A :class:`TargetCrops` holds image paths and, per crop, its camera, tracklet and frame (an id
of one camera at one moment: two crops of it are two people), each -1 where unknown. Two
sources, neither of which reads a person:

* a gallery (:func:`from_gallery`): its rows' camera, tracklet and time (video galleries: the
  video and frame); a tracklet-level entry contributes its frames;
* folders of crops (:func:`from_folders`), read as unlabelled whatever their names say, with
  an optional CSV sidecar (``path`` plus ``camera``, ``tracklet``, ``time`` or ``frame``
  columns), or ``camN/`` folders for the camera.

Usage::

    target = from_folders(["crops/"], metadata="crops.csv")
    target.describe()   # '7239 crops, 2 cameras, 1486 tracklets, no frame times'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

MIN_CROPS = 200  # fewer crops cannot form the dozens of pseudo-identities a round needs


class AdaptError(InputError):
    """Crops that cannot teach a model: too few, one camera only, no images, ..."""


@dataclass
class TargetCrops:
    """Unlabelled crops: ``paths`` and, per crop, ``cameras`` / ``tracklets`` / ``frames`` (-1 unknown)."""

    paths: list[str]
    cameras: np.ndarray
    tracklets: np.ndarray
    frames: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, rows: Sequence[int]) -> TargetCrops:
        rows = np.asarray(rows, np.int64)
        return TargetCrops(
            [self.paths[i] for i in rows],
            self.cameras[rows],
            self.tracklets[rows],
            self.frames[rows],
            self.source,
        )

    @property
    def n_cameras(self) -> int:
        return len(np.unique(self.cameras[self.cameras >= 0]))

    def describe(self) -> str:
        """One line: crops, cameras, tracklets, frames known.

        >>> t = TargetCrops(["a", "b", "c"], np.array([1, 2, 2]), np.array([0, 0, -1]), np.full(3, -1))
        >>> t.describe()
        '3 crops, 2 cameras, 1 tracklets (2 crops in them), no frame times'
        """
        tracked = self.tracklets >= 0
        frames = int((self.frames >= 0).sum())
        return (
            f"{len(self)} crops, {self.n_cameras} cameras, "
            f"{len(np.unique(self.tracklets[tracked]))} tracklets "
            f"({int(tracked.sum())} crops in them), "
            + (f"{frames} crops with a frame time" if frames else "no frame times")
        )

    def content_sha256(self) -> str:
        """A hash of what the crops are (bytes of every file, in path order, and their metadata)."""
        digest = hashlib.sha256()
        for path, c, t, f in sorted(
            zip(self.paths, self.cameras.tolist(), self.tracklets.tolist(), self.frames.tolist(), strict=True)
        ):
            digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
            digest.update(f"{c}|{t}|{f}".encode())
        return digest.hexdigest()

    def check(self, min_crops: int = MIN_CROPS) -> None:
        """Refuse crops no adaptation can learn from (one :class:`AdaptError` line)."""
        if len(self) < min_crops:
            raise AdaptError(
                f"{self.source}: {len(self)} crops; adaptation clusters crops into people and needs at "
                f"least {min_crops} (a few thousand from several cameras adapt well)"
            )
        if self.n_cameras < 2 and not (self.tracklets >= 0).any():
            known = "one camera" if self.n_cameras == 1 else "no camera known"
            raise AdaptError(
                f"{self.source}: {known} and no tracklets; adaptation learns what stays the same across "
                "cameras (or across a tracklet's frames) and needs crops of two or more cameras (give them "
                "with a --metadata CSV 'camera' column, camN/ folders, or a gallery that has them) "
                "or tracklets"
            )


def _codes(keys: list) -> np.ndarray:
    """Each key as a small integer, None -> -1.

    >>> _codes([("a", 1), None, ("a", 1), ("b", 2)]).tolist()
    [0, -1, 0, 1]
    """
    table: dict = {}
    return np.array([-1 if k is None else table.setdefault(k, len(table)) for k in keys], np.int64)


def _build(rows: list[tuple[str, int | None, object, object]], source: str) -> TargetCrops:
    """(path, camera, tracklet key, frame key) rows -> :class:`TargetCrops`."""
    return TargetCrops(
        [r[0] for r in rows],
        np.array([-1 if r[1] is None else int(r[1]) for r in rows], np.int64),
        _codes([r[2] for r in rows]),
        _codes([r[3] for r in rows]),
        source,
    )


def from_folders(folders: Sequence[str | Path], metadata: str | Path | None = None) -> TargetCrops:
    """Every image below ``folders`` as unlabelled crops (names are never read for a person);
    camera, tracklet and time from the ``metadata`` CSV (``tracklet`` and ``frame`` columns are
    opaque ids), else ``camN/`` folders."""
    from ..data.layouts import scan_dataset

    rows = []
    for folder in folders:
        if Path(folder).is_file():
            raise AdaptError(f"{folder}: give a folder of crops (or a gallery name), not one file")
        scan = scan_dataset(folder, layout="unlabelled", metadata=metadata)
        for r in scan.records:
            extra = json.loads(r.extra) if r.extra else {}
            tracklet = r.tracklet if r.tracklet is not None else extra.get("tracklet")  # the CSV's column
            frame = extra.get("frame")
            frame_key = (
                (r.camera, r.time) if r.time else ((r.camera, frame) if frame not in (None, "") else None)
            )
            tracklet_key = (str(folder), str(tracklet)) if tracklet not in (None, "") else None
            rows.append((r.path, r.camera, tracklet_key, frame_key))
    return _build(rows, ", ".join(map(str, folders)))


def from_gallery(gallery) -> TargetCrops:
    """The crops of an open gallery: image rows, and the frames of tracklet rows (one tracklet).

    A gallery of precomputed vectors (no images) cannot teach a model: refused."""
    rows = []
    for faiss_id, row in sorted(gallery.rows().items()):
        extra = json.loads(row["extra"]) if row.get("extra") else {}
        video = extra.get("video") or row.get("split") or ""
        folder = str(Path(row["path"] or "").parent)
        tracklet = row.get("tracklet")
        tracklet_key = (video, folder, row.get("camera"), tracklet) if tracklet is not None else None
        if row.get("time"):
            frame_key = (row.get("camera"), row["time"])
        elif "frame" in extra:
            frame_key = (video, row.get("camera"), extra["frame"])
        else:
            frame_key = None
        frames = gallery.frames_of(faiss_id) if (row.get("n_frames") or 1) > 1 else []
        if frames:
            key = tracklet_key or ("entry", faiss_id)
            rows.extend((f, row.get("camera"), key, None) for f in frames)
        else:
            rows.append((row["path"], row.get("camera"), tracklet_key, frame_key))
    missing = [r[0] for r in rows if not r[0] or not Path(r[0]).is_file()]
    if rows and len(missing) == len(rows):
        raise AdaptError(
            f"gallery {gallery.name}: none of its {len(rows)} entries is an image file here (a gallery "
            "of precomputed vectors, or images moved): adaptation learns from the images themselves"
        )
    present = [r for r in rows if r[0] and Path(r[0]).is_file()]
    return _build(present, f"gallery {gallery.name}")
