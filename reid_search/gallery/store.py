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

    from reid_search.gallery import Gallery
    with Gallery.open("cuhk") as gallery:
        sims, ids = gallery.search(query_vector[None, :], 5)
        rows = gallery.rows(ids[0])
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import __version__
from .._files import write_json_atomic
from . import index as idx
from .attribute_rows import AttributeRows
from .cluster_rows import ClusterRows
from .faiss_cache import IndexCache
from .folder import (  # noqa: F401  (re-exported: the gallery package's names)
    DB_FILE,
    DEFAULT_FRAMES_PER_TRACKLET,
    GALLERY_NAME,
    LEVELS,
    LOCK_FILE,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    METRIC,
    OLD_FORMATS,
    READ_COLUMNS,
    ROW_COLUMNS,
    GalleryError,
    _blob,
    _connect,
    _ensure_schema,
    check_gallery_name,
    default_indexes_dir,
    gallery_name_from_folder,
    list_galleries,
    now_iso,
    read_manifest,
    resolve_gallery_path,
)
from .rows import RowStore


class Gallery(RowStore, ClusterRows, AttributeRows, IndexCache):
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
        if not (path / DB_FILE).is_file():
            raise GalleryError(f"{path}: damaged gallery (no {DB_FILE}); rebuild it with 'index --rebuild'")
        try:
            con = _connect(path / DB_FILE)
            _ensure_schema(con)
        except sqlite3.DatabaseError as exc:
            raise GalleryError(
                f"{path}: damaged gallery ({DB_FILE}: {exc}); rebuild it with 'index --rebuild'"
            ) from None
        gallery = cls(path, con, manifest)
        if manifest["format"] in OLD_FORMATS:  # migrated once, by whoever holds the writer lock
            with gallery.writing():
                gallery.manifest = read_manifest(manifest_path)  # another process may have done it
                if gallery.manifest["format"] in OLD_FORMATS:
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
            same_file = str(built.get("path")) == str(model_path)
            advice = (
                "that file now holds another model (a new default?): rebuild the gallery with --rebuild"
                if same_file
                else f"pass --model {built.get('path')} or rebuild the gallery with --rebuild"
            )
            raise GalleryError(
                f"{self.path}: built with model {built['sha256'][:12]} ({built.get('path')}), "
                f"not {model_sha256[:12]} ({model_path}); {advice}"
            )

    def checkpoint(self) -> None:
        """Write the manifest (counts summarised from SQLite) atomically."""
        self.manifest["updated"] = now_iso()
        self.manifest["counts"] = self._counts()
        if self._index_state is not None:  # else the index file on disk is unchanged: keep its description
            self.manifest["index"] = idx.describe(self._index_state)
        write_json_atomic(self.path / MANIFEST_FILE, self.manifest)

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
