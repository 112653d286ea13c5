"""Search by description, with no query image: ``reid-search find "woman, red top, backpack"``.

Each entry's probability of fitting the description is the product of its terms'
probabilities (:mod:`reid_search.attributes.vocabulary`), computed by SQLite over the stored
attribute probabilities of the entries that pass the camera / time filter. Answers are grouped
as ``query`` groups them (a labelled person, a cluster, a tracklet, an entry), or by the
journeys' identities (``by="identity"``); an answer's score is the mean probability over its
entries, its matches its best-fitting entries, and ``attributes`` each term's mean
probability. The result is a :class:`~reid_search.search.results.QueryResult` (``query
--json``'s shape, with ``query.description``).

Usage::

    from reid_search.search.find import FindOptions, find_by_description
    result = find_by_description(Gallery.open("lobby"), "man, blue jeans, backpack", FindOptions(top_k=5))
    [(h.key, round(h.score, 2)) for h in result.identities]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..attributes.vocabulary import Description, parse_description
from ..gallery import EntryFilter, Gallery, GalleryError
from ..gallery.attribute_rows import description_sql, term_sql
from .query import MAX_MATCHES, MAX_TOP_K
from .results import GalleryMatch, IdentityHit, QueryResult, term_fits

FIND_BY = ("auto", "entry", "identity")
ACCEPT = 0.5  # an answer "matches" when it fits the description more likely than not
_GROUP = {
    "auto": (
        "case when v.person is not null then 'person:' || v.person "
        "when v.cluster is not null then 'cluster:' || v.cluster "
        "when v.tracklet is not null then 'tracklet:' || v.tracklet else 'entry:' || v.faiss_id end"
    ),
    "entry": "'entry:' || v.faiss_id",
    "identity": "coalesce('identity:' || i.identity, 'entry:' || v.faiss_id)",
}


@dataclass(frozen=True)
class FindOptions:
    """What a description search asks besides its words."""

    top_k: int = 10
    matches: int = 3
    where: EntryFilter = EntryFilter()
    by: str = "auto"

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= MAX_TOP_K:
            raise GalleryError(f"top_k must be from 1 to {MAX_TOP_K}, not {self.top_k}")
        if not 1 <= self.matches <= MAX_MATCHES:
            raise GalleryError(f"matches must be from 1 to {MAX_MATCHES}, not {self.matches}")
        if self.by not in FIND_BY:
            raise GalleryError(f"by must be one of {', '.join(FIND_BY)}, not {self.by!r}")


def find_by_description(
    gallery: Gallery, description: str | Description, options: FindOptions | None = None
) -> QueryResult:
    """Rank the gallery's people / tracklets / entries by how well they fit ``description``."""
    options = options or FindOptions()
    parsed = parse_description(description) if isinstance(description, str) else description
    gallery.require_attributes()
    if options.by == "identity" and not gallery.has_identities():
        raise GalleryError(
            f"gallery {gallery.name!r} has no identities: run `reid-search identities {gallery.name}` first"
        )
    inner, params = _scored_entries(gallery, parsed, options)
    term_columns = ", ".join(f"avg(t{j})" for j in range(len(parsed.terms)))
    groups = gallery.con.execute(
        f"select grp, avg(score) as fit, {term_columns} from ({inner}) group by grp "
        "order by fit desc, min(faiss_id) limit ?",
        [*params, options.top_k],
    ).fetchall()
    best = _best_entries(gallery, inner, params, [g[0] for g in groups], options.matches)
    rows = gallery.rows(i for ids in best.values() for i, _ in ids)
    hits = []
    for rank, (key, fit, *terms) in enumerate(groups, start=1):
        matches = [GalleryMatch.from_row(rows[i], score) for i, score in best[key]]
        hit = IdentityHit(rank, matches[0].person, float(fit), matches, fit >= ACCEPT, float(fit))
        hit.grouped_as = key
        hit.attributes = term_fits(parsed.terms, terms)
        hits.append(hit)
    return QueryResult(
        gallery.name, gallery.model_sha256, [], hits, filter=options.where.to_dict(), threshold=ACCEPT,
        threshold_source="description probability", description={**parsed.to_dict(), "by": options.by},
    )  # fmt: skip


def _scored_entries(gallery: Gallery, parsed: Description, options: FindOptions) -> tuple[str, list[Any]]:
    """The SQL of every passing entry with its group, fit and each term's probability."""
    where, params = options.where.sql("v")
    terms = ", ".join(f"{term_sql(t)} as t{j}" for j, t in enumerate(parsed.terms))
    identities = "left join identities i on i.faiss_id = v.faiss_id" if options.by == "identity" else ""
    sql = (
        f"select v.faiss_id as faiss_id, {_GROUP[options.by]} as grp, {description_sql(parsed)} as score, "
        f"{terms} from vectors v join entry_attributes a on a.faiss_id = v.faiss_id {identities} "
        f"where {where}"
    )
    return sql, params


def _best_entries(
    gallery: Gallery, inner: str, params: list[Any], keys: list[str], per_group: int
) -> dict[str, list[tuple[int, float]]]:
    """Each group's best-fitting entries: key -> [(id, fit)], best first."""
    best: dict[str, list[tuple[int, float]]] = {k: [] for k in keys}
    if not keys:
        return best
    marks = ",".join("?" * len(keys))
    sql = f"select faiss_id, grp, score from ({inner}) where grp in ({marks}) order by score desc, faiss_id"
    for faiss_id, key, score in gallery.con.execute(sql, [*params, *keys]):
        if len(best[key]) < per_group:
            best[key].append((int(faiss_id), float(score)))
    return best
