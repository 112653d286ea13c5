"""What a search answers: ranked identities (people, clusters, tracklets, entries) with their
best gallery matches, in the documented JSON form (``docs/query-json.md``). ``query``, ``find``
and ``trace`` all answer in these shapes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

QUERY_SCHEMA = "reid-search/query/v2"


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
    attributes: list[dict[str, Any]] | None = None  # a description's terms and their probabilities
    grouped_as: str | None = None  # the answer's key when a search grouped otherwise (find --by)

    @property
    def key(self) -> str:
        """``person:ID``, ``cluster:ID``, ``tracklet:ID``, ``identity:ID`` or ``entry:FAISS_ID``."""
        if self.grouped_as:
            return self.grouped_as
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
    description: dict[str, Any] | None = None  # find's description (its text and terms)

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
                **({"description": self.description} if self.description else {}),
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
                    **({"attributes": h.attributes} if h.attributes is not None else {}),
                }
                for h in self.identities
            ],
        }


def term_fits(terms, probabilities) -> list[dict[str, Any]]:
    """A description's terms with an answer's probability of each (``results[].attributes``)."""
    return [
        {"words": t.words, "means": t.show(), "probability": round(float(p), 3)}
        for t, p in zip(terms, probabilities, strict=True)
    ]
