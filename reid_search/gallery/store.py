"""A gallery folder: SQLite rows *with their vectors* (the truth), a derived FAISS index, a manifest.

Layout of ``indexes/NAME/``::

    meta.sqlite     table ``vectors``: a row per gallery entry (id, path, content hash,
                    person, camera, tracklet, frame, size, time, extra metadata as JSON,
                    cluster, ...) and its float32 vector;
                    ``frames`` (tracklet members), ``skipped`` (files passed over, why),
                    ``state`` (the deletion generation, clustering settings)
    index.faiss     the FAISS index (a cache: see :mod:`reid_search.gallery.index`)
    index.json      what index.faiss holds (factory string, watermark, parameters)
    manifest.json   format, tool version, the model's SHA-256, dim, metric, index type,
                    level, sources, counts (a summary of the SQLite content)

Crash safety: every batch is one SQLite transaction holding rows and vectors together,
so a process killed at any moment leaves SQLite consistent; the index is caught up from
SQLite the next time the gallery is opened. SQLite runs in WAL mode: readers (queries,
a server) keep working while one writer (``index``) adds entries, and see only committed
batches. A second writer is refused (an exclusive lock on ``write.lock``).

Usage::

    >>> from reid_search.gallery import Gallery
    >>> with Gallery.open("cuhk") as gallery:                         # doctest: +SKIP
    ...     sims, ids = gallery.search(query_vector[None, :], 5)
    ...     rows = gallery.rows(ids[0])
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._files import write_json_atomic
from ..data.layouts import Skipped
from ..errors import InputError
from . import index as idx
from .filters import EXACT_FILTER_LIMIT, EntryFilter, exact_top_k, selector_params

MANIFEST_FORMAT = "reid-search/gallery/v2"
OLD_FORMATS = ("reid-search/gallery/v1",)  # vectors only in index.faiss: migrated on open
DB_FILE = "meta.sqlite"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = "write.lock"
METRIC = "cosine (inner product of L2-normalised vectors)"
LEVELS = ("image", "tracklet")
DEFAULT_FRAMES_PER_TRACKLET = 32
ROW_COLUMNS = (
    "faiss_id",
    "unit_key",
    "signature",
    "path",
    "sha256",
    "person",
    "kind",
    "camera",
    "tracklet",
    "frame",
    "split",
    "width",
    "height",
    "n_frames",
    "added_at",
    "time",
    "extra",
)
ADDED_COLUMNS = {  # not in every older gallery
    "vector": "blob",
    "time": "text",
    "extra": "text",
    "cluster": "integer",  # :mod:`reid_search.gallery.clusters`
    "knn_floor": "real",
}
READ_COLUMNS = (*ROW_COLUMNS, "cluster")
READ_CHUNK = 50_000


class GalleryError(InputError):
    """A gallery that is missing, damaged, busy, or used with the wrong model or level."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


GALLERY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_gallery_name(name: str) -> str:
    """``name`` if it is a safe gallery name (one folder under the indexes folder), else GalleryError.

    A name starts with a letter or digit and holds only letters, digits, ``.``, ``_`` and
    ``-`` (at most 64): never ``.``, ``..``, a separator or a space, so a gallery can only
    ever be the one folder it names.

    >>> check_gallery_name("cuhk03-test")
    'cuhk03-test'
    >>> check_gallery_name("..")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    reid_search.gallery.store.GalleryError: gallery name '..' is not allowed: ...
    """
    if not GALLERY_NAME.match(name or ""):
        raise GalleryError(
            f"gallery name {name[:80]!r} is not allowed: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (at most 64)"
        )
    return name


