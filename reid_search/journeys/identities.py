"""Who is who across a whole gallery: its tracklets and crops linked into global identities.

Units are the gallery's sightings (a tracklet's mean vector, else a crop). Units whose
vectors are each among the other's nearest are candidate links; groups merge by **average
linkage** (the mean cosine over all their members, highest first) while it reaches the
threshold (the model card's same-person threshold unless given) — and only when the merged
group stays physically possible: never two crops of one frame, never on two cameras at once
(unless ``overlapping`` says those cameras see one place). The result is stored in the
gallery's SQLite (``identities``: entry -> identity; ``identity_runs``: the model, settings
and time that made them) and replaces the previous run.

Usage::

    from reid_search.gallery import Gallery
    from reid_search.journeys.identities import link_identities
    with Gallery.open("site") as gallery:
        report = link_identities(gallery)
    report.identities, report.units
"""

from __future__ import annotations

import bisect
import heapq
import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ..gallery import Gallery, GalleryError
from ..gallery.clusters import card_threshold
from .visits import conflict

DEFAULT_K = 10
MIN_PROVEN = 100  # proven-different pairs a gallery needs before its own threshold is used
PROVEN_FAR = 0.001  # share of proven-different pairs the gallery's threshold may still link


@dataclass
class IdentitiesReport:
    units: int  # sightings linked (tracklets, single crops)
    identities: int
    threshold: float
    threshold_source: str
    k: int
    constraint_refusals: int  # merges the constraints refused
    seconds: float
    linked: int = 0  # sightings linked by this run (the new ones, when incremental)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Unit:
    camera: int | None
    first: str | None
    last: str | None
    frames: set


def _units(gallery: Gallery) -> tuple[list[list[int]], list[_Unit], np.ndarray]:
    """(entry ids of each unit, its facts, its unit mean vector)."""
    rows = gallery.rows()
    members: dict[tuple, list[int]] = defaultdict(list)
    for faiss_id, row in rows.items():
        key = ("t", row["camera"], row["tracklet"]) if row["tracklet"] is not None else ("e", faiss_id)
        members[key].append(faiss_id)
    ids = [sorted(m) for m in members.values()]
    facts = []
    for group in ids:
        times = sorted(rows[i]["time"] for i in group if rows[i].get("time"))
        frames = {(rows[i]["camera"], rows[i]["time"] or rows[i]["frame"]) for i in group}
        facts.append(
            _Unit(rows[group[0]]["camera"], times[0] if times else None, times[-1] if times else None, frames)
        )
    all_ids, all_vectors = gallery.vectors()  # one pass over SQLite, not a query per sighting
    position = {int(i): n for n, i in enumerate(all_ids)}
    vectors = np.stack([all_vectors[[position[i] for i in group]].mean(axis=0) for group in ids])
    vectors = vectors.astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return ids, facts, vectors


def _compatible(a: list[_Unit], b: list[_Unit], overlapping: set[frozenset[int]]) -> bool:
    """Could the sightings of two groups all be one person (the constraints of :func:`.visits.conflict`)?"""
    return not any(conflict(x, y, overlapping) for x in a for y in b)


