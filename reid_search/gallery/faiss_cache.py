"""A gallery's FAISS index: a cache derived from SQLite, caught up or rebuilt as needed, and searched.

:class:`IndexCache` is a part of :class:`~reid_search.gallery.store.Gallery` (a mixin): it
needs ``self.con``, ``self.manifest``, ``self.path`` and the row reads of
:class:`~reid_search.gallery.rows.RowStore`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import index as idx
from .filters import EXACT_FILTER_LIMIT, EntryFilter, exact_top_k, selector_params
from .folder import GalleryError


class IndexCache:
    """The derived FAISS index of a gallery and the searches that use it."""

    def ready_index(self):
        """The FAISS index, loaded, caught up or rebuilt (trained, for IVF types) from SQLite as
        needed, and kept in memory: an explicit call because it may take long on a big gallery.

        Between commits (``pragma data_version`` unchanged, no write of ours) it is used as is.
        """
        version = self._data_version()
        if self._index is not None and version == self._index_checked:
            return self._index
        self._index_checked = version
        top = self.con.execute("select coalesce(max(faiss_id), -1), count(*) from vectors").fetchone()
        max_id, count = int(top[0]), int(top[1])
        if self._index is None:
            self._index_state = idx.IndexState.read(self.path)
            self._index = idx.read_index(self.path, self._index_state)
        state = self._index_state
        wanted = idx.resolve_index_type(self.index_type, count)
        stale = (
            self._index is None
            or state is None
            or state.generation != self.generation
            or state.factory != wanted
            or state.watermark > max_id
        )
        if stale:
            self._index, self._index_state = self._build_index(wanted, -1)
        elif state.watermark < max_id:
            self._catch_up(self._index, self._index_state)
        return self._index

    def _data_version(self) -> int:
        return int(self.con.execute("pragma data_version").fetchone()[0])

    def _changed(self) -> None:
        """Our own commit: data_version does not move for it, so check the index next time."""
        self._index_checked = None

    def _build_index(self, factory: str, after: int) -> tuple[Any, idx.IndexState]:
        index = idx.new_index(factory, self.dim)
        params = dict(self._index_state.params) if self._index_state else dict(idx.DEFAULT_PARAMS)
        state = idx.IndexState(factory, self.dim, after, 0, self.generation, params)
        if idx.needs_training(index):
            self._train(index, factory)
        self._catch_up(index, state)
        return index, state

    def _train(self, index, factory: str) -> None:
        n = self.size
        need = idx.min_train_size(index)
        if n < need:
            raise idx.IndexTypeError(
                f"{self.path}: index type {factory!r} needs at least {need} vectors to train, the gallery "
                f"has {n}; use 'Flat', 'HNSW32' or fewer IVF lists"
            )
        take = min(n, idx.train_sample_size(index))
        rng = np.random.default_rng(0)
        ids = np.sort(rng.choice(self.ids(), take, replace=False))
        vectors = np.concatenate([self.vectors_for(ids[i : i + 20_000]) for i in range(0, take, 20_000)])
        index.train(np.ascontiguousarray(vectors))

    def _catch_up(self, index, state: idx.IndexState) -> None:
        for ids, vectors in self.iter_vectors(after=state.watermark):
            index.add_with_ids(np.ascontiguousarray(vectors), ids)
            state.watermark = int(ids[-1])
        state.count = int(index.ntotal)
        state.generation = self.generation

    def search(
        self, queries: np.ndarray, k: int, where: EntryFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, ids), each (n_queries, k); id -1 pads short results.

        ``where`` restricts the search to matching entries inside the search
        (:mod:`reid_search.gallery.filters`): the k best of those, not a filtered top-k.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise GalleryError(f"query dimension {queries.shape[1]} != gallery's {self.dim}")
        if where is not None and where.active:
            return self._filtered_search(queries, k, where)
        index = self.ready_index()
        k = max(1, min(k, int(index.ntotal)))
        return idx.search(index, queries, k, self._index_state.params)

    def count(self, where: EntryFilter | None = None) -> int:
        """How many entries pass ``where`` (all entries when None)."""
        clause, params = where.sql() if where is not None else ("1", [])
        return int(self.con.execute(f"select count(*) from vectors where {clause}", params).fetchone()[0])

    def _filtered_search(
        self, queries: np.ndarray, k: int, where: EntryFilter
    ) -> tuple[np.ndarray, np.ndarray]:
        clause, params = where.sql()
        k = max(1, k)
        if self.count(where) <= EXACT_FILTER_LIMIT:
            rows = self.con.execute(f"select faiss_id, vector from vectors where {clause}", params).fetchall()
            ids = np.array([r[0] for r in rows], np.int64)
            vectors = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), self.dim)
            return exact_top_k(queries, ids, vectors, min(k, max(1, len(rows))))
        allowed = np.array(
            [r[0] for r in self.con.execute(f"select faiss_id from vectors where {clause}", params)]
        )
        index = self.ready_index()
        search_params, _selector = selector_params(index, allowed, self._index_state.params)
        return index.search(queries, min(k, len(allowed)), params=search_params)

    def save_index(self) -> None:
        """Write the (caught-up) index and its sidecar, if they differ from what is on disk."""
        index = self.ready_index()
        on_disk = idx.IndexState.read(self.path)
        if on_disk != self._index_state or not (self.path / idx.INDEX_FILE).is_file():
            idx.write_index(self.path, index, self._index_state)

    def reindex(self, index_type: str, params: dict[str, int] | None = None) -> idx.IndexState:
        """Rebuild the index from the stored vectors with another type (no embedding)."""
        factory = idx.resolve_index_type(index_type, self.size)
        index, state = self._build_index(factory, -1)
        if params:
            state.params.update(params)
        idx.write_index(self.path, index, state)
        self._index, self._index_state = index, state
        self._changed()
        self.manifest["index_type"] = index_type
        self.checkpoint()
        return state

    # ------------------------------------------------------------------ writing
