"""Ask a gallery "who is this?": rank identities for one image or a set (a tracklet), compare two images.

An identity's score is its best gallery match (max cosine similarity, or the best
re-ranked score with re-ranking); each identity comes with its best matches and a
``match`` flag: is its best cosine at or above the same-person threshold? When no
identity is a match, the query's person is probably not in the gallery (open set).
Several query images are embedded, averaged and re-normalised into one tracklet query.

Usage::

    from reid_search import Embedder, Gallery, search_gallery
    result = search_gallery(Gallery.open("cuhk"), Embedder(), ["q.jpg"], top_k=5)
    result.identities[0].person, round(result.identities[0].score, 3)
    # ('0744', 0.912)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..calibration.open_set import BACKGROUND_RANKS, ENTRIES, TRACKLETS, OpenSetRule, background_similarity
from ..data.images import ImageError, list_images
from ..data.layouts import parse_any_name
from ..embedding.embedder import Embedder, pool_tracklet
from ..gallery import EntryFilter, Gallery, GalleryError
from ..gallery.clusters import cluster_summary
from .rerank import RerankConfig, rerank_similarities

QUERY_SCHEMA = "reid-search/query/v2"
RERANK_SHORTLIST_MAX = 2000
INT64_MAX = 2**63 - 1
MAX_TOP_K = 1000
MAX_MATCHES = 100  # entries re-ranked per query: memory about 12 x this^2 bytes
BACKGROUND_FETCH_MAX = 4096  # entries fetched at most to find the sightings of the query's background


@dataclass
class GalleryMatch:
    faiss_id: int
    path: str
    person: str | None
    camera: int | None
    tracklet: int | None
    frame: int | None
    similarity: float
    time: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    cluster: int | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any], similarity: float) -> GalleryMatch:
        extra = json.loads(row["extra"]) if row.get("extra") else {}
        return cls(
            row["faiss_id"], row["path"], row["person"], row["camera"], row["tracklet"], row["frame"],
            similarity, row.get("time"), extra, row.get("cluster"),
        )  # fmt: skip

    @property
    def group(self) -> tuple[str, Any]:
        """What this match answers for: its person, else its cluster, else its tracklet (one
        sighting, e.g. a visit cut from video), else itself."""
        if self.person is not None:
            return ("person", self.person)
        if self.cluster is not None:
            return ("cluster", self.cluster)
        if self.tracklet is not None:
            return ("tracklet", self.tracklet)
        return ("entry", self.faiss_id)


def sighting(row: dict[str, Any]) -> tuple:
    """One sighting of someone: the tracklet (frames of one visit to one camera) an entry
    belongs to, else the entry itself. In a gallery of tracklets the query's background counts
    each sighting once (60 frames of the right person's visit are not 60 look-alikes), and the
    card's tracklet rule, calibrated that way, decides.

    >>> sighting({"faiss_id": 7, "person": None, "camera": 2, "tracklet": 3})
    ('tracklet', None, 2, 3)
    >>> sighting({"faiss_id": 7, "person": None, "camera": 2, "tracklet": None})
    ('entry', 7)
    """
    if row["tracklet"] is not None:
        return ("tracklet", row["person"], row["camera"], row["tracklet"])
    return ("entry", row["faiss_id"])


@dataclass(frozen=True)
class Background:
    """How alike the query is to the people it merely resembles (the open-set margin's base).

    ``entries`` counts each fetched entry, ``sightings`` each :func:`sighting` once;
    ``tracklets`` says whether most fetched entries belong to tracklets.
    """

    entries: float
    sightings: float
    tracklets: bool


@dataclass
class IdentityHit:
    """One ranked answer: a labelled person, a cluster of unlabelled entries (``reid-search
    cluster``), or one unlabelled entry (``person`` None)."""

    rank: int
    person: str | None
    score: float  # what the ranking used: best cosine, or best re-ranked score with --rerank
    matches: list[GalleryMatch]
    match: bool | None = None  # accepted: confidence at the open-set rule's level, or cosine >= threshold
    confidence: float | None = None  # open-set confidence 0..1 that this is the query's person
    cluster: dict[str, Any] | None = None  # id, size, cameras, first/last time of the answer's cluster

    @property
    def key(self) -> str:
        """``person:ID``, ``cluster:ID`` or ``entry:FAISS_ID``."""
        kind, value = self.matches[0].group
        return f"{kind}:{value}"

    @property
    def similarity(self) -> float:
        """The identity's best cosine similarity to the query."""
        return max(m.similarity for m in self.matches)


@dataclass
class QueryResult:
    """Ranked identities for one query, and what went into it."""

    gallery: str
    model_sha256: str
    images: list[str]
    identities: list[IdentityHit]
    skipped: list[str] = field(default_factory=list)
    excluded: dict[str, Any] = field(default_factory=dict)
    filter: dict[str, Any] = field(default_factory=dict)
    rerank: dict[str, Any] | None = None
    threshold: float | None = None  # same-person threshold the match flags use
    threshold_source: str = ""
    open_set: dict[str, Any] | None = None  # the accept rule when the model card has one

    @property
    def in_gallery(self) -> bool | None:
        """Is any answer accepted (open-set rule or threshold)? None when there is neither."""
        if self.threshold is None and self.open_set is None:
            return None
        return any(h.match for h in self.identities)

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON form (``docs/query-json.md``)."""
        return {
            "schema": QUERY_SCHEMA,
            "gallery": self.gallery,
            "model_sha256": self.model_sha256,
            "query": {
                "images": self.images,
                "skipped": self.skipped,
                "filter": self.filter,
                "excluded": self.excluded,
                "rerank": self.rerank,
                "threshold": self.threshold,
                "threshold_source": self.threshold_source,
                "open_set": self.open_set,
            },
            "in_gallery": self.in_gallery,
            "results": [
                {
                    "rank": h.rank,
                    "key": h.key,
                    "person": h.person,
                    "cluster": h.cluster,
                    "score": round(h.score, 6),
                    "similarity": round(h.similarity, 6),
                    "match": h.match,
                    "confidence": None if h.confidence is None else round(h.confidence, 4),
                    "matches": [{**asdict(m), "similarity": round(m.similarity, 6)} for m in h.matches],
                }
                for h in self.identities
            ],
        }


@dataclass(frozen=True)
class QueryOptions:
    """What a query asks besides its images (CLI options, the server's form fields)."""

    top_k: int = 10
    matches: int = 3
    camera: tuple[int, ...] = ()
    exclude_camera: tuple[int, ...] = ()
    after: str | None = None
    before: str | None = None
    same_camera_rule: bool = False
    rerank: bool | RerankConfig = False
    min_score: float | None = None

    def __post_init__(self) -> None:
        from ..data.metadata import parse_time

        if not 1 <= self.top_k <= MAX_TOP_K:
            raise GalleryError(f"top_k must be from 1 to {MAX_TOP_K}, not {self.top_k}")
        if not 1 <= self.matches <= MAX_MATCHES:
            raise GalleryError(f"matches must be from 1 to {MAX_MATCHES}, not {self.matches}")
        for value in (*self.camera, *self.exclude_camera):
            if not 0 <= value <= INT64_MAX:
                raise GalleryError(f"camera {str(value)[:24]} is not a camera number (0 to 2^63-1)")
        if self.min_score is not None and not (math.isfinite(self.min_score) and -1 <= self.min_score <= 1):
            raise GalleryError(f"min_score must be a number from -1 to 1, not {self.min_score}")
        # times are read once, here: a bad one is one clear error before any work
        object.__setattr__(self, "after", parse_time(self.after) if self.after else None)
        object.__setattr__(self, "before", parse_time(self.before) if self.before else None)

    def entry_filter(self) -> EntryFilter:
        return EntryFilter(tuple(self.camera), tuple(self.exclude_camera), self.after, self.before)

    def rerank_config(self) -> RerankConfig | None:
        if not self.rerank:
            return None
        return self.rerank if isinstance(self.rerank, RerankConfig) else RerankConfig()

    @classmethod
    def from_search(cls, top_k, matches, where: EntryFilter | None, same_camera_rule, rerank, min_score):
        """The options of :func:`search_gallery`'s arguments (a filter and a re-ranking config)."""
        where = where or EntryFilter()
        return cls(
            top_k, matches, tuple(where.cameras), tuple(where.exclude_cameras), where.after, where.before,
            same_camera_rule, rerank or False, min_score,
        )  # fmt: skip


def rank_identities(
    gallery: Gallery,
    query_vector: np.ndarray,
    top_k: int = 10,
    matches_per_identity: int = 3,
    where: EntryFilter | None = None,
    exclude_person_camera: tuple[str, int] | None = None,
    rerank: RerankConfig | None = None,
) -> tuple[list[IdentityHit], Background]:
    """The ``top_k`` identities closest to ``query_vector`` among entries passing ``where``.

    ``where`` (cameras, time window) is applied inside the index search; the search goes
    deeper until ``top_k`` identities are found or the passing entries are exhausted.

    With ``rerank``, the shortlist fetched from the index (at most
    :data:`RERANK_SHORTLIST_MAX` entries, whatever the gallery's size, so its memory is
    bounded) is k-reciprocal re-ranked (the query and its shortlist form the
    neighbourhoods) and scores become re-ranked similarities (1 - re-ranked distance).

    Also returns the query's :class:`Background` (:func:`.open_set.background_similarity` of
    the cosines of the entries fetched, and of the best cosine of each :func:`sighting`; without
    re-ranking the search goes deeper, up to ``BACKGROUND_FETCH_MAX`` entries, until it holds
    the background's sightings).
    """
    if gallery.size == 0:
        return [], Background(0.0, 0.0, False)
    limit = gallery.size if rerank is None else min(gallery.size, RERANK_SHORTLIST_MAX)
    # re-ranking costs the square of the shortlist: the background never deepens it
    background_limit = 0 if rerank is not None else min(limit, BACKGROUND_FETCH_MAX)
    fetch = min(limit, max(64, top_k * matches_per_identity * 8))
    while True:
        sims, ids = gallery.search(query_vector, fetch, where)
        hits = [(int(i), float(s)) for i, s in zip(ids[0], sims[0], strict=True) if i >= 0]
        order = {i: s for i, s in hits}  # ranking score of each entry: its cosine unless re-ranked
        if rerank is not None:
            shortlist = gallery.vectors_for([i for i, _ in hits])
            scores = rerank_similarities(query_vector[None, :], shortlist, rerank)[0]
            order = dict(zip((i for i, _ in hits), scores.tolist(), strict=True))
            hits.sort(key=lambda h: -order[h[0]])
        rows = gallery.rows(i for i, _ in hits)
        grouped: dict[str, list[GalleryMatch]] = {}
        for faiss_id, sim in hits:
            row = rows[faiss_id]
            if exclude_person_camera and (row["person"], row["camera"]) == exclude_person_camera:
                continue
            match = GalleryMatch.from_row(row, sim)
            grouped.setdefault(match.group, []).append(match)
        sightings: dict[tuple, float] = {}
        for faiss_id, sim in hits:
            key = sighting(rows[faiss_id])
            sightings[key] = max(sim, sightings.get(key, -math.inf))
        background_found = len(sightings) >= BACKGROUND_RANKS[1] or fetch >= background_limit
        if (len(grouped) >= top_k and background_found) or fetch >= limit:
            break
        fetch = min(limit, fetch * 4)
    ranked = sorted(grouped.values(), key=lambda matches: -order[matches[0].faiss_id])[:top_k]
    in_tracklets = sum(rows[i]["tracklet"] is not None for i, _ in hits)
    background = Background(
        background_similarity(np.sort([s for _, s in hits])[::-1]),
        background_similarity(np.sort(list(sightings.values()))[::-1]),
        in_tracklets * 2 > len(hits),
    )
    return [
        IdentityHit(r, matches[0].person, order[matches[0].faiss_id], matches[:matches_per_identity])
        for r, matches in enumerate(ranked, start=1)
    ], background


def open_set_rule_for(card, background: Background) -> tuple[OpenSetRule | None, float, str]:
    """(rule, background value, what it counts) for an answer: the card's tracklet rule with
    the background of sightings when the answers come in tracklets and the card has that rule
    (cards calibrated before it have not: their one rule counts entries), else the entry rule."""
    data = getattr(card, "open_set", None)
    if background.tracklets:
        rule = OpenSetRule.from_dict(data, TRACKLETS)
        if rule is not None:
            return rule, background.sightings, TRACKLETS
    return OpenSetRule.from_dict(data), background.entries, ENTRIES


def _protocol_exclusion(paths: Sequence[Path]) -> tuple[str, int]:
    """(person, camera) of the query from its file names, for the same-camera junk rule."""
    parsed = {(r.person, r.camera) for r in map(parse_any_name, paths) if r is not None}
    if len(parsed) != 1 or any(parse_any_name(p) is None for p in paths):
        raise GalleryError(
            "--same-camera-rule needs query files named in MARS or Market-1501 "
            "style, all of one person and camera"
        )
    return parsed.pop()


def search_gallery(
    gallery: Gallery,
    embedder: Embedder,
    images: Sequence[str | Path],
    top_k: int = 10,
    matches_per_identity: int = 3,
    where: EntryFilter | None = None,
    same_camera_rule: bool = False,
    rerank: RerankConfig | None = None,
    min_score: float | None = None,
) -> QueryResult:
    """Embed the query image(s) (folders expand) and rank the gallery's identities.

    ``where`` keeps only some cameras or a time window, inside the search (K answers
    whenever K exist among the passing entries).
    ``same_camera_rule`` drops gallery entries of the query's own person and camera, as
    the evaluation protocols do (the person and camera are read from the file names).
    Each identity is flagged ``match`` when its best cosine reaches the same-person
    threshold (``min_score``, else the model card's); ``in_gallery`` is False when none does.
    """
    gallery.check_model(embedder.model_sha256, embedder.model.path)
    vector, used, failures = embed_query(embedder, images)
    options = QueryOptions.from_search(
        top_k, matches_per_identity, where, same_camera_rule, rerank, min_score
    )
    return answer_vector(gallery, vector, used, [str(f) for f in failures], embedder.card, options)


def embed_query(embedder: Embedder, images: Sequence[str | Path]) -> tuple[np.ndarray, list[Path], list]:
    """A query's image(s) (folders expand) as one pooled unit vector: (vector, the images
    used, the failures); no readable image is one clear error."""
    unread: list = []
    paths = list_images(list(images), unread)
    if not paths:
        given = ", ".join(str(i) for i in images)
        why = "; ".join(f"{s.path}: {s.reason}" for s in unread[:3])
        raise GalleryError(
            f"{given}: no query image there" + (f" ({why})" if why else "")
            if given
            else "no query image given"
        )
    vectors, used, failures = embedder.embed_files(paths)
    failures = [*(ImageError(s.path, s.reason) for s in unread), *failures]
    if not used:
        raise ImageError(paths[0], "no readable query image: " + "; ".join(f.reason for f in failures))
    return pool_tracklet(vectors), [paths[i] for i in used], failures


def answer_vector(
    gallery: Gallery,
    query_vector: np.ndarray,
    images: Sequence[str | Path],
    skipped: Sequence[str] = (),
    card=None,
    options: QueryOptions | None = None,
) -> QueryResult:
    """Rank the gallery's identities for an already embedded (pooled, unit) query vector.

    ``images`` are the query's file names (the same-camera rule reads them); ``card`` is the
    model card of the model that embedded it (its threshold and open-set rule). The server
    embeds uploads itself (batched across requests) and answers through here. Each answer
    gets a confidence from the card's ``open_set`` rule; ``match`` is that rule's accept
    decision, unless ``options.min_score`` asks for a plain cosine threshold instead.
    """
    options = options or QueryOptions()
    card_threshold = getattr(card, "threshold", None)
    top_k, matches_per_identity, min_score = options.top_k, options.matches, options.min_score
    where, same_camera_rule, rerank = (
        options.entry_filter(),
        options.same_camera_rule,
        options.rerank_config(),
    )
    paths = [Path(p) for p in images]
    exclusion = _protocol_exclusion(paths) if same_camera_rule else None
    hits, background = rank_identities(
        gallery, query_vector, top_k, matches_per_identity, where, exclusion, rerank
    )
    open_set, base, counted = open_set_rule_for(card, background)
    for hit in hits:
        kind, value = hit.matches[0].group
        if kind == "cluster":
            summary = cluster_summary(gallery, value)
            hit.cluster = summary.to_dict() if summary else None
    threshold = min_score if min_score is not None else card_threshold
    source = "--min-score" if min_score is not None else ("model card" if threshold is not None else "")
    for hit in hits:
        hit.match = None if threshold is None else hit.similarity >= threshold
        if open_set is not None:
            hit.confidence = open_set.confidence(hit.similarity, hit.similarity - base)
            if min_score is None:
                hit.match = hit.confidence >= open_set.accept
    if open_set is not None and min_score is None:
        source = "model card open-set rule"
    excluded = {"person_camera": {"person": exclusion[0], "camera": exclusion[1]}} if exclusion else {}
    return QueryResult(
        gallery.name,
        gallery.model_sha256,
        [str(p) for p in paths],
        hits,
        list(skipped),
        excluded,
        where.to_dict() if where is not None else {},
        asdict(rerank) if rerank else None,
        threshold,
        source,
        {**open_set.to_dict(), "background": round(base, 4), "counted": counted}
        if open_set is not None
        else None,
    )