def gallery_name_from_folder(folder: str | Path) -> str:
    """A safe gallery name made from a data folder's name (other characters become ``-``).

    >>> gallery_name_from_folder("/data/my crops (day 2)")
    'my-crops-day-2'
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(folder).name).strip("-._")[:64]
    return name or "gallery"


def default_indexes_dir() -> Path:
    """``$REID_SEARCH_INDEXES`` if set, else ``./indexes``."""
    return Path(os.environ.get("REID_SEARCH_INDEXES", "indexes"))


def resolve_gallery_path(name_or_path: str | Path | None, indexes_dir: str | Path | None = None) -> Path:
    """A gallery folder from a name (under the indexes folder) or a path.

    With no name, the only gallery in the indexes folder is used.
    """
    base = Path(indexes_dir) if indexes_dir else default_indexes_dir()
    if name_or_path is None:
        found = list_galleries(base)
        if len(found) == 1:
            return found[0]
        if not found:
            raise GalleryError(f"{base}: no gallery yet; build one with 'reid-search index DIR'")
        names = ", ".join(p.name for p in found)
        raise GalleryError(f"{base}: several galleries ({names}); choose one with --index")
    candidate = Path(name_or_path).expanduser()
    if (candidate / MANIFEST_FILE).is_file() or os.sep in str(name_or_path):
        return candidate
    return base / check_gallery_name(str(name_or_path))


def list_galleries(indexes_dir: str | Path | None = None) -> list[Path]:
    """Every folder under the indexes folder whose name is a gallery name and that holds a manifest.

    Rebuilds in progress (``.NAME.rebuild``) and other hidden folders are never listed.
    """
    base = Path(indexes_dir) if indexes_dir else default_indexes_dir()
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if GALLERY_NAME.match(p.name) and (p / MANIFEST_FILE).is_file())


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GalleryError(f"{path}: manifest is not valid JSON ({exc})") from None
    if manifest.get("format") not in (MANIFEST_FORMAT, *OLD_FORMATS):
        raise GalleryError(f"{path}: unknown gallery format {manifest.get('format')!r}")
    return manifest


def _connect(path: Path) -> sqlite3.Connection:
    # explicit transactions; any thread may use the connection, one at a time (the server locks)
    con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    con.row_factory = sqlite3.Row
    con.execute("pragma journal_mode=wal")
    con.execute("pragma synchronous=normal")
    return con


def _ensure_schema(con: sqlite3.Connection) -> None:
    con.executescript(
        """
        create table if not exists vectors (
            faiss_id integer primary key, unit_key text, signature text, path text, sha256 text,
            person text, kind text, camera integer, tracklet integer, frame integer, split text,
            width integer, height integer, n_frames integer, added_at text, vector blob,
            time text, extra text, cluster integer, knn_floor real
        );
        create unique index if not exists idx_vectors_unit_key on vectors (unit_key);
        create index if not exists idx_vectors_person on vectors (person);
        create table if not exists frames (faiss_id integer, path text);
        create index if not exists idx_frames_faiss_id on frames (faiss_id);
        create table if not exists skipped (path text primary key, reason text, seen_at text);
        create table if not exists state (key text primary key, value integer);
        """
    )
    columns = {r[1] for r in con.execute("pragma table_info(vectors)")}
    for column, kind in ADDED_COLUMNS.items():  # v1: no vector (it lived in index.faiss); no time
        if column not in columns:
            con.execute(f"alter table vectors add column {column} {kind}")
    con.execute("create index if not exists idx_vectors_camera on vectors (camera)")
    con.execute("create index if not exists idx_vectors_time on vectors (time)")
    con.execute("create index if not exists idx_vectors_cluster on vectors (cluster)")


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


class Gallery:
    """An opened gallery folder. Use :meth:`open`; :func:`build_gallery` creates and grows one."""

    def __init__(self, path: Path, con: sqlite3.Connection, manifest: dict[str, Any]):
        self.path = path
        self.con = con
        self.manifest = manifest
        self._index = None
        self._index_state: idx.IndexState | None = None
        self._index_checked: int | None = None  # SQLite data_version when the index was last checked
        self._lock_fh = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, name_or_path: str | Path | None = None, indexes_dir: str | Path | None = None) -> Gallery:
        """Open an existing gallery (for searching; :meth:`writer` for changing it)."""
        path = resolve_gallery_path(name_or_path, indexes_dir)
        manifest_path = path / MANIFEST_FILE
        if not manifest_path.is_file():
            raise GalleryError(f"{path}: not a gallery (no {MANIFEST_FILE}); build it with 'index'")
        manifest = read_manifest(manifest_path)
        con = _connect(path / DB_FILE)
        _ensure_schema(con)
        gallery = cls(path, con, manifest)
        if manifest["format"] in OLD_FORMATS:
            gallery._migrate_v1()
        return gallery

    @classmethod
    def create(
        cls,
        path: Path,
        model_info: dict[str, Any],
        level: str,
        frames_per_tracklet: int | None,
        index_type: str = idx.AUTO,
    ) -> Gallery:
        """Start an empty gallery at ``path`` for vectors of the given model."""
        if level not in LEVELS:
            raise GalleryError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
        path.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": MANIFEST_FORMAT,
            "tool_version": __version__,
            "name": path.name,
            "created": now_iso(),
            "updated": now_iso(),
            "model": model_info,
            "embedding_dim": model_info["embedding_dim"],
            "metric": METRIC,
            "index_type": index_type,
            "level": level,
            "frames_per_tracklet": frames_per_tracklet if level == "tracklet" else None,
            "sources": [],
            "counts": {},
        }
        con = _connect(path / DB_FILE)
        _ensure_schema(con)
        gallery = cls(path, con, manifest)
        gallery.checkpoint()
        return gallery

    def close(self) -> None:
        self.con.close()
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def writing(self) -> Iterator[Gallery]:
        """Hold the gallery's single-writer lock; a second writer gets a clear error."""
        self.lock()
        try:
            yield self
        finally:
            self.unlock()

    def lock(self) -> None:
        if self._lock_fh is not None:
            return
        fh = open(self.path / LOCK_FILE, "a+")  # noqa: SIM115 (held until unlock)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise GalleryError(
                f"{self.path}: another writer ({holder}) is changing this gallery; "
                "queries still work, run this again when it has finished"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        self._lock_fh = fh

    def unlock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    # ------------------------------------------------------------------ facts
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def size(self) -> int:
        return int(self.con.execute("select count(*) from vectors").fetchone()[0])

    @property
    def dim(self) -> int:
        return int(self.manifest["embedding_dim"])

    @property
    def level(self) -> str:
        return self.manifest["level"]

    @property
    def model_sha256(self) -> str:
        return self.manifest["model"]["sha256"]

    @property
    def generation(self) -> int:
        row = self.con.execute("select value from state where key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    @property
    def index_type(self) -> str:
        return self.manifest.get("index_type", idx.AUTO)

    def check_model(self, model_sha256: str, model_path: str | Path = "") -> None:
        """Refuse to use this gallery with any model but the one that built it."""
        if model_sha256 != self.model_sha256:
            built = self.manifest["model"]
            raise GalleryError(
                f"{self.path}: built with model {built['sha256'][:12]} ({built.get('path')}), "
                f"not {model_sha256[:12]} ({model_path}); pass --model {built.get('path')} "
                "or rebuild the gallery with --rebuild"
            )

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
        return {"video": extra["video"], "frame": int(extra["frame"]), "box": extra["box"], "label": label}

    def frames_of(self, faiss_id: int) -> list[str]:
        """The member frames of a tracklet entry."""
        return [
            r[0] for r in self.con.execute("select path from frames where faiss_id = ?", (int(faiss_id),))
        ]

    def skipped(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.con.execute("select path, reason, seen_at from skipped")]

    # ------------------------------------------------------------------ the index (a cache)
    @property
    def index(self):
        """The FAISS index, loaded, caught up or rebuilt from SQLite as needed (kept in memory).

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
        index = self.index
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
        index = self.index
        search_params, _selector = selector_params(index, allowed, self._index_state.params)
        return index.search(queries, min(k, len(allowed)), params=search_params)

    def save_index(self) -> None:
        """Write the (caught-up) index and its sidecar, if they differ from what is on disk."""
        index = self.index
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
    def checkpoint(self) -> None:
        """Write the manifest (counts summarised from SQLite) atomically."""
        self.manifest["updated"] = now_iso()
        self.manifest["counts"] = self._counts()
        self.manifest["index"] = idx.describe(self._index_state)
        write_json_atomic(self.path / MANIFEST_FILE, self.manifest)

    def _counts(self) -> dict[str, int]:
        one = lambda sql: self.con.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "vectors": self.size,
            "images": one("select coalesce(sum(n_frames), 0) from vectors"),
            "persons": one("select count(distinct person) from vectors where kind = 'identity'"),
            "cameras": one("select count(distinct camera) from vectors where camera is not null"),
            "skipped": one("select count(*) from skipped"),
        }

    def remove(self, ids: Sequence[int]) -> None:
        """Delete entries (rows, frames, vectors) in one transaction; the index is rebuilt on next use."""
        if not len(ids):
            return
        with self._transaction():
            self.con.executemany("delete from vectors where faiss_id = ?", [(int(i),) for i in ids])
            self.con.executemany("delete from frames where faiss_id = ?", [(int(i),) for i in ids])
            self.con.execute(
                "insert into state (key, value) values ('generation', 1) "
                "on conflict(key) do update set value = value + 1"
            )

    def next_id(self) -> int:
        return int(self.con.execute("select coalesce(max(faiss_id), -1) from vectors").fetchone()[0]) + 1

    @contextmanager
    def _transaction(self):
        self.con.execute("begin immediate")
        try:
            yield
        except BaseException:
            self.con.execute("rollback")
            raise
        self.con.execute("commit")
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

    def _migrate_v1(self) -> None:
        """Copy a v1 gallery's vectors from its index file into SQLite (once), then mark it v2."""
        import faiss

        missing = [r[0] for r in self.con.execute("select faiss_id from vectors where vector is null")]
        if missing:
            path = self.path / idx.INDEX_FILE
            if not path.is_file():
                raise GalleryError(
                    f"{self.path}: a v1 gallery without its index.faiss; rebuild it with --rebuild"
                )
            old = faiss.read_index(str(path))
            present = set(faiss.vector_to_array(old.id_map).tolist())
            with self._transaction():
                self.con.executemany(
                    "update vectors set vector = ? where faiss_id = ?",
                    [(_blob(old.reconstruct(i)), i) for i in missing if i in present],
                )
                self.con.executemany(
                    "delete from vectors where faiss_id = ?", [(i,) for i in missing if i not in present]
                )
            (self.path / idx.INDEX_FILE).unlink()  # a v1 file has no sidecar: rebuilt on use
        self.manifest["format"] = MANIFEST_FORMAT
        self.manifest.pop("faiss_index_type", None)
        self.manifest["index_type"] = idx.AUTO
        self.checkpoint()
