"""Evaluation protocols: which items are queries, which are gallery, what counts and what is junk.

Every protocol applies one matching rule (MARS ``evaluation_mars.m``, Market-1501 and
torchreid agree on it):

* junk, removed from the query's ranking: gallery items whose person is junk (``00-1`` /
  ``-1``), items of the query's own person AND camera (including the query itself);
* positive: the query's person in another camera;
* negative: everything else, distractors (``0000``) included.

When cameras are unknown, "camera" reads "tracklet": the query's own tracklet is junk and
its person in any other tracklet is positive.

Protocols differ in the query/gallery split:

* ``cross-camera``  every identity item queries all items (optionally restricted by camera);
* ``market1501``    ``query/`` against ``bounding_box_test/``;
* ``mars-official`` tracklets of ``info/tracks_test_info.mat``, queries ``info/query_IDX.mat``,
  gallery all test tracklets.

Usage::

    >>> import numpy as np
    >>> items = EvalItems.from_labels(np.eye(3, dtype="f4"), ["a", "a", "b"], cameras=[1, 2, 1])
    >>> proto = cross_camera(items)
    >>> pos, junk = matching_masks(items, proto.query[:1], proto.gallery)
    >>> pos.tolist(), junk.tolist()
    ([[False, True, False]], [[True, False, False]])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.layouts import KIND_DISTRACTOR, KIND_IDENTITY, KIND_JUNK, parse_mars_name
from ..errors import InputError

RULE = (
    "junk = person junk (00-1/-1) or same person AND same camera (incl. the query itself), "
    "removed before ranking; positive = same person, other camera; distractors (0000) are negatives"
)
RULE_NO_CAMERA = (
    "cameras unknown: junk = junk persons and the query's own tracklet; positive = same person, "
    "other tracklet; distractors are negatives"
)


class ProtocolError(InputError):
    """The data cannot be evaluated with the protocol asked for."""


@dataclass
class EvalItems:
    """Embedded items with their labels; index i is one image or one tracklet."""

    vectors: np.ndarray
    persons: np.ndarray  # str labels
    kinds: np.ndarray  # identity / distractor / junk
    cameras: np.ndarray  # int, -1 when unknown
    groups: np.ndarray  # tracklet key (the "camera" when cameras are unknown)
    paths: list[str] = field(default_factory=list)
    splits: np.ndarray | None = None

    @classmethod
    def from_labels(
        cls, vectors, persons, cameras=None, kinds=None, groups=None, paths=None, splits=None
    ) -> EvalItems:
        n = len(persons)
        cams = (
            np.array([-1 if c is None else int(c) for c in cameras])
            if cameras is not None
            else np.full(n, -1)
        )
        return cls(
            vectors=np.asarray(vectors, np.float32),
            persons=np.array([str(p) for p in persons], dtype=object),
            kinds=np.array(kinds if kinds is not None else [KIND_IDENTITY] * n, dtype=object),
            cameras=cams,
            groups=np.array(groups if groups is not None else [str(i) for i in range(n)], dtype=object),
            paths=list(paths) if paths is not None else [str(i) for i in range(n)],
            splits=np.array(splits, dtype=object) if splits is not None else None,
        )

    def __len__(self) -> int:
        return len(self.persons)

    @property
    def cameras_known(self) -> bool:
        return bool(len(self.cameras)) and bool((self.cameras >= 0).all())


@dataclass
class Protocol:
    name: str
    description: str
    query: np.ndarray
    gallery: np.ndarray


def _codes(labels: np.ndarray) -> np.ndarray:
    """Equal labels -> equal small integers."""
    return np.unique(labels.astype(str), return_inverse=True)[1].ravel()


@dataclass(frozen=True)
class MatchCodes:
    """Integer codes of the labels the matching rule compares (fast to compare in bulk)."""

    person: np.ndarray
    view: np.ndarray  # camera, or tracklet group when cameras are unknown
    identity: np.ndarray  # bool: a real identity (not junk, not distractor)
    junk: np.ndarray  # bool: a junk person

    @classmethod
    def of(cls, items: EvalItems) -> MatchCodes:
        person = np.unique(items.persons.astype(str), return_inverse=True)[1]
        view = (
            items.cameras
            if items.cameras_known
            else np.unique(items.groups.astype(str), return_inverse=True)[1]
        )
        return cls(person, np.asarray(view), items.kinds == KIND_IDENTITY, items.kinds == KIND_JUNK)


def matching_masks(
    items: EvalItems, query: np.ndarray, gallery: np.ndarray, codes: MatchCodes | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(positive, junk) boolean masks of shape (len(query), len(gallery))."""
    codes = codes or MatchCodes.of(items)
    same_person = codes.person[query][:, None] == codes.person[gallery][None, :]
    same_view = codes.view[query][:, None] == codes.view[gallery][None, :]
    is_self = query[:, None] == gallery[None, :]
    junk = codes.junk[gallery][None, :] | (same_person & same_view) | is_self
    positive = same_person & ~same_view & codes.identity[gallery][None, :]
    return positive, junk


