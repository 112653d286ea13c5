"""The clustering columns of a gallery's rows (``cluster``, ``knn_floor``) and settings, in SQLite.

:class:`ClusterRows` is a part of :class:`~reid_search.gallery.store.Gallery` (a mixin, as
:class:`~reid_search.gallery.rows.RowStore`): :mod:`reid_search.gallery.clusters` decides
who is who and reads and writes only through these methods.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SUMMARY_COLUMNS = "cluster, count(*), group_concat(distinct camera), min(time), max(time)"


class ClusterRows:
    """Reads and writes of the gallery's clusters."""

    def cluster_settings(self) -> tuple[float | None, int | None]:
        """(threshold, k) of the last clustering, (None, None) before any."""
        rows = dict(self.con.execute("select key, value from state where key like 'cluster_%'").fetchall())
        k = rows.get("cluster_k")
        return rows.get("cluster_threshold"), None if k is None else int(k)

    def cluster_vectors(self, cluster: int) -> np.ndarray:
        """The vectors of one cluster's members."""
        blobs = self.con.execute("select vector from vectors where cluster = ?", (int(cluster),))
        return np.frombuffer(b"".join(r[0] for r in blobs), np.float32).reshape(-1, self.dim)

    def clustered_entries(self) -> list[tuple[int, int, float]]:
        """(id, cluster, k-NN floor) of every entry that has a cluster."""
        sql = "select faiss_id, cluster, knn_floor from vectors where cluster is not null"
        return [(int(i), int(c), f) for i, c, f in self.con.execute(sql)]

    def entries_to_cluster(self, everything: bool) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the entries without a cluster (of all entries with ``everything``)."""
        where = "1" if everything else "cluster is null"
        rows = self.con.execute(
            f"select faiss_id, vector from vectors where {where} order by faiss_id"
        ).fetchall()
        ids = np.array([r[0] for r in rows], np.int64)
        return ids, np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), self.dim)

    def highest_cluster(self) -> int:
        return int(self.con.execute("select coalesce(max(cluster), -1) from vectors").fetchone()[0])

    def write_clusters(
        self,
        assignments: Sequence[tuple[int, float, int]],
        merges: Sequence[tuple[int, int]],
        threshold: float,
        k: int,
        reset: bool,
    ) -> None:
        """In one transaction: (cluster, floor, id) assignments, (new, old) cluster merges, settings."""
        with self._transaction():
            if reset:
                self.con.execute("update vectors set cluster = null, knn_floor = null")
            self.con.executemany(
                "update vectors set cluster = ?, knn_floor = ? where faiss_id = ?", assignments
            )
            self.con.executemany("update vectors set cluster = ? where cluster = ?", merges)
            self.con.executemany(
                "insert or replace into state (key, value) values (?, ?)",
                [("cluster_threshold", float(threshold)), ("cluster_k", int(k))],
            )

    def cluster_count(self) -> int:
        return int(self.con.execute("select count(distinct cluster) from vectors").fetchone()[0])

    def unclustered_count(self) -> int:
        return int(self.con.execute("select count(*) from vectors where cluster is null").fetchone()[0])

    def cluster_rows(self, min_size: int = 1) -> list[tuple]:
        """(cluster, size, cameras 'a,b', first time, last time), biggest first."""
        sql = f"""
            select {SUMMARY_COLUMNS} from vectors where cluster is not null
            group by cluster having count(*) >= ? order by count(*) desc, cluster
        """
        return list(self.con.execute(sql, (min_size,)))

    def cluster_row(self, cluster: int) -> tuple | None:
        sql = f"select {SUMMARY_COLUMNS} from vectors where cluster = ? group by cluster"
        return self.con.execute(sql, (int(cluster),)).fetchone()

    def cluster_persons(self) -> list[tuple[int, str, int]]:
        """(cluster, person, entries) for labelled entries inside clusters."""
        sql = (
            "select cluster, person, count(*) from vectors where cluster is not null and person is not null "
            "group by cluster, person"
        )
        return [(int(c), p, int(n)) for c, p, n in self.con.execute(sql)]
