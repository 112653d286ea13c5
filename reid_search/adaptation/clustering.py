"""Pseudo-identities from unlabelled embeddings: k-reciprocal Jaccard distance + DBSCAN, with the
structure a gallery already knows used as constraints.

* **must-link**: the frames of one tracklet are one person. Each crop is clustered with its
  tracklet's mean vector, so a tracklet is never split (and gives its neighbours more votes).
* **cannot-link**: two crops of the same camera and time (one frame) are two people. Their
  distance is set to the maximum before DBSCAN, and a cluster that still joins them (through
  others) keeps only the member nearer its centre; the other goes unclustered.
* **camera-aware**: each camera's mean vector is taken away before the neighbours are found,
  so that a camera's light and angle do not decide the neighbours (clusters that are cameras).

Crops no dense cluster takes stay unclustered (label -1): they are never forced into a class.

The Jaccard distance follows Zhong et al.'s k-reciprocal encoding (as in SpCL / Cluster
Contrast), computed sparsely: only pairs whose neighbour sets overlap get a distance below 1,
so a 10,000-crop set takes seconds and memory linear in its size.

Usage::

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> centres = rng.normal(size=(5, 16))
    >>> x = np.repeat(centres, 8, axis=0) + 0.05 * rng.normal(size=(40, 16))
    >>> x /= np.linalg.norm(x, axis=1, keepdims=True)
    >>> labels = cluster(x, ClusterSettings(k1=6, k2=2, eps=0.6, min_samples=3))
    >>> len(set(labels.tolist()) - {-1})
    5
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClusterSettings:
    """k1, k2: the k-reciprocal neighbourhood and query-expansion sizes; eps: the Jaccard distance
    within which two crops are neighbours; min_samples: neighbours (self included) a core needs."""

    k1: int = 30
    k2: int = 6
    eps: float = 0.45  # chosen on cuhk01-mars bbox_train with a model that never saw it (precision first)
    min_samples: int = 4


def camera_centred(vectors: np.ndarray, cameras: np.ndarray) -> np.ndarray:
    """Unit vectors with each camera's mean taken away (cameras < 0: one unknown camera).

    >>> v = np.array([[1.0, 0, 1], [0, 1, 1], [1, 0, -1], [0, 1, -1]]) / np.sqrt(2)  # A, B on two cameras
    >>> c = camera_centred(v, np.array([1, 1, 2, 2]))
    >>> abs(round(float(v[0] @ v[2]), 3)), round(float(c[0] @ c[2]), 3)  # person A across cameras
    (0.0, 1.0)
    """
    out = np.array(vectors, np.float32, copy=True)
    for camera in np.unique(cameras):
        rows = cameras == camera
        out[rows] -= out[rows].mean(axis=0)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def tracklet_means(vectors: np.ndarray, tracklets: np.ndarray) -> np.ndarray:
    """Each crop's vector replaced by its tracklet's mean (re-normalised); tracklet -1 = none.

    >>> v = np.eye(3, dtype=np.float32)
    >>> tracklet_means(v, np.array([0, 0, -1])).astype(float).round(3).tolist()
    [[0.707, 0.707, 0.0], [0.707, 0.707, 0.0], [0.0, 0.0, 1.0]]
    """
    out = np.array(vectors, np.float32, copy=True)
    known = tracklets >= 0
    if known.any():
        codes, inverse = np.unique(tracklets[known], return_inverse=True)
        sums = np.zeros((len(codes), out.shape[1]), np.float32)
        np.add.at(sums, inverse, out[known])
        out[known] = sums[inverse]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _knn(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(distances 2 - 2cos, indices) of each row's k nearest rows, itself first (exact, FAISS)."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, np.float32))
    sims, idx = index.search(np.ascontiguousarray(vectors, np.float32), k)
    rows = np.arange(len(vectors))
    self_first = idx[:, 0] != rows  # duplicates (one tracklet's crops) may tie with the row itself
    if self_first.any():
        for r in np.flatnonzero(self_first):
            where = np.flatnonzero(idx[r] == r)
            pos = where[0] if len(where) else k - 1
            idx[r, 1 : pos + 1], idx[r, 0] = idx[r, :pos].copy(), r
            sims[r, 0] = 1.0
    return np.maximum(2.0 - 2.0 * sims, 0.0), idx


def jaccard_neighbours(
    vectors: np.ndarray, settings: ClusterSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse k-reciprocal Jaccard distances: (rows, cols, distance) for every pair whose encoded
    neighbour sets overlap (all other pairs are at distance 1). The query expansion averages a
    crop's code over those of its k2 nearest that are also its k-reciprocal neighbours, so a
    stray crop (no reciprocal neighbour) keeps its own code and stays far from every cluster."""
    from scipy import sparse

    n = len(vectors)
    k1 = min(settings.k1, n - 1)
    dist, rank = _knn(vectors, k1 + 2)
    half = max(1, int(round(k1 / 2)))
    rank_sets = rank[:, : k1 + 1]
    in_top = [set(r.tolist()) for r in rank_sets]
    in_half = [set(r[: half + 1].tolist()) for r in rank]

    def reciprocal(i: int, k: int, sets) -> np.ndarray:
        forward = rank[i, : k + 1]
        return np.array([j for j in forward.tolist() if i in sets[j]], np.int64)

    k2 = max(1, min(settings.k2, n))
    rows, cols, weights, expansion = [], [], [], []
    for i in range(n):
        core = reciprocal(i, k1, in_top)
        members = set(core.tolist())
        grown = [core]
        for j in core.tolist():
            candidate = reciprocal(j, half, in_half)
            if len(members.intersection(candidate.tolist())) > 2 / 3 * len(candidate):
                grown.append(candidate)
        neighbours = np.unique(np.concatenate(grown))
        d = np.maximum(2.0 - 2.0 * (vectors[neighbours] @ vectors[i]), 0.0)
        w = np.exp(-d)
        rows.append(np.full(len(neighbours), i))
        cols.append(neighbours)
        weights.append(w / w.sum())
        members = set(neighbours.tolist())
        expansion.append([j for j in rank[i, :k2].tolist() if j in members] or [i])
    v = sparse.csr_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, n),
        dtype=np.float32,
    )
    if k2 > 1:  # local query expansion over each row's k2 nearest that are its own k-reciprocal neighbours
        e_rows = np.concatenate([np.full(len(e), i) for i, e in enumerate(expansion)])
        e_cols = np.concatenate([np.array(e) for e in expansion])
        e_vals = np.concatenate([np.full(len(e), 1.0 / len(e), np.float32) for e in expansion])
        expand = sparse.csr_matrix((e_vals, (e_rows, e_cols)), shape=(n, n))
        v = (expand @ v).tocsr()
    return _min_overlap(v)


