"""Where did this person go? ``trace`` turns a query into the person's visits across cameras,
in time order, with the camera-to-camera transitions and their travel times.

Every gallery entry near the query is scored per sighting (a tracklet, else a crop) with the
model card's open-set rule, against the query's own background, exactly as ``query`` decides
"in the gallery"; person labels are never read (a journey is what the cameras saw). Accepted
sightings become visits; the physical constraints (:mod:`.visits`) set aside look-alikes.

Usage::

    from reid_search import Embedder, Gallery
    from reid_search.journeys import trace
    with Gallery.open("site") as gallery:
        journey = trace(gallery, Embedder(), ["crop.jpg"], overlapping=[(1, 2)])
    [(v.camera, v.first) for v in journey.visits]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..calibration.open_set import background_similarity
from ..errors import InputError
from ..gallery import Gallery, GalleryError
from ..search.query import Background, GalleryMatch, embed_query, open_set_rule_for, sighting
from .identities import identities_are_current
from .visits import Seen, Visit, group_visits, resolve, transitions

TRACE_SCHEMA = "reid-search/trace/v1"
MAX_ENTRIES = 4096  # entries fetched at most around the query (its nearest sightings)
TRACE_BY = ("auto", "query", "identity")  # what decides a journey's sightings (see trace_vector)


@dataclass
class Journey:
    """A traced person: visits in time order, transitions, the visits set aside and why."""

    gallery: str
    images: list[str]
    visits: list[Visit]
    transitions: list[dict[str, Any]]
    set_aside: list[tuple[Visit, str]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": TRACE_SCHEMA,
            "gallery": self.gallery,
            "query": {"images": self.images},
            "settings": self.settings,
            "visits": [v.to_dict() for v in self.visits],
            "transitions": self.transitions,
            "set_aside": [{**v.to_dict(), "reason": why} for v, why in self.set_aside],
        }


def trace(
    gallery: Gallery,
    embedder,
    images: Sequence[str | Path],
    overlapping: Sequence[tuple[int, int]] = (),
    gap_seconds: float = 10.0,
    min_score: float | None = None,
    by: str = "auto",
) -> Journey:
    """The query person's journey through ``gallery`` (see the module docstring; ``by``: see
    :func:`trace_vector`)."""
    gallery.check_model(embedder.model_sha256, embedder.model.path)
    query, used, _ = embed_query(embedder, images)
    return trace_vector(gallery, query, [str(p) for p in used], embedder.card, overlapping, gap_seconds,
                        min_score, by=by)  # fmt: skip


def trace_vector(
    gallery: Gallery,
    query: np.ndarray,
    images: Sequence[str],
    card,
    overlapping: Sequence[tuple[int, int]] = (),
    gap_seconds: float = 10.0,
    min_score: float | None = None,
    constraints: bool = True,
    expand: int = 2,
    by: str = "auto",
) -> Journey:
    """:func:`trace` for an already embedded (pooled, unit) query vector; ``card`` is the model
    card of the model that embedded it (its open-set rule). The server answers through here.
    ``constraints=False`` keeps every accepted visit (to measure what the constraints add).
    ``expand`` rounds of query expansion: the query plus the (unit) mean vector of each visit
    kept so far (a person seen from more angles finds the visits those angles resemble; the
    setting was chosen on the market world and holds on the calibration worlds of
    ``benchmarks/journeys.py --calibrate``).

    ``by="identity"``: the journey of the stored identity (``reid-search identities``) that
    holds the query's most confident accepted sighting: the gallery-wide linking decides which
    sightings are the person, the query only which person (empty when nobody is accepted).
    ``by="auto"`` (the default): by identity when the gallery's identities were made with its
    current model and hold the query's best match, else by the query (``--calibrate`` measured
    the identity route better on every calibration world: docs/querying.md)."""
    cameras = set(gallery.cameras())
    pairs = {frozenset(p) for p in overlapping}
    unknown = sorted({c for p in overlapping for c in p} - cameras)
    if unknown:
        raise GalleryError(
            f"--overlapping-cameras names camera {', '.join(map(str, unknown))}, which gallery "
            f"{gallery.name} does not have (its cameras: {', '.join(map(str, sorted(cameras))) or 'none'})"
        )
    if by not in TRACE_BY:
        raise GalleryError(f"trace by {by!r}: expected one of {', '.join(TRACE_BY)}")
    if by != "query" and (by == "identity" or identities_are_current(gallery)):
        strict = by == "identity"
        journey = _trace_query_identity(gallery, query, images, card, min_score, gap_seconds, strict)
        if journey is not None:
            return journey
    kept, set_aside = _visits(gallery, query, card, min_score, gap_seconds, pairs, constraints)
    for _ in range(expand):
        if not kept:
            break
        expanded = query + sum(
            _unit(gallery.vectors_for([e.faiss_id for e in v.entries]).mean(axis=0)) for v in kept
        )
        expanded = _unit(expanded)
        kept, set_aside = _visits(gallery, expanded, card, min_score, gap_seconds, pairs, constraints)
    settings = {
        "by": "query", "overlapping_cameras": sorted(sorted(p) for p in pairs), "gap_seconds": gap_seconds,
        "min_score": min_score, "constraints": constraints, "expand": expand,
        "model_sha256": gallery.model_sha256,
    }  # fmt: skip
    return Journey(gallery.name, list(images), kept, transitions(kept), set_aside, settings)


def trace_identity(
    gallery: Gallery,
    identity: int,
    gap_seconds: float = 10.0,
    like: np.ndarray | None = None,
    confidence: float = 1.0,
) -> Journey:
    """The visits of one stored identity (``reid-search identities``), in time order: every
    sighting the identity links, each with its cosine to ``like`` (a query vector; default:
    the identity's mean) and ``confidence``."""
    ids = gallery.identity_members(identity)
    if not ids:
        known = (
            "run `reid-search identities` first"
            if not gallery.has_identities()
            else "see `identities --json`"
        )
        raise GalleryError(f"gallery {gallery.name} has no identity {identity} ({known})")
    vectors = gallery.vectors_for(ids)
    sims = vectors @ (_unit(vectors.mean(axis=0)) if like is None else like)
    rows = gallery.rows(ids)
    seen = []
    for faiss_id, sim in zip(ids, sims.tolist(), strict=True):
        row = rows[faiss_id]
        if row["camera"] is None or not row.get("time"):
            raise GalleryError(f"gallery {gallery.name}: entry {row['path']} has no camera or time")
        extra = GalleryMatch.from_row(row, sim).extra
        seen.append(Seen(faiss_id, row["path"], row["camera"], row["tracklet"], row["frame"],
                         datetime.fromisoformat(row["time"]), sim, confidence, extra))  # fmt: skip
    visits = sorted(group_visits(seen, gap_seconds), key=lambda v: (v.first, v.camera))
    settings = {"identity": int(identity), "gap_seconds": gap_seconds, "model_sha256": gallery.model_sha256}
    return Journey(gallery.name, [], visits, transitions(visits), [], settings)


def _trace_query_identity(
    gallery, query, images, card, min_score, gap_seconds, strict: bool
) -> Journey | None:
    """``trace_vector(by="identity")``: the stored identity of the query's best accepted sighting
    (None, unless ``strict``, when that sighting was indexed after the last identities run)."""
    if not gallery.has_identities():
        raise GalleryError(
            f"gallery {gallery.name} has no identities to trace by: run reid-search identities {gallery.name}"
        )
    seen = accepted_sightings(gallery, query, card, min_score)
    settings = {"by": "identity", "gap_seconds": gap_seconds, "min_score": min_score,
                "model_sha256": gallery.model_sha256}  # fmt: skip
    if not seen:
        return Journey(gallery.name, list(images), [], [], [], settings)
    best = max(seen, key=lambda s: (s.confidence, s.similarity))
    identity = gallery.identity_of([best.faiss_id]).get(best.faiss_id)
    if identity is None and not strict:
        return None
    if identity is None:  # indexed after the last identities run
        raise GalleryError(
            f"gallery {gallery.name}: the query's best match {best.path} has no identity yet "
            f"(indexed since the last run): run reid-search identities {gallery.name}"
        )
    # as alike as the query finds them; as sure as its match
    journey = trace_identity(gallery, identity, gap_seconds, like=query, confidence=best.confidence)
    journey.images = list(images)
    journey.settings = {**settings, "identity": int(identity), "matched": best.path}
    return journey


def camera_pair(text: str) -> tuple[int, int]:
    """``"1,2"`` -> (1, 2): two cameras that see one place; anything else is one InputError.

    >>> camera_pair("1, 2")
    (1, 2)
    """
    parts = str(text).split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and len(p.strip()) <= 18 for p in parts):
        raise InputError(
            f"--overlapping-cameras (overlapping_cameras) {str(text)[:40]!r}: "
            "expected two camera numbers, e.g. 1,2"
        )
    return int(parts[0]), int(parts[1])


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def _visits(gallery, query, card, min_score, gap_seconds, pairs, constraints):
    visits = group_visits(accepted_sightings(gallery, query, card, min_score), gap_seconds)
    if constraints:
        return resolve(visits, pairs)
    return sorted(visits, key=lambda v: (v.first, v.camera)), []


