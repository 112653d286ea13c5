"""Visits and the physical constraints that decide between look-alikes.

A **sighting** is what the gallery saw of someone once: a tracklet (the frames of one passage
through one camera), else a single crop. A **visit** is one or more accepted sightings of one
camera that follow each other in time (a tracklet is one visit; single crops of one camera
less than ``gap_seconds`` apart are one visit). Two visits cannot both be the person when
they overlap in time on two cameras that do not overlap (``overlapping`` pairs say which
do), or when they hold two crops of one frame: the more confident visit stays, the other is
set aside with the reason.

Usage::

    >>> from datetime import datetime as dt
    >>> a = Visit(1, [Seen(1, "a.jpg", 1, 5, 0, dt(2026, 1, 1, 10, 0, 0), 0.9, 0.95)])
    >>> b = Visit(2, [Seen(2, "b.jpg", 2, 6, 0, dt(2026, 1, 1, 10, 0, 0), 0.7, 0.60)])
    >>> kept, set_aside = resolve([a, b], overlapping=set())
    >>> [v.camera for v in kept], set_aside[0][1]
    ([1], 'at the same time as a more confident visit on camera 1')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class Seen:
    """One accepted gallery entry: where and when it was seen, how alike and how sure."""

    faiss_id: int
    path: str
    camera: int
    tracklet: int | None
    frame: int | None
    time: datetime
    similarity: float
    confidence: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "faiss_id": self.faiss_id, "path": self.path, "camera": self.camera, "tracklet": self.tracklet,
            "frame": self.frame, "time": self.time.isoformat(), "similarity": round(self.similarity, 6),
            "confidence": round(self.confidence, 4), "extra": self.extra,
        }  # fmt: skip


@dataclass
class Visit:
    """Accepted sightings on one camera, one passage: time span, best crop, confidence."""

    camera: int
    entries: list[Seen]

    @property
    def first(self) -> datetime:
        return min(e.time for e in self.entries)

    @property
    def last(self) -> datetime:
        return max(e.time for e in self.entries)

    @property
    def best(self) -> Seen:
        return max(self.entries, key=lambda e: e.similarity)

    @property
    def confidence(self) -> float:
        return max(e.confidence for e in self.entries)

    @property
    def frames(self) -> set[tuple[int, Any]]:
        """(camera, moment) of each crop: a frame number of a video, else the time."""
        return {
            (e.camera, (e.extra.get("video"), e.frame) if e.frame is not None else e.time)
            for e in self.entries
        }

    def to_dict(self) -> dict[str, Any]:
        frames = sorted(e.frame for e in self.entries if e.frame is not None)
        return {
            "camera": self.camera,
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
            "seconds": round((self.last - self.first).total_seconds(), 3),
            "video": self.best.extra.get("video"),
            "frames": [frames[0], frames[-1]] if frames else None,
            "tracklets": sorted({e.tracklet for e in self.entries if e.tracklet is not None}),
            "best": self.best.to_dict(),
            "confidence": round(self.confidence, 4),
            "entries": [e.to_dict() for e in sorted(self.entries, key=lambda e: (e.time, e.faiss_id))],
        }


def group_visits(seen: list[Seen], gap_seconds: float) -> list[Visit]:
    """Sightings -> visits: a tracklet's crops are one visit; single crops of one camera join
    the visit before them when less than ``gap_seconds`` apart and of another frame."""
    visits: list[Visit] = []
    by_tracklet: dict[tuple[int, int], list[Seen]] = {}
    singles: list[Seen] = []
    for s in seen:
        (by_tracklet.setdefault((s.camera, s.tracklet), []) if s.tracklet is not None else singles).append(s)
    visits += [Visit(camera, entries) for (camera, _), entries in by_tracklet.items()]
    for camera in sorted({s.camera for s in singles}):
        current: Visit | None = None
        for s in sorted((s for s in singles if s.camera == camera), key=lambda s: s.time):
            near = current is not None and (s.time - current.last).total_seconds() <= gap_seconds
            if near and s.time not in {e.time for e in current.entries}:
                current.entries.append(s)
            else:
                current = Visit(camera, [s])
                visits.append(current)
    return visits


def conflict(a, b, overlapping: set[frozenset[int]]) -> str | None:
    """Why ``a`` and ``b`` cannot both be one person (None: they can). Anything with a
    ``camera``, ``first`` / ``last`` times (None: unknown) and a set of ``frames`` (camera,
    moment) is checked: visits here, sightings in :mod:`.identities`."""
    if a.frames & b.frames:
        return f"a crop of the same frame as a more confident visit on camera {b.camera}"
    apart = a.camera != b.camera and frozenset((a.camera, b.camera)) not in overlapping
    timed = a.first is not None and b.first is not None
    if apart and timed and a.first <= b.last and b.first <= a.last:
        return f"at the same time as a more confident visit on camera {b.camera}"
    return None


def resolve(
    visits: list[Visit], overlapping: set[frozenset[int]]
) -> tuple[list[Visit], list[tuple[Visit, str]]]:
    """Keep the most confident visits that fit together (greedy, most confident first): the kept
    visits in time order, and each visit set aside with the reason."""
    kept: list[Visit] = []
    set_aside: list[tuple[Visit, str]] = []
    for visit in sorted(visits, key=lambda v: (-v.confidence, -v.best.similarity, v.first)):
        why = next((w for other in kept if (w := conflict(visit, other, overlapping))), None)
        if why:
            set_aside.append((visit, why))
        else:
            kept.append(visit)
    return sorted(kept, key=lambda v: (v.first, v.camera)), set_aside


def transitions(visits: list[Visit]) -> list[dict[str, Any]]:
    """Camera changes between consecutive visits (in time order), with the travel time."""
    out = []
    for before, after in zip(visits, visits[1:], strict=False):
        if before.camera != after.camera:
            out.append({
                "from_camera": before.camera, "to_camera": after.camera, "left": before.last.isoformat(),
                "arrived": after.first.isoformat(),
                "travel_seconds": round((after.first - before.last).total_seconds(), 3),
            })  # fmt: skip
    return out