def link_identities(
    gallery: Gallery,
    threshold: float | None = None,
    k: int = DEFAULT_K,
    overlapping: list[tuple[int, int]] | tuple = (),
    constraints: bool = True,
    rebuild: bool = False,
) -> IdentitiesReport:
    """Link the sightings of ``gallery`` into identities and store them (see the module).

    Incremental unless ``rebuild``: when the gallery already holds identities made by the
    same model, they are kept as they are (never split, their numbers kept) and only the new
    sightings are linked, to them or among themselves, at the last run's threshold."""
    import faiss

    started = time.perf_counter()
    if gallery.size == 0:
        raise GalleryError(f"gallery {gallery.name} is empty: nothing to link")
    ids, facts, vectors = _units(gallery)
    n = len(ids)
    stored, last = ({}, None) if rebuild else (stored_identities(gallery), _last_run(gallery))
    if last is None or last[0] != gallery.model_sha256 or threshold not in (None, last[1]["threshold"]):
        stored = {}  # a first run, another model or another threshold: everything again
    old = {u for u, group in enumerate(ids) if all(e in stored for e in group)}
    if stored:
        threshold, source = float(last[1]["threshold"]), "the last run's (incremental)"
    else:
        threshold, source = _threshold(threshold, gallery, facts, vectors, overlapping)
    new_units = [u for u in range(n) if u not in old]
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    queries = new_units if stored else list(range(n))
    sims, nbrs = (
        index.search(vectors[queries], min(n, k + 1)) if queries else (np.zeros((0, 1)), np.zeros((0, 1)))
    )
    pairs = {}
    for row, i in enumerate(queries):
        for s, j in zip(sims[row], nbrs[row], strict=True):
            if j >= 0 and j != i and s >= threshold:
                pairs[(min(i, int(j)), max(i, int(j)))] = float(s)
    parent = list(range(n))
    sums = {i: vectors[i].astype(np.float64) for i in range(n)}
    sizes = {i: 1 for i in range(n)}
    units = {i: [facts[i]] for i in range(n)}
    pairs_overlap = {frozenset(p) for p in overlapping}
    refusals = 0

    def root(u: int) -> int:
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    first_of: dict[int, int] = {}
    for u in sorted(old):  # the stored identities, as they were
        identity = stored[ids[u][0]]
        if identity in first_of:
            ra, rb = first_of[identity], u
            parent[rb] = ra
            sums[ra] += sums.pop(rb)
            sizes[ra] += sizes.pop(rb)
            units[ra] += units.pop(rb)
        else:
            first_of[identity] = u
    heap = [(-s, root(a), root(b), sizes[root(a)], sizes[root(b)]) for (a, b), s in pairs.items()]
    heapq.heapify(heap)

    while heap:
        neg, a, b, size_a, size_b = heapq.heappop(heap)
        ra, rb = root(a), root(b)
        if ra == rb:
            continue
        if (sizes[ra], sizes[rb]) != (size_a, size_b):  # stale: re-score with today's groups
            mean = float(sums[ra] @ sums[rb]) / (sizes[ra] * sizes[rb])
            if mean >= threshold:
                heapq.heappush(heap, (-mean, ra, rb, sizes[ra], sizes[rb]))
            continue
        if constraints and not _compatible(units[ra], units[rb], pairs_overlap):
            refusals += 1
            continue
        parent[rb] = ra
        sums[ra] += sums.pop(rb)
        sizes[ra] += sizes.pop(rb)
        units[ra] += units.pop(rb)
    labels = _numbered([root(i) for i in range(n)], ids, stored)
    overlapping_list = sorted(sorted(p) for p in pairs_overlap)
    settings = {
        "threshold": threshold,
        "k": k,
        "overlapping_cameras": overlapping_list,
        "constraints": constraints,
    }
    _store(gallery, {entry: int(labels[u]) for u, group in enumerate(ids) for entry in group}, settings)
    return IdentitiesReport(
        n,
        len(set(labels.tolist())),
        threshold,
        source,
        k,
        refusals,
        time.perf_counter() - started,
        len(new_units) if stored else n,
    )


def _threshold(given, gallery, facts, vectors, overlapping) -> tuple[float, str]:
    """The linking threshold and where it came from: as given; else the model card's, raised
    to what the gallery itself proves when it can: sightings on two cameras at the same time
    (cameras that do not overlap) are different people, and at most ``PROVEN_FAR`` of those
    pairs may reach the threshold (when the gallery holds ``MIN_PROVEN`` such pairs)."""
    if given is not None:
        return float(given), "--threshold"
    card = card_threshold(gallery)
    sims = _proven_different(facts, vectors, {frozenset(p) for p in overlapping})
    if len(sims) < MIN_PROVEN:
        return float(card), f"model card ({len(sims)} proven-different pairs here: too few to fit)"
    fitted = float(np.quantile(sims, 1 - PROVEN_FAR))
    if fitted <= card:
        return float(card), f"model card (the gallery's {len(sims)} proven-different pairs allow it)"
    return fitted, f"fitted on the gallery: {len(sims)} pairs of sightings on two cameras at once"