def _rule(items: EvalItems) -> str:
    return RULE if items.cameras_known else RULE_NO_CAMERA


def cross_camera(
    items: EvalItems, query_cameras: list[int] | None = None, gallery_cameras: list[int] | None = None
) -> Protocol:
    """Every identity item (of ``query_cameras`` if given) against all items (of ``gallery_cameras``)."""
    if (query_cameras or gallery_cameras) and not items.cameras_known:
        raise ProtocolError("--query-camera/--gallery-camera need camera labels, and these items have none")
    query = np.flatnonzero(items.kinds == KIND_IDENTITY)
    gallery = np.arange(len(items))
    if query_cameras:
        query = query[np.isin(items.cameras[query], query_cameras)]
    if gallery_cameras:
        gallery = gallery[np.isin(items.cameras[gallery], gallery_cameras)]
    same = query_cameras and gallery_cameras and set(query_cameras) == set(gallery_cameras)
    if same and len(set(gallery_cameras)) == 1:
        raise ProtocolError(
            f"--query-camera and --gallery-camera are both {sorted(set(query_cameras))}: a query never "
            "matches its own camera's crops of the same person, so no query could be scored"
        )
    if query_cameras and not len(query):
        raise ProtocolError(f"no identity item on --query-camera {sorted(set(query_cameras))}")
    if gallery_cameras and not len(gallery):
        raise ProtocolError(f"no item on --gallery-camera {sorted(set(gallery_cameras))}")
    where = ""
    if query_cameras or gallery_cameras:
        where = (
            f" (queries from cameras {query_cameras or 'all'}, "
            f"gallery from cameras {gallery_cameras or 'all'})"
        )
    name = "cross-camera" if items.cameras_known else "cross-tracklet"
    return Protocol(name, f"every identity item queries the gallery{where}; {_rule(items)}", query, gallery)


def market1501(items: EvalItems) -> Protocol:
    """Market-1501: ``query`` split against ``bounding_box_test``."""
    if items.splits is None:
        raise ProtocolError("Market-1501 protocol needs split labels")
    query = np.flatnonzero((items.splits == "query") & (items.kinds == KIND_IDENTITY))
    gallery = np.flatnonzero(items.splits == "bounding_box_test")
    if not len(query) or not len(gallery):
        raise ProtocolError("Market-1501 protocol needs query/ and bounding_box_test/")
    return Protocol("market1501", f"query/ against bounding_box_test/; {RULE}", query, gallery)


# ---------------------------------------------------------------------- MARS official
MARS_INFO_FILES = ("tracks_test_info.mat", "query_IDX.mat")


@dataclass
class MarsTracklet:
    """One row of ``tracks_test_info.mat`` resolved to its frame files."""

    frames: list[str]
    person: str
    camera: int
    kind: str


