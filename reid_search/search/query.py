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

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
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
from .results import (  # noqa: F401  (re-exported: the shapes every search answers in)
    QUERY_SCHEMA,
    Background,
    GalleryMatch,
    IdentityHit,
    QueryResult,
    sighting,
    term_fits,
)

RERANK_SHORTLIST_MAX = 2000
MAX_TOP_K = 1000
MAX_MATCHES = 100  # entries re-ranked per query: memory about 12 x this^2 bytes
BACKGROUND_FETCH_MAX = 4096  # entries fetched at most to find the sightings of the query's background


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
    where: Any = None  # a description the answers' entries must fit (text, parsed here)
    where_min: float = 0.5
    by: str = "auto"  # answers per person / cluster / tracklet / entry, or per stored "identity"

    def __post_init__(self) -> None:
        from ..attributes.vocabulary import parse_description

        if isinstance(self.where, str):
            object.__setattr__(self, "where", parse_description(self.where))
        if self.by not in ("auto", "identity"):
            raise GalleryError(f"by must be auto or identity, not {self.by!r}")
        if not 0 <= self.where_min <= 1:
            raise GalleryError(f"where_min must be a probability from 0 to 1, not {self.where_min}")

        if not 1 <= self.top_k <= MAX_TOP_K:
            raise GalleryError(f"top_k must be from 1 to {MAX_TOP_K}, not {self.top_k}")
        if not 1 <= self.matches <= MAX_MATCHES:
            raise GalleryError(f"matches must be from 1 to {MAX_MATCHES}, not {self.matches}")
        if self.min_score is not None and not (math.isfinite(self.min_score) and -1 <= self.min_score <= 1):
            raise GalleryError(f"min_score must be a number from -1 to 1, not {self.min_score}")
        # cameras and times are read once, here: a bad one is one clear error before any work
        checked = EntryFilter.parse(self.camera, self.exclude_camera, self.after, self.before)
        object.__setattr__(self, "after", checked.after)
        object.__setattr__(self, "before", checked.before)

    def entry_filter(self) -> EntryFilter:
        return EntryFilter(
            tuple(self.camera),
            tuple(self.exclude_camera),
            self.after,
            self.before,
            self.where,
            self.where_min,
        )

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
            same_camera_rule, rerank or False, min_score, where.description, where.min_probability,
        )  # fmt: skip


def rank_identities(
    gallery: Gallery,
    query_vector: np.ndarray,
    top_k: int = 10,
    matches_per_identity: int = 3,
    where: EntryFilter | None = None,
    exclude_person_camera: tuple[str, int] | None = None,
    rerank: RerankConfig | None = None,
    by_identity: bool = False,
) -> tuple[list[IdentityHit], Background]:
    """The ``top_k`` identities closest to ``query_vector`` among entries passing ``where``.
    ``by_identity``: answers are the gallery's stored identities (``reid-search identities``).

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
        identity = gallery.identity_of([i for i, _ in hits]) if by_identity else {}
        grouped: dict[Any, list[GalleryMatch]] = {}
        for faiss_id, sim in hits:
            row = rows[faiss_id]
            if exclude_person_camera and (row["person"], row["camera"]) == exclude_person_camera:
                continue
            match = GalleryMatch.from_row(row, sim)
            key = ("identity", identity[faiss_id]) if faiss_id in identity else match.group
            grouped.setdefault(key, []).append(match)
        sightings: dict[tuple, float] = {}
        for faiss_id, sim in hits:
            key = sighting(rows[faiss_id])
            sightings[key] = max(sim, sightings.get(key, -math.inf))
        background_found = len(sightings) >= BACKGROUND_RANKS[1] or fetch >= background_limit
        if (len(grouped) >= top_k and background_found) or fetch >= limit:
            break
        fetch = min(limit, fetch * 4)
    ranked = sorted(grouped.items(), key=lambda item: -order[item[1][0].faiss_id])[:top_k]
    in_tracklets = sum(rows[i]["tracklet"] is not None for i, _ in hits)
    background = Background(
        background_similarity(np.sort([s for _, s in hits])[::-1]),
        background_similarity(np.sort(list(sightings.values()))[::-1]),
        in_tracklets * 2 > len(hits),
    )
    hits = []
    for rank, (key, matches) in enumerate(ranked, start=1):
        hit = IdentityHit(rank, matches[0].person, order[matches[0].faiss_id], matches[:matches_per_identity])
        hit.grouped_as = f"identity:{key[1]}" if key[0] == "identity" else None
        hits.append(hit)
    return hits, background


def describe_hits(gallery: Gallery, hits: list[IdentityHit], description) -> None:
    """Each answer's terms of ``description`` with their probabilities (of its best entry)."""
    found = gallery.term_probabilities([h.matches[0].faiss_id for h in hits], description)
    for hit in hits:
        hit.attributes = term_fits(description.terms, found[hit.matches[0].faiss_id])


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
    options = QueryOptions.from_search(
        top_k, matches_per_identity, where, same_camera_rule, rerank, min_score
    )
    return answer_images(gallery, embedder, images, options)


def answer_images(
    gallery: Gallery, embedder: Embedder, images: Sequence[str | Path], options: QueryOptions
) -> QueryResult:
    """Embed ``images`` (one person: a tracklet) and answer ``options`` over ``gallery``."""
    gallery.check_model(embedder.model_sha256, embedder.model.path)
    vector, used, failures = embed_query(embedder, images)
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
    if where.description is not None:
        gallery.require_attributes()
    if options.by == "identity" and not gallery.has_identities():
        raise GalleryError(
            f"gallery {gallery.name!r} has no identities: run `reid-search identities {gallery.name}` first"
        )
    hits, background = rank_identities(
        gallery, query_vector, top_k, matches_per_identity, where, exclusion, rerank, options.by == "identity"
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
    if where.description is not None:
        describe_hits(gallery, hits, where.description)
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