def _proven_different(facts, vectors, overlapping, limit: int = 200_000) -> np.ndarray:
    """Cosines of sighting pairs that cannot be one person: on two cameras (not overlapping)
    at overlapping times (a sweep over the sightings in time order)."""
    timed = sorted((f.first, f.last, i) for i, f in enumerate(facts) if f.first)
    starts = [t[0] for t in timed]
    sims = []
    for a, (_, last, i) in enumerate(timed):
        for b in range(a + 1, bisect.bisect_right(starts, last)):
            j = timed[b][2]
            ci, cj = facts[i].camera, facts[j].camera
            if ci != cj and frozenset((ci, cj)) not in overlapping:
                sims.append(float(vectors[i] @ vectors[j]))
        if len(sims) >= limit:
            break
    return np.array(sims, np.float32)


def _numbered(roots: list[int], ids: list[list[int]], stored: dict[int, int]) -> np.ndarray:
    """Identity numbers per unit: a group holding stored identities keeps the smallest of their
    numbers; other groups get new numbers after the largest stored one."""
    kept: dict[int, int] = {}
    for u, r in enumerate(roots):
        if ids[u][0] in stored:
            kept[r] = min(kept.get(r, stored[ids[u][0]]), stored[ids[u][0]])
    next_number = max(stored.values(), default=-1) + 1
    out = []
    for r in roots:
        if r not in kept:
            kept[r], next_number = next_number, next_number + 1
        out.append(kept[r])
    return np.array(out)


def _last_run(gallery: Gallery) -> tuple[str, dict] | None:
    """(model_sha256, settings) of the gallery's last identities run, or None."""
    try:
        row = gallery.con.execute(
            "select model_sha256, settings from identity_runs order by run desc limit 1"
        ).fetchone()
    except Exception:  # noqa: BLE001 - no table yet
        return None
    return (row[0], json.loads(row[1])) if row else None


def _store(gallery: Gallery, identity_of: dict[int, int], settings: dict[str, Any]) -> None:
    """Replace the stored identities in one transaction, with the run that made them."""
    from ..gallery.folder import transaction

    with transaction(gallery.con) as con:
        con.execute("create table if not exists identities (faiss_id integer primary key, identity integer)")
        con.execute(
            "create table if not exists identity_runs (run integer primary key autoincrement, created text, "
            "model_sha256 text, settings text, identities integer)"
        )
        con.execute("delete from identities")
        con.executemany("insert into identities values (?, ?)", sorted(identity_of.items()))
        con.execute(
            "insert into identity_runs (created, model_sha256, settings, identities) values (?, ?, ?, ?)",
            (datetime.now(timezone.utc).isoformat(timespec="seconds"), gallery.model_sha256,
             json.dumps(settings), len(set(identity_of.values()))),
        )  # fmt: skip


def stored_identities(gallery: Gallery) -> dict[int, int]:
    """Entry -> identity of the last run ({} before any)."""
    try:
        return dict(gallery.con.execute("select faiss_id, identity from identities").fetchall())
    except Exception:  # noqa: BLE001 - no table yet
        return {}


def summary(gallery: Gallery) -> dict[str, Any]:
    """Unique identities per camera and per hour (of the entries' times)."""
    identity_of = stored_identities(gallery)
    if not identity_of:
        raise GalleryError(
            f"gallery {gallery.name} has no identities yet: run reid-search identities {gallery.name}"
        )
    per_camera: dict[Any, set] = defaultdict(set)
    per_hour: dict[str, set] = defaultdict(set)
    for faiss_id, row in gallery.rows(identity_of).items():
        per_camera[row["camera"]].add(identity_of[faiss_id])
        if row.get("time"):
            per_hour[row["time"][:13]].add(identity_of[faiss_id])
    return {
        "identities": len(set(identity_of.values())),
        "per_camera": {str(c): len(s) for c, s in sorted(per_camera.items(), key=lambda kv: str(kv[0]))},
        "per_hour": {h: len(s) for h, s in sorted(per_hour.items())},
    }