def accepted_sightings(gallery: Gallery, query: np.ndarray, card, min_score: float | None) -> list[Seen]:
    """Entries of the sightings the open-set rule (or ``min_score``) accepts as the query's
    person, each with its similarity and confidence; an entry without camera or time is an
    error naming the commands that add them."""
    fetch = min(gallery.size, MAX_ENTRIES)
    if fetch == 0:
        return []
    sims, ids = gallery.search(query, fetch)
    hits = [(int(i), float(s)) for i, s in zip(ids[0], sims[0], strict=True) if i >= 0]
    rows = gallery.rows(i for i, _ in hits)
    best: dict[tuple, float] = {}
    for faiss_id, sim in hits:
        key = sighting({**rows[faiss_id], "person": None})  # the cameras' view: labels not read
        best[key] = max(sim, best.get(key, -math.inf))
    in_tracklets = sum(rows[i]["tracklet"] is not None for i, _ in hits) * 2 > len(hits)
    background = Background(
        background_similarity(np.sort([s for _, s in hits])[::-1]),
        background_similarity(np.sort(list(best.values()))[::-1]),
        in_tracklets,
    )
    rule, base, _ = open_set_rule_for(card, background)
    threshold = min_score if min_score is not None else getattr(card, "threshold", None)
    if rule is None and threshold is None:
        raise GalleryError("the model card has neither an open-set rule nor a threshold: give --min-score")
    out = []
    for faiss_id, sim in hits:
        row = rows[faiss_id]
        top = best[sighting({**row, "person": None})]
        confidence = rule.confidence(top, top - base) if rule is not None else float(top >= threshold)
        accepted = top >= threshold if (min_score is not None or rule is None) else confidence >= rule.accept
        if not accepted:
            continue
        if row["camera"] is None or not row.get("time"):
            raise GalleryError(
                f"gallery {gallery.name}: entry {row['path']} has no camera or time; a journey needs both "
                "(index with --name-pattern or --metadata, or index video)"
            )
        match = GalleryMatch.from_row(row, sim)
        out.append(Seen(faiss_id, row["path"], row["camera"], row["tracklet"], row["frame"],
                        datetime.fromisoformat(row["time"]), sim, confidence, match.extra))  # fmt: skip
    return out
