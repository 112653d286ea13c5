"""Group a gallery's entries into people: average linkage over a k-reciprocal neighbour graph.

1. The graph: two entries are linked when each is among the other's ``k`` nearest
   neighbours (found with the gallery's FAISS index): k-reciprocal, so a hub that is
   near everyone links to no one.
2. The cut: linked groups are merged, the pair with the highest *average* cosine over all
   their members first, while that average reaches the threshold (the model card's
   same-person threshold unless given). Average linkage is exact and cheap: the mean
   cosine of two groups is the inner product of their member sums over the product of
   their sizes. Unlike connected components (single linkage), one look-alike pair does
   not chain two people together.

Each entry keeps its cluster id and the similarity of its k-th neighbour (``knn_floor``)
in SQLite. Clustering again handles only entries without a cluster: they are linked (as
above; x counts as among y's k nearest when ``sim >= y.knn_floor``) to existing clusters
and to each other, and merged the same way, so they join existing clusters, start new
ones, or merge clusters they bring together. A different threshold or k re-clusters
everything.

Usage::

    from reid_search.gallery import Gallery
    from reid_search.gallery.clusters import cluster_gallery, list_clusters
    with Gallery.open("crops") as gallery:
        report = cluster_gallery(gallery, threshold=0.6)
        biggest = list_clusters(gallery)[0]
    biggest.size, biggest.cameras
    # (14, [1, 3, 6])
"""

from __future__ import annotations

import heapq
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .store import Gallery, GalleryError

DEFAULT_K = 10
SEARCH_BATCH = 4096


@dataclass
class ClusterReport:
    threshold: float
    k: int
    clustered: int  # entries given a cluster in this run
    clusters: int  # clusters in the gallery afterwards
    merged: int  # existing clusters merged into others by this run
    reclustered: bool  # everything was clustered again (first run, or new threshold / k)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ClusterSummary:
    cluster: int
    size: int
    cameras: list[int]
    first_time: str | None = None
    last_time: str | None = None
    persons: dict[str, int] = field(default_factory=dict)  # labels inside, when the gallery has any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Nodes:
    """Clusters being merged: sum of member vectors, size, neighbours, what they absorbed.

    A node is an existing cluster ``(0, id)`` (its sum read from SQLite when first
    touched) or a new entry ``(1, faiss_id)``. The average cosine between two nodes'
    members is exact from their sums: ``(sum_a . sum_b) / (size_a * size_b)``.
    """

    def __init__(self, gallery: Gallery):
        self.gallery = gallery
        self.sum: dict[Any, np.ndarray] = {}
        self.size: dict[Any, int] = {}
        self.links: dict[Any, set] = {}
        self.absorbed: dict[Any, list] = {}
        self.version: dict[Any, int] = {}

    def add(self, node: Any, vector: np.ndarray | None = None) -> None:
        if node in self.sum:
            return
        if vector is None:  # an existing cluster
            members = self.gallery.cluster_vectors(node[1])
            self.sum[node], self.size[node] = members.sum(0), len(members)
        else:
            self.sum[node], self.size[node] = vector.astype(np.float64), 1
        self.links[node], self.absorbed[node], self.version[node] = set(), [node], 0

    def link(self, a: Any, b: Any) -> None:
        if a != b:
            self.links[a].add(b)
            self.links[b].add(a)

    def linkage(self, a: Any, b: Any) -> float:
        return float(self.sum[a] @ self.sum[b]) / (self.size[a] * self.size[b])

    def merge(self, a: Any, b: Any) -> Any:
        keep, gone = (a, b) if a < b else (b, a)  # existing clusters sort first: their id survives
        self.sum[keep] = self.sum[keep] + self.sum.pop(gone)
        self.size[keep] += self.size.pop(gone)
        self.absorbed[keep] += self.absorbed.pop(gone)
        for other in self.links.pop(gone):
            self.links[other].discard(gone)
            self.link(keep, other)
        self.links[keep].discard(keep)
        self.version[keep] += 1
        del self.version[gone]
        return keep


def _average_linkage(nodes: _Nodes, threshold: float) -> None:
    """Merge the linked pair with the highest average cosine while it reaches ``threshold``."""
    heap = [(-nodes.linkage(a, b), a, b, 0, 0) for a in nodes.links for b in nodes.links[a] if a < b]
    heapq.heapify(heap)
    while heap:
        score, a, b, va, vb = heapq.heappop(heap)
        if -score < threshold:
            break
        if nodes.version.get(a) != va or nodes.version.get(b) != vb:
            continue  # stale: one side has merged since
        keep = nodes.merge(a, b)
        for other in nodes.links[keep]:
            pair = (keep, other) if keep < other else (other, keep)
            entry = (-nodes.linkage(*pair), *pair, nodes.version[pair[0]], nodes.version[pair[1]])
            heapq.heappush(heap, entry)


def _neighbours(gallery: Gallery, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, ids) of each vector's k+1 nearest gallery entries (itself included)."""
    sims, ids = [], []
    for start in range(0, len(vectors), SEARCH_BATCH):
        s, i = gallery.search(vectors[start : start + SEARCH_BATCH], k + 1)
        sims.append(s)
        ids.append(i)
    return np.concatenate(sims), np.concatenate(ids)