def _min_overlap(v) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1 - sum(min)/sum(max) between the rows of a sparse, row-stochastic ``v``, for overlapping rows."""
    vt = v.T.tocsr()  # column -> rows holding it
    out_r, out_c, out_d = [], [], []
    for i in range(v.shape[0]):
        start, end = v.indptr[i], v.indptr[i + 1]
        cols, vals = v.indices[start:end], v.data[start:end]
        holders, mins = [], []
        for c, value in zip(cols.tolist(), vals.tolist(), strict=True):
            s, e = vt.indptr[c], vt.indptr[c + 1]
            holders.append(vt.indices[s:e])
            mins.append(np.minimum(vt.data[s:e], value))
        if not holders:
            continue
        holders_all, mins_all = np.concatenate(holders), np.concatenate(mins)
        others, inverse = np.unique(holders_all, return_inverse=True)
        overlap = np.bincount(inverse, weights=mins_all).astype(np.float32)
        keep = others != i
        out_r.append(np.full(int(keep.sum()), i))
        out_c.append(others[keep])
        out_d.append(1.0 - overlap[keep] / (2.0 - overlap[keep]))
    if not out_r:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(out_r), np.concatenate(out_c), np.concatenate(out_d).astype(np.float32)


def dbscan(
    n: int, rows: np.ndarray, cols: np.ndarray, dist: np.ndarray, eps: float, min_samples: int
) -> np.ndarray:
    """DBSCAN on sparse distances (missing pairs are far): labels 0..C-1, -1 for noise. Only core
    crops are clustered: a crop near a cluster but not dense itself stays out (k-reciprocal query
    expansion makes any stray look near its nearest cluster).

    >>> rows, cols = np.array([0, 1, 1, 2]), np.array([1, 0, 2, 1])
    >>> dbscan(4, rows, cols, np.array([0.1, 0.1, 0.2, 0.2]), 0.5, 2).tolist()
    [0, 0, 0, -1]
    """
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components

    near = dist <= eps
    r, c = rows[near], cols[near]
    degree = np.bincount(r, minlength=n) + 1  # itself included
    core = degree >= min_samples
    both = core[r] & core[c]
    graph = sparse.csr_matrix((np.ones(int(both.sum())), (r[both], c[both])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    labels = np.full(n, -1, np.int64)
    codes = np.unique(component[core])
    remap = {code: i for i, code in enumerate(codes.tolist())}
    labels[core] = [remap[x] for x in component[core].tolist()]
    return labels


def split_conflicts(
    labels: np.ndarray, vectors: np.ndarray, frames: np.ndarray, units: np.ndarray
) -> np.ndarray:
    """Enforce cannot-links: in a cluster holding two units (tracklets, or crops) seen in one frame
    (``frames``: an id per camera and time, -1 unknown), only the unit nearest the centre stays.

    >>> v = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> split_conflicts(np.array([0, 0, 0]), v, np.array([7, 7, -1]), np.array([0, 1, 2])).tolist()
    [0, -1, 0]
    """
    out = labels.copy()
    known = (frames >= 0) & (out >= 0)
    if not known.any():
        return out
    for label in np.unique(out[known]):
        members = np.flatnonzero(out == label)
        centre = vectors[members].mean(axis=0)
        for frame in np.unique(frames[members][frames[members] >= 0]):
            shot = members[frames[members] == frame]
            shot_units = np.unique(units[shot])
            if len(shot_units) < 2:
                continue
            closeness = {u: float(vectors[shot[units[shot] == u]].mean(axis=0) @ centre) for u in shot_units}
            keep = max(closeness, key=closeness.get)
            for u in shot_units:
                if u != keep:
                    out[members[units[members] == u]] = -1
    return out


def cluster(
    vectors: np.ndarray,
    settings: ClusterSettings = ClusterSettings(),
    cameras: np.ndarray | None = None,
    tracklets: np.ndarray | None = None,
    frames: np.ndarray | None = None,
) -> np.ndarray:
    """Pseudo-identity labels (-1 unclustered) of unit ``vectors``, using what is known:
    ``cameras`` (camera-aware neighbours), ``tracklets`` (must-link) and ``frames`` (an id per
    camera and time: cannot-link); each may be None (or -1 per crop: unknown). Crops mostly in
    tracklets (a person seen in a few tracklets) are associated (:func:`associate`); others
    are clustered by density (Jaccard + DBSCAN)."""
    n = len(vectors)
    x = np.asarray(vectors, np.float32)
    if cameras is not None and len(np.unique(cameras)) > 1:
        x = camera_centred(x, cameras)
    if tracklets is not None and cameras is not None and tracked_share(tracklets) >= 0.5:
        return associate(x, cameras, tracklets, frames)
    if tracklets is not None:
        x = tracklet_means(x, tracklets)
    rows, cols, dist = jaccard_neighbours(x, settings)
    units = np.arange(n) if tracklets is None else np.where(tracklets >= 0, tracklets + n, np.arange(n))
    if frames is not None:
        same_frame = (frames[rows] >= 0) & (frames[rows] == frames[cols]) & (units[rows] != units[cols])
        dist = np.where(same_frame, 1.0, dist)
    labels = dbscan(n, rows, cols, dist, settings.eps, settings.min_samples)
    if frames is not None:
        labels = split_conflicts(labels, x, frames, units)
    return _renumber(labels)


def associate(
    vectors: np.ndarray,
    cameras: np.ndarray,
    tracklets: np.ndarray | None = None,
    frames: np.ndarray | None = None,
    max_size: int = 64,
) -> np.ndarray:
    """Pseudo-identities by association, for crops that come in tracklets (few sightings a person):
    units are tracklets (their mean vector) or single crops; two units of different cameras are
    linked when each is the other's nearest unit in its camera (mutual nearest neighbours, the
    cross-camera association of tracklet-based re-ID learning); single crops of one camera link
    to their mutual nearest crop there too when they are closer than either is to anything on
    another camera (consecutive crops of one passage). Linked units form one identity unless that would put
    two crops of one frame together or grow it past ``max_size`` crops. A tracklet left alone is
    still one person (its own identity); a single crop left alone stays unclustered (-1).

    >>> v = np.array([[1, 0.1], [0.99, 0.2], [0.1, 1], [0.2, 0.99]], np.float32)
    >>> associate(v / np.linalg.norm(v, axis=1, keepdims=True), np.array([1, 2, 1, 2])).tolist()
    [0, 0, 1, 1]
    """
    n = len(vectors)
    tracklets = np.full(n, -1) if tracklets is None else tracklets
    frames = np.full(n, -1) if frames is None else frames
    unit_of = np.where(tracklets >= 0, tracklets + n, np.arange(n))
    keys, unit_of = np.unique(unit_of, return_inverse=True)
    n_units = len(keys)
    sums = np.zeros((n_units, vectors.shape[1]), np.float32)
    np.add.at(sums, unit_of, vectors)
    units = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    size = np.bincount(unit_of, minlength=n_units)
    unit_camera = np.zeros(n_units, np.int64)
    unit_camera[unit_of] = cameras
    single = size == 1
    best_cross = np.full(n_units, -np.inf, np.float32)  # each unit's best similarity on another camera
    for a in np.unique(unit_camera):
        mine, others = unit_camera == a, unit_camera != a
        if others.any():
            best_cross[mine] = (units[mine] @ units[others].T).max(axis=1)
    edges = []
    for a in np.unique(unit_camera):
        rows = np.flatnonzero(unit_camera == a)
        for b in np.unique(unit_camera):
            cols = np.flatnonzero(unit_camera == b)
            if a == b:
                rows_ab = cols_ab = rows[
                    single[rows]
                ]  # single crops of one camera: link to their mutual nearest
                if len(rows_ab) < 2:
                    continue
                sims = units[rows_ab] @ units[rows_ab].T
                np.fill_diagonal(sims, -np.inf)
            elif a < b:
                rows_ab, cols_ab = rows, cols
                sims = units[rows_ab] @ units[cols_ab].T
            else:
                continue
            forward, backward = sims.argmax(axis=1), sims.argmax(axis=0)
            mutual = backward[forward] == np.arange(len(rows_ab))
            if a == b:  # within a camera only a pair closer than either's best match elsewhere
                best = sims[np.arange(len(rows_ab)), forward]
                mutual &= best > np.maximum(best_cross[rows_ab], best_cross[cols_ab[forward]])
            for i in np.flatnonzero(mutual):
                edges.append((float(sims[i, forward[i]]), int(rows_ab[i]), int(cols_ab[forward[i]])))
    parent = np.arange(n_units)
    members = {u: {u} for u in range(n_units)}
    frame_sets = {u: set(frames[unit_of == u][frames[unit_of == u] >= 0].tolist()) for u in range(n_units)}
    crops = {u: int(size[u]) for u in range(n_units)}

    def root(u: int) -> int:
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    for _, a, b in sorted(edges, reverse=True):  # most similar first
        ra, rb = root(a), root(b)
        if ra == rb or frame_sets[ra] & frame_sets[rb] or crops[ra] + crops[rb] > max_size:
            continue
        parent[rb] = ra
        members[ra] |= members.pop(rb)
        frame_sets[ra] |= frame_sets.pop(rb)
        crops[ra] += crops.pop(rb)
    unit_label = np.array([root(u) for u in range(n_units)])
    lonely_single = single & (np.bincount(unit_label, minlength=n_units)[unit_label] == 1)
    unit_label[lonely_single] = -1
    return _renumber(unit_label[unit_of])


def tracked_share(tracklets: np.ndarray) -> float:
    """Share of crops in a tracklet of two or more crops.

    >>> tracked_share(np.array([0, 0, 1, -1]))
    0.5
    """
    known = tracklets[tracklets >= 0]
    if not len(known):
        return 0.0
    counts = np.bincount(known)
    return float((counts[known] >= 2).sum() / len(tracklets))


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Labels 0..C-1 in order of first appearance (-1 kept)."""
    out = np.full(len(labels), -1, np.int64)
    kept = labels >= 0
    _, first, inverse = np.unique(labels[kept], return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    out[kept] = order[inverse]
    return out
