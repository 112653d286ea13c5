"""A gallery's folder: its name, where it lives, its manifest and SQLite schema (no Gallery logic).

Everything here is about files: safe gallery names, the indexes folder, listing galleries,
reading a manifest, opening the SQLite file with its schema.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

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
    >>> check_gallery_name("..")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    GalleryError: gallery name '..' is not allowed
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
    except (OSError, UnicodeDecodeError) as exc:
        raise GalleryError(f"{path}: manifest cannot be read ({exc})") from None
    if not isinstance(manifest, dict):
        raise GalleryError(f"{path}: manifest is not a JSON object")
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


@contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on a :func:`_connect` connection: all of the block or none of it.

    >>> con = sqlite3.connect(":memory:", isolation_level=None)
    >>> _ = con.execute("create table t (x)")
    >>> try:
    ...     with transaction(con):
    ...         _ = con.execute("insert into t values (1)")
    ...         raise RuntimeError("stop")
    ... except RuntimeError:
    ...     pass
    >>> con.execute("select count(*) from t").fetchone()[0]
    0
    """
    con.execute("begin immediate")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


SCHEMA = (
    """create table if not exists vectors (
        faiss_id integer primary key, unit_key text, signature text, path text, sha256 text,
        person text, kind text, camera integer, tracklet integer, frame integer, split text,
        width integer, height integer, n_frames integer, added_at text, vector blob,
        time text, extra text, cluster integer, knn_floor real
    )""",
    "create unique index if not exists idx_vectors_unit_key on vectors (unit_key)",
    "create index if not exists idx_vectors_person on vectors (person)",
    "create table if not exists frames (faiss_id integer, path text)",
    "create index if not exists idx_frames_faiss_id on frames (faiss_id)",
    "create table if not exists skipped (path text primary key, reason text, seen_at text)",
    "create table if not exists state (key text primary key, value)",  # ints and floats kept as given
)
LATER_INDEXES = (  # on columns an older gallery gains first (ADDED_COLUMNS)
    "create index if not exists idx_vectors_camera on vectors (camera)",
    "create index if not exists idx_vectors_time on vectors (time)",
    "create index if not exists idx_vectors_cluster on vectors (cluster)",
)
SCHEMA_NAMES = frozenset(
    statement.split(" if not exists ")[1].split()[0] for statement in (*SCHEMA, *LATER_INDEXES)
)


def _ensure_schema(con: sqlite3.Connection) -> None:
    """Create or bring up to date the tables, columns and indexes, all in one transaction.

    Another process reading the file meanwhile sees either no schema or the whole of it;
    an up-to-date file is only read (opening a gallery for a query takes no write lock).
    """
    if _schema_is_current(con):
        return
    with transaction(con):
        for statement in SCHEMA:
            con.execute(statement)
        columns = {r[1] for r in con.execute("pragma table_info(vectors)")}
        for column, kind in ADDED_COLUMNS.items():  # v1: no vector (it lived in index.faiss); no time
            if column not in columns:
                con.execute(f"alter table vectors add column {column} {kind}")
        for statement in LATER_INDEXES:
            con.execute(statement)


def _schema_is_current(con: sqlite3.Connection) -> bool:
    names = {r[0] for r in con.execute("select name from sqlite_master")}
    columns = {r[1] for r in con.execute("pragma table_info(vectors)")}
    return names >= SCHEMA_NAMES and columns >= set(ADDED_COLUMNS)


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()
