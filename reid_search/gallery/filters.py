"""Search only part of a gallery: some cameras, a time window. Applied inside the search.

A filter becomes an SQL condition on the gallery's rows. When few entries pass (at most
:data:`EXACT_FILTER_LIMIT`) their stored vectors are searched exactly; otherwise the
FAISS index searches with an ID selector of the passing ids, so the k results are the k
best *among the passing entries*, never what is left of a top-k cut.

Usage::

    >>> f = EntryFilter(cameras=(1, 3), after="2026-11-25T08:00:00")
    >>> f.sql()
    ('camera in (?,?) and time >= ?', [1, 3, '2026-11-25T08:00:00'])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

INT64_MAX = 2**63 - 1
EXACT_FILTER_LIMIT = 50_000  # passing entries up to which filtered search reads vectors and is exact


@dataclass(frozen=True)
class EntryFilter:
    """Which gallery entries a search may return. Times are ISO 8601 text; ``after`` and
    ``before`` are inclusive, and an entry without a time never passes a time bound."""

    cameras: tuple[int, ...] = ()
    exclude_cameras: tuple[int, ...] = ()
    after: str | None = None
    before: str | None = None
    description: Any = None  # a parsed description entries must fit (query --where)
    min_probability: float = 0.5  # ... with at least this probability

    @classmethod
    def parse(cls, cameras=(), exclude_cameras=(), after: str | None = None, before: str | None = None):
        """A filter from a request's raw values, each checked once (camera numbers in range,
        times read as ISO 8601): one clear error before any work."""
        from ..data.metadata import parse_time
        from .folder import GalleryError

        for value in (*cameras, *exclude_cameras):
            if not 0 <= value <= INT64_MAX:
                raise GalleryError(f"camera {str(value)[:24]} is not a camera number (0 to 2^63-1)")
        return cls(
            tuple(cameras), tuple(exclude_cameras),
            parse_time(after) if after else None, parse_time(before) if before else None,
        )  # fmt: skip

    @property
    def active(self) -> bool:
        return bool(self.cameras or self.exclude_cameras or self.after or self.before or self.description)

    def sql(self, table: str = "") -> tuple[str, list[Any]]:
        """(where clause, parameters); ``1`` when nothing is filtered. ``table``: the rows' alias
        when the clause reads a join (``"v"``)."""
        col = f"{table}." if table else ""
        terms: list[str] = []
        params: list[Any] = []
        if self.cameras:
            terms.append(f"{col}camera in ({','.join('?' * len(self.cameras))})")
            params += [int(c) for c in self.cameras]
        if self.exclude_cameras:
            marks = ",".join("?" * len(self.exclude_cameras))
            terms.append(f"({col}camera is null or {col}camera not in ({marks}))")
            params += [int(c) for c in self.exclude_cameras]
        if self.after:
            terms.append(f"{col}time >= ?")
            params.append(self.after)
        if self.before:
            terms.append(f"{col}time <= ?")
            params.append(self.before)
        if self.description is not None:
            from .attribute_rows import description_sql

            fits = description_sql(self.description)
            terms.append(f"{col}faiss_id in (select a.faiss_id from entry_attributes a where {fits} >= ?)")
            params.append(float(self.min_probability))
        return (" and ".join(terms) or "1"), params

    def to_dict(self) -> dict[str, Any]:
        """The non-empty parts, for reports (``{"cameras": [1, 3]}``)."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v}
        out.pop("min_probability")
        if self.description is not None:
            out |= {"where": self.description.text, "where_min": self.min_probability}
            out.pop("description")
        return out


def exact_top_k(
    queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k`` over the given entries, padded with id -1 like FAISS."""
    n = len(queries)
    sims_out = np.full((n, k), -np.inf, np.float32)
    ids_out = np.full((n, k), -1, np.int64)
    if len(ids) == 0:
        return sims_out, ids_out
    sims = queries @ vectors.T
    take = min(k, len(ids))
    top = np.argpartition(-sims, take - 1, axis=1)[:, :take]
    top_sims = np.take_along_axis(sims, top, axis=1)
    order = np.argsort(-top_sims, axis=1, kind="stable")
    sims_out[:, :take] = np.take_along_axis(top_sims, order, axis=1)
    ids_out[:, :take] = ids[np.take_along_axis(top, order, axis=1)]
    return sims_out, ids_out


def selector_params(index, allowed: np.ndarray, params: dict[str, int]):
    """FAISS search parameters restricting ``index`` to the ids in ``allowed`` (its own
    nprobe / efSearch kept); the selector must outlive the search, so both are returned."""
    import faiss

    selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
    inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap) else index)
    if isinstance(inner, faiss.IndexHNSW):
        search_params = faiss.SearchParametersHNSW(sel=selector, efSearch=int(params.get("efSearch", 16)))
    elif isinstance(inner, faiss.IndexIVF):
        search_params = faiss.SearchParametersIVF(sel=selector, nprobe=int(params.get("nprobe", 1)))
    else:
        search_params = faiss.SearchParameters(sel=selector)
    return search_params, selector
