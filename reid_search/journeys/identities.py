"""Who is who across a whole gallery: its tracklets and crops linked into global identities.

Units are the gallery's sightings (a tracklet's mean vector, else a crop). Two units are
candidates when their **k-reciprocal neighbourhoods** overlap (Zhong et al.'s encoding, as in
re-ranking and in :mod:`reid_search.adaptation.clustering`): a pair scores
``(1 - w) * (1 - Jaccard distance) + w * cosine``, so two sightings are close when the same
other sightings surround them, not only when their vectors meet (a site where everyone
wears the same vest makes every cosine high; the neighbourhoods still tell people apart).
Groups merge by **average linkage** (the mean score over all their members, highest first)
while it reaches ``agreement`` and their mean cosine reaches the threshold (the model card's
same-person threshold unless given), and only when the merged group stays physically
possible: never two crops of one frame, never on two cameras at once (unless ``overlapping``
says those cameras see one place). :class:`LinkSettings` holds the knobs; ``neighbours=0``
is plain cosine average linkage over each unit's nearest units. The result is stored in the
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

COSINE_CANDIDATES = 10  # nearest units each unit is paired with when linking by cosine only
MIN_PROVEN = 100  # proven-different pairs a gallery needs before its own threshold is used
PROVEN_FAR = 0.001  # share of proven-different pairs the gallery's threshold may still link


@dataclass(frozen=True)
class LinkSettings:
    """How sightings are linked (see the module). The defaults were chosen by
    ``python benchmarks/journeys.py --calibrate``: the best mean IDF1 over worlds made of the
    default model's held-out training people (never a test world); docs/querying.md."""

    neighbours: int = 3  # k1 of the k-reciprocal encoding (0: cosine only); about one person's sightings
    expansion: int = 3  # k2: each code averaged over its nearest reciprocal neighbours
    cosine_weight: float = 0.5  # share of the cosine in a pair's score (the rest: 1 - Jaccard)
    agreement: float = 0.5  # mean pair score two groups need to merge (k-reciprocal linking)
    attach: bool = True  # then a sighting left alone joins its most alike identity (mean cosine >= threshold)

    def check(self) -> None:
        if self.neighbours < 0 or self.neighbours == 1 or self.expansion < 1:
            raise GalleryError("link settings: neighbours must be 0 (cosine only) or 2+, expansion 1+")
        if not 0 <= self.cosine_weight <= 1:
            raise GalleryError(f"link settings: cosine_weight must be in [0, 1], not {self.cosine_weight}")


@dataclass
class IdentitiesReport:
    units: int  # sightings linked (tracklets, single crops)
    identities: int
    threshold: float
    threshold_source: str
    neighbours: int  # k-reciprocal neighbours used (0: cosine only)
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


def sightings(gallery: Gallery) -> tuple[list[list[int]], list[_Unit], np.ndarray]:
    """The units linking compares: (entry ids of each sighting, its facts, its unit mean vector);
    a sighting is a tracklet, else a single crop."""
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
    settings: LinkSettings = LinkSettings(),
    overlapping: list[tuple[int, int]] | tuple = (),
    constraints: bool = True,
    rebuild: bool = False,
) -> IdentitiesReport:
    """Link the sightings of ``gallery`` into identities and store them (see the module).

    Incremental unless ``rebuild``: when the gallery already holds identities made by the
    same model and settings, they are kept as they are (never split, their numbers kept) and
    only the new sightings are linked, to them or among themselves, at the last run's threshold."""
    started = time.perf_counter()
    settings.check()
    if gallery.size == 0:
        raise GalleryError(f"gallery {gallery.name} is empty: nothing to link")
    ids, facts, vectors = sightings(gallery)
    n = len(ids)
    stored, last = ({}, None) if rebuild else (stored_identities(gallery), _last_run(gallery))
    same_run = last is not None and (last[0], last[1].get("link")) == (gallery.model_sha256, asdict(settings))
    if not same_run or threshold not in (None, last[1]["threshold"]):
        stored = {}  # a first run, another model, other settings or another threshold: everything again
    old = {u for u, group in enumerate(ids) if all(e in stored for e in group)}
    if stored:
        threshold, source = float(last[1]["threshold"]), "the last run's (incremental)"
    else:
        threshold, source = _threshold(threshold, gallery, facts, vectors, overlapping)
    new_units = [u for u in range(n) if u not in old]
    linker = _Linker(vectors, facts, settings, threshold, {frozenset(p) for p in overlapping}, constraints)
    for identity_units in _stored_groups(old, ids, stored).values():
        linker.join_stored(identity_units)
    linker.run(set(new_units) if stored else set(range(n)))
    if settings.attach:
        linker.attach_alone()
    labels = _numbered(linker.roots(), ids, stored)
    run_settings = {
        "threshold": threshold,
        "link": asdict(settings),
        "overlapping_cameras": sorted(sorted(p) for p in linker.overlapping),
        "constraints": constraints,
    }
    _store(gallery, {entry: int(labels[u]) for u, group in enumerate(ids) for entry in group}, run_settings)
    return IdentitiesReport(
        n, len(set(labels.tolist())), threshold, source, settings.neighbours, linker.refusals,
        time.perf_counter() - started, len(new_units) if stored else n,
    )  # fmt: skip