def _floors(sims: np.ndarray, ids: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """Similarity of each entry's k-th neighbour other than itself (-1 when it has fewer)."""
    others = np.where((ids == own[:, None]) | (ids < 0), -np.inf, sims)
    ordered = -np.sort(-others, axis=1)
    floor = ordered[:, k - 1] if ordered.shape[1] >= k else np.full(len(own), -np.inf)
    return np.where(np.isfinite(floor), floor, -1.0)


def cluster_gallery(
    gallery: Gallery, threshold: float | None = None, k: int = DEFAULT_K, rebuild: bool = False
) -> ClusterReport:
    """Give every entry without a cluster one (or everything, when ``rebuild`` or the
    settings changed); ``threshold`` None: the model card's same-person threshold."""
    started = time.perf_counter()
    if threshold is None:
        threshold = card_threshold(gallery)
    if k < 1:
        raise GalleryError(f"k must be at least 1, got {k}")
    old_threshold, old_k = gallery.cluster_settings()
    recluster = rebuild or old_threshold is None or float(old_threshold) != threshold or old_k != k
    existing = [] if recluster else gallery.clustered_entries()
    cluster_of, floor_of = {}, {}
    for faiss_id, cluster, floor in existing:
        cluster_of[faiss_id], floor_of[faiss_id] = cluster, floor
    new_ids, new_vectors = gallery.entries_to_cluster(everything=recluster)
    if len(new_ids):
        sims, ids = _neighbours(gallery, new_vectors, k)
        new_floor = _floors(sims, ids, new_ids, k)
    else:
        sims, ids, new_floor = np.zeros((0, 0)), np.zeros((0, 0), np.int64), np.zeros(0)
    floor_of.update(zip(new_ids.tolist(), new_floor.tolist(), strict=True))

    nodes = _Nodes(gallery)
    node_of = lambda i: (0, cluster_of[i]) if i in cluster_of else (1, i)  # noqa: E731
    for x, vector in zip(new_ids.tolist(), new_vectors, strict=True):
        nodes.add((1, x), vector)
    for row, x in enumerate(new_ids.tolist()):
        for sim, y in zip(sims[row].tolist(), ids[row].tolist(), strict=True):
            if y < 0 or y == x or y not in floor_of:
                continue  # padding, itself, or an entry added after this run started
            if sim >= floor_of[y]:  # k-reciprocal: x is also among y's k nearest
                nodes.add(node_of(y))
                nodes.link((1, x), node_of(y))
    _average_linkage(nodes, threshold)

    next_id = 0 if recluster else gallery.highest_cluster() + 1
    assignments, merges = [], []
    floor_by_id = dict(zip(new_ids.tolist(), new_floor.tolist(), strict=True))
    for root in sorted(nodes.absorbed):
        if root[0] == 0:
            label = root[1]
        else:
            label, next_id = next_id, next_id + 1
        for node in nodes.absorbed[root]:
            if node[0] == 1:
                assignments.append((label, floor_by_id[node[1]], node[1]))
            elif node != root:
                merges.append((label, node[1]))
    gallery.write_clusters(assignments, merges, threshold, k, reset=recluster)
    count = gallery.cluster_count()
    return ClusterReport(
        float(threshold), k, len(assignments), count, len(merges), recluster, time.perf_counter() - started
    )


def card_threshold(gallery: Gallery) -> float:
    """The same-person threshold of the card of the model that built ``gallery`` (else an error)."""
    from ..embedding.model_store import card_path, read_card_file

    path = gallery.manifest["model"].get("path")
    card = card_path(path) if path else None
    threshold = read_card_file(card).threshold if card is not None and card.is_file() else None
    if threshold is None:
        raise GalleryError(f"{gallery.path}: the model's card has no same-person threshold; pass --threshold")
    return float(threshold)


def _summary(row) -> ClusterSummary:
    """A row of :meth:`~reid_search.gallery.cluster_rows.ClusterRows.cluster_rows` as a summary."""
    cluster, size, cameras, first, last = row
    cams = sorted(int(c) for c in cameras.split(",")) if cameras else []
    return ClusterSummary(int(cluster), int(size), cams, first, last)


def list_clusters(gallery: Gallery, min_size: int = 1) -> list[ClusterSummary]:
    """Clusters, biggest first, with their cameras, time span and any person labels inside."""
    summaries = [_summary(row) for row in gallery.cluster_rows(min_size)]
    labelled = gallery.cluster_persons()
    by_id = {s.cluster: s for s in summaries}
    for cluster, person, n in labelled:
        if cluster in by_id:
            by_id[cluster].persons[person] = int(n)
    return summaries


def cluster_summary(gallery: Gallery, cluster: int) -> ClusterSummary | None:
    """One cluster's summary (None when no entry has that cluster)."""
    row = gallery.cluster_row(cluster)
    return _summary(row) if row else None