def mars_info_dir(root: str | Path) -> Path | None:
    """``root/info`` if it holds the official MARS test files."""
    info = Path(root) / "info"
    return info if all((info / f).is_file() for f in MARS_INFO_FILES) else None


def mars_test_frames(root: str | Path) -> list[str]:
    """The official frame list: ``info/test_name.txt`` if present, else the sorted ``bbox_test`` listing."""
    root = Path(root)
    names_file = root / "info" / "test_name.txt"
    if names_file.is_file():
        names = [n.strip() for n in names_file.read_text().split() if n.strip()]
        return [str(root / "bbox_test" / n[:4] / n) for n in names]
    frames = []
    for folder in sorted(p for p in (root / "bbox_test").iterdir() if p.is_dir()):
        frames.extend(str(f) for f in sorted(folder.iterdir()) if f.suffix.lower() == ".jpg")
    return frames


def _mars_person(pid: int) -> tuple[str, str]:
    if pid == -1:
        return "00-1", KIND_JUNK
    return f"{pid:04d}", KIND_DISTRACTOR if pid == 0 else KIND_IDENTITY


def load_mars_official(root: str | Path) -> tuple[list[MarsTracklet], np.ndarray]:
    """Resolve the official test tracklets and the 0-based query rows."""
    from scipy.io import loadmat

    info = mars_info_dir(root)
    if info is None:
        raise ProtocolError(f"{root}: info/ lacks {' and '.join(MARS_INFO_FILES)}")
    tracks = np.asarray(loadmat(info / "tracks_test_info.mat")["track_test_info"], dtype=np.int64)
    query_rows = np.asarray(loadmat(info / "query_IDX.mat")["query_IDX"], dtype=np.int64).ravel() - 1
    frames = mars_test_frames(root)
    if tracks[:, 1].max() > len(frames):
        raise ProtocolError(
            f"{root}: tracks_test_info.mat refers to frame {tracks[:, 1].max()}, "
            f"but bbox_test holds {len(frames)} frames"
        )
    tracklets = []
    for row, (first, last, pid, cam) in enumerate(tracks, start=1):
        person, kind = _mars_person(int(pid))
        members = frames[first - 1 : last]
        _check_tracklet(row, members, int(last - first + 1), person, int(cam))
        tracklets.append(MarsTracklet(members, person, int(cam), kind))
    return tracklets, query_rows


def _check_tracklet(row: int, members: list[str], expected: int, person: str, camera: int) -> None:
    """A tracks_test_info row must describe the frames it points at: count, person and camera
    of its first and last frame. Anything else would give silently wrong numbers."""
    if len(members) != expected or expected <= 0:
        raise ProtocolError(
            f"tracks_test_info row {row}: {expected} frames listed, {len(members)} found in the frame list"
        )
    for frame in (members[0], members[-1]):
        record = parse_mars_name(Path(frame))
        if record is None or record.person != person or record.camera != camera:
            raise ProtocolError(
                f"tracks_test_info row {row} says person {person} camera {camera}, but its frame "
                f"{Path(frame).name} says otherwise: the frame list does not match info/ "
                "(a missing or extra file in bbox_test?)"
            )


def mars_official(items: EvalItems, query_rows: np.ndarray) -> Protocol:
    """The official MARS protocol over tracklet items in ``tracks_test_info`` order."""
    return Protocol(
        "mars-official",
        f"MARS official: {len(query_rows)} query tracklets (query_IDX) against all {len(items)} "
        f"test tracklets of tracks_test_info as the official code does (torchreid's loader uses a "
        f"smaller 9,330-tracklet gallery); {RULE}",
        np.asarray(query_rows, dtype=np.int64),
        np.arange(len(items)),
    )


def mars_tracklet_key(frame_path: str) -> str | None:
    """The gallery unit key of the tracklet a MARS frame belongs to."""
    record = parse_mars_name(Path(frame_path))
    return None if record is None else f"{Path(frame_path).parent}|{record.tracklet_key}"
