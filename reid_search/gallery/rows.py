"""The rows and vectors of a gallery (SQLite, the truth): read, add, remove, update in transactions.

:class:`RowStore` is a part of :class:`~reid_search.gallery.store.Gallery` (a mixin): it
needs ``self.con`` (the SQLite connection), ``self.manifest`` and ``self._changed()``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..data.layouts import Skipped
from .folder import READ_CHUNK, READ_COLUMNS, ROW_COLUMNS, GalleryError, _blob, now_iso, transaction


class RowStore:
    """Reads and writes of a gallery's SQLite tables."""

    def ids(self) -> np.ndarray:
        """Gallery ids in ascending order."""
        return np.array(
            [r[0] for r in self.con.execute("select faiss_id from vectors order by faiss_id")], np.int64
        )

    def iter_vectors(
        self, after: int = -1, chunk: int = READ_CHUNK
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) chunks of the stored vectors with id > ``after``, in id order."""
        last = after
        while True:
            rows = self.con.execute(
                "select faiss_id, vector from vectors where faiss_id > ? order by faiss_id limit ?",
                (last, chunk),
            ).fetchall()
            if not rows:
                return
            ids = np.array([r[0] for r in rows], np.int64)
            vectors = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), self.dim)
            yield ids, vectors
            last = int(ids[-1])

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All (ids, vectors) as stored in SQLite, in id order."""
        parts = list(self.iter_vectors())
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def vectors_for(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of the given ids, in that order."""
        wanted = [int(i) for i in ids]
        found: dict[int, bytes] = {}
        for start in range(0, len(wanted), 900):  # SQLite's variable limit
            chunk = wanted[start : start + 900]
            marks = ",".join("?" * len(chunk))
            found.update(
                self.con.execute(f"select faiss_id, vector from vectors where faiss_id in ({marks})", chunk)
            )
        if len(found) < len(set(wanted)):
            raise GalleryError(f"{self.path}: ids not in the gallery: {sorted(set(wanted) - set(found))[:5]}")
        blob = b"".join(found[i] for i in wanted)
        return np.frombuffer(blob, np.float32).reshape(len(wanted), self.dim)

    def rows(self, ids: Iterable[int] | None = None) -> dict[int, dict[str, Any]]:
        """Rows (without vectors) by id (all rows when ``ids`` is None)."""
        cols = ", ".join(READ_COLUMNS)
        if ids is None:
            return {r["faiss_id"]: dict(r) for r in self.con.execute(f"select {cols} from vectors")}
        wanted = [int(i) for i in ids]
        out: dict[int, dict[str, Any]] = {}
        for start in range(0, len(wanted), 900):
            chunk = wanted[start : start + 900]
            marks = ",".join("?" * len(chunk))
            sql = f"select {cols} from vectors where faiss_id in ({marks})"
            out.update({r["faiss_id"]: dict(r) for r in self.con.execute(sql, chunk)})
        return out

    def cameras(self) -> list[int]:
        """The distinct camera numbers of the gallery's entries, ascending."""
        sql = "select distinct camera from vectors where camera is not null order by camera"
        return [int(r[0]) for r in self.con.execute(sql)]

    def video_source(self, faiss_id: int) -> dict[str, Any]:
        """Where entry ``faiss_id`` was filmed: video file, frame, box and a label (GalleryError if
        it was not cut from video)."""
        row = self.rows([faiss_id]).get(int(faiss_id))
        if row is None:
            raise GalleryError(f"no entry {faiss_id} in gallery {self.name}")
        extra = json.loads(row["extra"]) if row.get("extra") else {}
        if "video" not in extra:
            raise GalleryError(f"entry {faiss_id} of gallery {self.name} was not cut from video")
        label = f"tracklet {row['tracklet']}" + (f" {row['time']}" if row.get("time") else "")
        return {
            "video": extra["video"], "frame": int(extra["frame"]), "box": extra["box"], "label": label,
            "video_time": extra.get("video_time"), "video_size": extra.get("video_size"),
            "video_sha256": extra.get("video_sha256"),
        }  # fmt: skip

    def frames_of(self, faiss_id: int) -> list[str]:
        """The member frames of a tracklet entry."""
        return [
            r[0] for r in self.con.execute("select path from frames where faiss_id = ?", (int(faiss_id),))
        ]

    def skipped(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.con.execute("select path, reason, seen_at from skipped")]

    # ------------------------------------------------------------------ the index (a cache)
    def _counts(self) -> dict[str, int]:
        one = lambda sql: self.con.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "vectors": self.size,
            "images": one("select coalesce(sum(n_frames), 0) from vectors"),
            "persons": one("select count(distinct person) from vectors where kind = 'identity'"),
            "cameras": one("select count(distinct camera) from vectors where camera is not null"),
            "skipped": one("select count(*) from skipped"),
        }

    def has_identities(self) -> bool:
        """Whether ``reid-search identities`` has linked this gallery's entries."""
        if not self.con.execute("select 1 from sqlite_master where name = 'identities'").fetchone():
            return False
        return self.con.execute("select 1 from identities limit 1").fetchone() is not None

    def identity_members(self, identity: int) -> list[int]:
        """The entries of one stored identity, in id order ([] when there is none)."""
        if not self.has_identities():
            return []
        sql = "select faiss_id from identities where identity = ? order by faiss_id"
        return [r[0] for r in self.con.execute(sql, (int(identity),))]

    def identity_of(self, ids: Sequence[int]) -> dict[int, int]:
        """id -> stored identity (``reid-search identities``) of the given entries that have one."""
        if not self.has_identities():
            return {}
        out: dict[int, int] = {}
        wanted = [int(i) for i in ids]
        for start in range(0, len(wanted), 900):  # SQLite's variable limit
            chunk = wanted[start : start + 900]
            sql = (
                f"select faiss_id, identity from identities where faiss_id in ({','.join('?' * len(chunk))})"
            )
            out.update(self.con.execute(sql, chunk).fetchall())
        return out

    def remove(self, ids: Sequence[int]) -> None:
        """Delete entries (rows, frames, vectors) in one transaction; the index is rebuilt on next use."""
        if not len(ids):
            return
        with self._transaction():
            self.con.executemany("delete from vectors where faiss_id = ?", [(int(i),) for i in ids])
            self.con.executemany("delete from frames where faiss_id = ?", [(int(i),) for i in ids])
            self._forget_attributes(ids)
            self.con.execute(
                "insert into state (key, value) values ('generation', 1) "
                "on conflict(key) do update set value = value + 1"
            )

    def next_id(self) -> int:
        return int(self.con.execute("select coalesce(max(faiss_id), -1) from vectors").fetchone()[0]) + 1

    @contextmanager
    def _transaction(self):
        with transaction(self.con):
            yield
        self._changed()

    def add_units(
        self,
        rows: list[dict[str, Any]],
        vectors: np.ndarray,
        frames: list[tuple[int, str]],
        skipped: list[Skipped],
    ) -> None:
        """Commit a batch in one transaction: rows with their vectors, tracklet frames, skipped files."""
        now = now_iso()
        with self._transaction():
            if rows:
                cols = [*ROW_COLUMNS, "vector"]
                sql = f"insert into vectors ({', '.join(cols)}) values ({', '.join('?' * len(cols))})"
                self.con.executemany(
                    sql,
                    [
                        [r.get(c) for c in ROW_COLUMNS] + [_blob(v)]
                        for r, v in zip(rows, vectors, strict=True)
                    ],
                )
                self.con.executemany("delete from skipped where path = ?", [(r["path"],) for r in rows])
                self._add_attributes_of(rows, vectors)
            if frames:
                self.con.executemany("insert into frames (faiss_id, path) values (?, ?)", frames)
            if skipped:
                self.con.executemany(
                    "insert or replace into skipped (path, reason, seen_at) values (?, ?, ?)",
                    [(s.path, s.reason, now) for s in skipped],
                )

    def update_metadata(self, records: dict[int, Any]) -> int:
        """Set camera, time and extra of entries (id -> record) where they differ; returns how many."""
        if not records:
            return 0
        current = {
            r[0]: (r[1], r[2], r[3])
            for r in self.con.execute("select faiss_id, camera, time, extra from vectors")
        }
        changed = [
            (r.camera, r.time, r.extra, i)
            for i, r in records.items()
            if i in current and current[i] != (r.camera, r.time, r.extra)
        ]
        if changed:
            with self._transaction():
                self.con.executemany(
                    "update vectors set camera = ?, time = ?, extra = ? where faiss_id = ?", changed
                )
        return len(changed)

    def done_units(self) -> dict[str, tuple[int, str]]:
        """unit key -> (id, signature) for everything already embedded."""
        return {
            r[1]: (r[0], r[2]) for r in self.con.execute("select faiss_id, unit_key, signature from vectors")
        }