def _stored_groups(old: set[int], ids: list[list[int]], stored: dict[int, int]) -> dict[int, list[int]]:
    """Stored identity -> its units (the units whose entries all carry it)."""
    groups: dict[int, list[int]] = defaultdict(list)
    for u in sorted(old):
        groups[stored[ids[u][0]]].append(u)
    return groups


class _Linker:
    """Average linkage over sparse pair scores with the physical constraints (see the module).

    A group's score with another is ``(w * sum_a . sum_b + extra[a][b]) / (|a| |b|)``: the cosine
    part from the groups' vector sums, the k-reciprocal part (``(1 - w)(1 - Jaccard)`` of each
    overlapping pair) kept sparse per pair of groups and added up as groups merge."""

    def __init__(self, vectors, facts, settings: LinkSettings, threshold: float, overlapping, constraints):
        self.vectors, self.settings, self.threshold = vectors, settings, threshold
        self.overlapping, self.constraints = overlapping, constraints
        n = len(vectors)
        self.parent = list(range(n))
        self.sums = {i: vectors[i].astype(np.float64) for i in range(n)}
        self.sizes = {i: 1 for i in range(n)}
        self.units = {i: [facts[i]] for i in range(n)}
        self.new = {i: False for i in range(n)}
        self.extra: dict[int, dict[int, float]] = {i: {} for i in range(n)}
        self.refusals = 0

    def root(self, u: int) -> int:
        while self.parent[u] != u:
            self.parent[u] = self.parent[self.parent[u]]
            u = self.parent[u]
        return u

    def roots(self) -> list[int]:
        return [self.root(i) for i in range(len(self.parent))]

    def join_stored(self, units: list[int]) -> None:
        """A stored identity's units, joined as they were (no test)."""
        for u in units[1:]:
            self._merge(self.root(units[0]), self.root(u))

    def _pairs(self) -> dict[tuple[int, int], float]:
        """Candidate unit pairs and their sparse extra score (0 when linking by cosine only)."""
        s = self.settings
        if s.neighbours == 0 or len(self.vectors) < 3:
            import faiss

            index = faiss.IndexFlatIP(self.vectors.shape[1])
            index.add(self.vectors)
            k = min(len(self.vectors), COSINE_CANDIDATES + 1)
            _, nbrs = index.search(self.vectors, k)
            pairs = ((i, int(j)) for i, row in enumerate(nbrs) for j in row if 0 <= j != i)
            return {(min(p), max(p)): 0.0 for p in pairs}
        from ..adaptation.clustering import ClusterSettings, jaccard_neighbours

        rows, cols, dist = jaccard_neighbours(self.vectors, ClusterSettings(k1=s.neighbours, k2=s.expansion))
        keep = rows < cols
        weight = 1.0 - s.cosine_weight
        found = zip(rows[keep], cols[keep], dist[keep], strict=True)
        return {(int(i), int(j)): weight * (1.0 - float(d)) for i, j, d in found}

    def _score(self, a: int, b: int) -> tuple[float, float]:
        """(mean pair score, mean cosine) of groups ``a`` and ``b``."""
        pairs = self.sizes[a] * self.sizes[b]
        cosine = float(self.sums[a] @ self.sums[b]) / pairs
        if self.settings.neighbours == 0:
            return cosine, cosine
        w = self.settings.cosine_weight
        return (w * cosine * pairs + self.extra[a].get(b, 0.0)) / pairs, cosine

    def _passes(self, a: int, b: int) -> float | None:
        score, cosine = self._score(a, b)
        needed = self.threshold if self.settings.neighbours == 0 else self.settings.agreement
        return score if score >= needed and cosine >= self.threshold else None

    def run(self, linkable: set[int]) -> None:
        """Merge while a pair with a ``linkable`` (new) unit on one side passes, best first."""
        for u in linkable:
            self.new[self.root(u)] = True
        heap = []
        for (i, j), extra in self._pairs().items():
            a, b = self.root(i), self.root(j)
            if a == b or not (self.new[a] or self.new[b]):
                continue
            self.extra[a][b] = self.extra[a].get(b, 0.0) + extra
            self.extra[b][a] = self.extra[b].get(a, 0.0) + extra
        for a, partners in self.extra.items():
            for b in partners:
                if a < b and (score := self._passes(a, b)) is not None:
                    heap.append((-score, a, b, self.sizes[a], self.sizes[b]))
        heapq.heapify(heap)
        while heap:
            _, a, b, size_a, size_b = heapq.heappop(heap)
            ra, rb = self.root(a), self.root(b)
            if ra == rb or (self.sizes[ra], self.sizes[rb]) != (size_a, size_b):
                if ra != rb and (score := self._passes(ra, rb)) is not None:  # stale: today's groups
                    heapq.heappush(heap, (-score, ra, rb, self.sizes[ra], self.sizes[rb]))
                continue
            if self.constraints and not _compatible(self.units[ra], self.units[rb], self.overlapping):
                self.refusals += 1
                continue
            self._merge(ra, rb)
            for other in self.extra[ra]:
                if (score := self._passes(ra, other)) is not None:
                    heapq.heappush(heap, (-score, ra, other, self.sizes[ra], self.sizes[other]))

    def attach_alone(self, candidates: int = 10) -> None:
        """Each new sighting still alone joins the identity (2+ sightings) whose sightings its
        mean cosine reaches best, at the threshold at least and when the constraints allow;
        the most alike first. The identities' means are those before any attachment."""
        import faiss

        groups = [r for r, size in self.sizes.items() if size > 1]
        alone = [r for r, size in self.sizes.items() if size == 1 and self.new[r]]
        if not groups or not alone:
            return
        means = np.stack([self.sums[g] / self.sizes[g] for g in groups]).astype(np.float32)
        index = faiss.IndexFlatIP(means.shape[1])
        index.add(means)
        sims, nearest = index.search(self.vectors[alone], min(candidates, len(groups)))
        order = sorted(range(len(alone)), key=lambda i: -sims[i, 0])
        for i in order:
            for sim, g in zip(sims[i], nearest[i], strict=True):
                if g < 0 or sim < self.threshold:
                    break
                target = self.root(groups[g])
                fits = _compatible(self.units[target], self.units[alone[i]], self.overlapping)
                if fits or not self.constraints:
                    self._merge(target, alone[i])
                    break
                self.refusals += 1

    def _merge(self, ra: int, rb: int) -> None:
        self.parent[rb] = ra
        self.sums[ra] += self.sums.pop(rb)
        self.sizes[ra] += self.sizes.pop(rb)
        self.units[ra] += self.units.pop(rb)
        self.new[ra] = self.new[ra] or self.new.pop(rb)
        moved = self.extra.pop(rb)
        moved.pop(ra, None)
        self.extra[ra].pop(rb, None)
        for other, value in moved.items():
            self.extra[ra][other] = self.extra[ra].get(other, 0.0) + value
            partner = self.extra[other]
            partner[ra] = partner.get(ra, 0.0) + partner.pop(rb)


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


def identities_are_current(gallery: Gallery) -> bool:
    """Whether the gallery holds identities made with the model that embedded it."""
    last = _last_run(gallery)
    return last is not None and last[0] == gallery.model_sha256 and gallery.has_identities()


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
