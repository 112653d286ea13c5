"""A gallery: a FAISS index of embeddings, SQLite rows saying what each vector is, a manifest.

Layout of ``indexes/NAME/``::

    index.faiss     IndexIDMap2 over IndexFlatIP (cosine on L2-normalised vectors)
    meta.sqlite     table ``vectors`` (a row per FAISS id), ``frames`` (tracklet members),
                    ``skipped`` (files passed over, with the reason)
    manifest.json   format, tool version, the model's SHA-256, dim, metric, index type, counts

Crash safety: SQLite commits one transaction per batch; the FAISS file and manifest are
written to a temp file and renamed over the old one at checkpoints. On the next open for
writing, rows and vectors are reconciled (SQLite rows whose vector never reached the FAISS
file are dropped, vectors without a row are removed), so a build killed at any moment
resumes with no duplicate and no missing entry.

Usage::

    >>> from reid_search import Embedder, Gallery, build_gallery
    >>> gallery, report = build_gallery("bbox_test", name="cuhk", embedder=Embedder())  # doctest: +SKIP
    >>> Gallery.open("cuhk").size                                                        # doctest: +SKIP
    938
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .layouts import DatasetScan, ImageRecord, Skipped, default_gallery_splits, scan_dataset
from .model_store import write_json_atomic

MANIFEST_FORMAT = "reid-search/gallery/v1"
INDEX_FILE = "index.faiss"
DB_FILE = "meta.sqlite"
MANIFEST_FILE = "manifest.json"
FAISS_INDEX_TYPE = "IDMap2,Flat"
METRIC = "cosine (inner product of L2-normalised vectors)"
LEVELS = ("image", "tracklet")
DEFAULT_FRAMES_PER_TRACKLET = 32


class GalleryError(ValueError):
    """A gallery that is missing, damaged, or used with the wrong model or level."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    return base / str(name_or_path)


def list_galleries(indexes_dir: str | Path | None = None) -> list[Path]:
    """Every folder under the indexes folder that holds a gallery manifest."""
    base = Path(indexes_dir) if indexes_dir else default_indexes_dir()
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if (p / MANIFEST_FILE).is_file())


def _write_index_atomic(index, path: Path) -> None:
    import faiss

    tmp = path.with_name(f".{path.name}.tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _new_index(dim: int):
    import faiss

    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


@dataclass
class Match:
    """One gallery vector returned by a search."""

    faiss_id: int
    similarity: float
    row: dict[str, Any]


class Gallery:
    """An opened gallery folder. Use :meth:`open`; :func:`build_gallery` creates and grows one."""

    def __init__(self, path: Path, index, db, manifest: dict[str, Any]):
        self.path = path
        self.index = index
        self.db = db
        self.manifest = manifest
        self.last_checkpoint_seconds = 0.0

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, name_or_path: str | Path | None = None, indexes_dir: str | Path | None = None) -> Gallery:
        """Open an existing gallery for searching (and, through build_gallery, growing)."""
        import faiss
        import sqlite_utils

        path = resolve_gallery_path(name_or_path, indexes_dir)
        manifest_path = path / MANIFEST_FILE
        if not manifest_path.is_file():
            raise GalleryError(f"{path}: not a gallery (no {MANIFEST_FILE}); build it with 'index'")
        manifest = _read_manifest(manifest_path)
        index_path = path / INDEX_FILE
        index = (
            faiss.read_index(str(index_path))
            if index_path.is_file()
            else _new_index(manifest["embedding_dim"])
        )
        if index.d != manifest["embedding_dim"]:
            raise GalleryError(
                f"{index_path}: dimension {index.d}, manifest says {manifest['embedding_dim']}"
            )
        db = sqlite_utils.Database(path / DB_FILE)
        _ensure_schema(db)
        return cls(path, index, db, manifest)

    @classmethod
    def create(
        cls, path: Path, model_info: dict[str, Any], level: str, frames_per_tracklet: int | None
    ) -> Gallery:
        """Start an empty gallery at ``path`` for vectors of the given model."""
        import sqlite_utils

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
            "faiss_index_type": FAISS_INDEX_TYPE,
            "level": level,
            "frames_per_tracklet": frames_per_tracklet if level == "tracklet" else None,
            "sources": [],
            "counts": {},
        }
        db = sqlite_utils.Database(path / DB_FILE)
        _ensure_schema(db)
        gallery = cls(path, _new_index(model_info["embedding_dim"]), db, manifest)
        gallery.checkpoint()
        return gallery

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ facts
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    @property
    def level(self) -> str:
        return self.manifest["level"]

    @property
    def model_sha256(self) -> str:
        return self.manifest["model"]["sha256"]

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
        """FAISS ids in index order."""
        import faiss

        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All (ids, vectors) as stored in the FAISS file, in index order."""
        n = self.size
        if n == 0:
            return np.zeros(0, np.int64), np.zeros((0, self.index.d), np.float32)
        return self.ids(), self.index.index.reconstruct_n(0, n)

    def vectors_for(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of the given ids, in that order."""
        if len(ids) == 0:
            return np.zeros((0, self.index.d), np.float32)
        return np.stack([self.index.reconstruct(int(i)) for i in ids])

    def rows(self, ids: Iterable[int] | None = None) -> dict[int, dict[str, Any]]:
        """SQLite rows by FAISS id (all rows when ``ids`` is None)."""
        if ids is None:
            return {r["faiss_id"]: r for r in self.db["vectors"].rows}
        wanted = [int(i) for i in ids]
        out: dict[int, dict[str, Any]] = {}
        for start in range(0, len(wanted), 900):  # SQLite's variable limit
            chunk = wanted[start : start + 900]
            marks = ",".join("?" * len(chunk))
            out.update(
                {
                    r["faiss_id"]: r
                    for r in self.db.query(f"select * from vectors where faiss_id in ({marks})", chunk)
                }
            )
        return out

    def skipped(self) -> list[dict[str, Any]]:
        return list(self.db["skipped"].rows)

    # ------------------------------------------------------------------ search
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search: (similarities, ids), each (n_queries, k); id -1 pads short results."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.index.d:
            raise GalleryError(f"query dimension {queries.shape[1]} != gallery's {self.index.d}")
        k = max(1, min(k, self.size))
        return self.index.search(queries, k)

    # ------------------------------------------------------------------ writing
    def checkpoint(self) -> None:
        """Persist the FAISS index, then the manifest, each atomically (SQLite is already committed)."""
        started = time.perf_counter()
        _write_index_atomic(self.index, self.path / INDEX_FILE)
        self.manifest["updated"] = now_iso()
        self.manifest["counts"] = self._counts()
        write_json_atomic(self.path / MANIFEST_FILE, self.manifest)
        self.last_checkpoint_seconds = time.perf_counter() - started

    def _counts(self) -> dict[str, int]:
        one = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "vectors": self.size,
            "images": one("select coalesce(sum(n_frames), 0) from vectors"),
            "persons": one("select count(distinct person) from vectors where kind = 'identity'"),
            "cameras": one("select count(distinct camera) from vectors where camera is not null"),
            "skipped": one("select count(*) from skipped"),
        }

    def reconcile(self) -> tuple[int, int]:
        """Make SQLite rows and FAISS vectors agree after an interrupted build.

        Returns (rows dropped, vectors dropped).
        """
        faiss_ids = set(self.ids().tolist())
        row_ids = {r[0] for r in self.db.execute("select faiss_id from vectors")}
        orphan_rows = sorted(row_ids - faiss_ids)
        orphan_vectors = sorted(faiss_ids - row_ids)
        if orphan_rows:
            with self.db.conn:
                self.db.conn.executemany(
                    "delete from vectors where faiss_id = ?", [(i,) for i in orphan_rows]
                )
                self.db.conn.executemany("delete from frames where faiss_id = ?", [(i,) for i in orphan_rows])
        if orphan_vectors:
            self.index.remove_ids(np.array(orphan_vectors, dtype=np.int64))
        if orphan_rows or orphan_vectors:
            self.checkpoint()
        return len(orphan_rows), len(orphan_vectors)

    def remove(self, ids: Sequence[int]) -> None:
        """Delete vectors and their rows (used when a tracklet gains frames)."""
        if not ids:
            return
        with self.db.conn:
            self.db.conn.executemany("delete from vectors where faiss_id = ?", [(int(i),) for i in ids])
            self.db.conn.executemany("delete from frames where faiss_id = ?", [(int(i),) for i in ids])
        self.index.remove_ids(np.array(ids, dtype=np.int64))
        self.checkpoint()

    def next_id(self) -> int:
        row = self.db.execute("select max(faiss_id) from vectors").fetchone()[0]
        ids = self.ids()
        return int(max(row if row is not None else -1, ids.max() if len(ids) else -1)) + 1

    def add_units(
        self,
        rows: list[dict[str, Any]],
        vectors: np.ndarray,
        frames: list[tuple[int, str]],
        skipped: list[Skipped],
    ) -> None:
        """Commit a batch: rows, frames and skipped files in one transaction, then vectors to FAISS."""
        now = now_iso()
        with self.db.conn:
            if rows:
                cols = list(rows[0])
                sql = f"insert into vectors ({', '.join(cols)}) values ({', '.join('?' * len(cols))})"
                self.db.conn.executemany(sql, [[r[c] for c in cols] for r in rows])
                done = [(r["path"],) for r in rows]
                self.db.conn.executemany("delete from skipped where path = ?", done)
            if frames:
                self.db.conn.executemany("insert into frames (faiss_id, path) values (?, ?)", frames)
            if skipped:
                self.db.conn.executemany(
                    "insert or replace into skipped (path, reason, seen_at) values (?, ?, ?)",
                    [(s.path, s.reason, now) for s in skipped],
                )
        if rows:
            ids = np.array([r["faiss_id"] for r in rows], dtype=np.int64)
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def done_units(self) -> dict[str, tuple[int, str]]:
        """unit key -> (faiss id, signature) for everything already embedded."""
        return {k: (i, s) for i, k, s in self.db.execute("select faiss_id, unit_key, signature from vectors")}


def _read_manifest(path: Path) -> dict[str, Any]:
    import json

    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GalleryError(f"{path}: manifest is not valid JSON ({exc})") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise GalleryError(f"{path}: unknown gallery format {manifest.get('format')!r}")
    return manifest


def _ensure_schema(db) -> None:
    if "vectors" not in db.table_names():
        db["vectors"].create(
            {
                "faiss_id": int,
                "unit_key": str,
                "signature": str,
                "path": str,
                "sha256": str,
                "person": str,
                "kind": str,
                "camera": int,
                "tracklet": int,
                "frame": int,
                "split": str,
                "width": int,
                "height": int,
                "n_frames": int,
                "added_at": str,
            },
            pk="faiss_id",
        )
        db["vectors"].create_index(["unit_key"], unique=True)
        db["vectors"].create_index(["person"])
    if "frames" not in db.table_names():
        db["frames"].create({"faiss_id": int, "path": str})
        db["frames"].create_index(["faiss_id"])
    if "skipped" not in db.table_names():
        db["skipped"].create({"path": str, "reason": str, "seen_at": str}, pk="path")


# ---------------------------------------------------------------------- building
@dataclass
class Unit:
    """What one gallery vector is made of: one image, or the sampled frames of a tracklet."""

    key: str
    records: list[ImageRecord]
    signature: str


@dataclass
class BuildReport:
    """What a build (or resume) did."""

    gallery: str
    added: int = 0
    images_embedded: int = 0
    already_present: int = 0
    replaced: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    reconciled: tuple[int, int] = (0, 0)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.images_embedded / self.seconds if self.seconds > 0 else 0.0


def make_units(records: Sequence[ImageRecord], level: str, frames_per_tracklet: int | None) -> list[Unit]:
    """Group records into gallery units: one per image, or one per tracklet (frames sampled)."""
    from .embedder import sample_frames

    if level == "image":
        return [Unit(r.path, [r], r.path) for r in records]
    groups: dict[str, list[ImageRecord]] = defaultdict(list)
    for r in records:
        groups[f"{Path(r.path).parent}|{r.tracklet_key}"].append(r)
    units = []
    for key, members in groups.items():
        members.sort(key=lambda r: (r.frame if r.frame is not None else -1, r.path))
        chosen = sample_frames(members, frames_per_tracklet)
        signature = hashlib.sha1("\n".join(r.path for r in members).encode()).hexdigest()
        units.append(Unit(key, chosen, signature))
    return units


def model_info(embedder) -> dict[str, Any]:
    card = embedder.card
    return {
        "path": str(embedder.model.path.resolve()),
        "sha256": embedder.model_sha256,
        "name": card.name,
        "architecture": card.architecture,
        "embedding_dim": card.embedding_dim,
        "input_size": [card.input_height, card.input_width],
        "flip_tta": bool(getattr(embedder, "flip", False)),
    }


def _content_hash(facts: list) -> str:
    """The file's SHA-256, or for a tracklet the SHA-256 of its frames' hashes."""
    if len(facts) == 1:
        return facts[0].sha256
    return hashlib.sha256("".join(f.sha256 for f in facts).encode()).hexdigest()


def _unit_row(unit: Unit, faiss_id: int, facts: list) -> dict[str, Any]:
    first = unit.records[0]
    single = len(unit.records) == 1
    return {
        "faiss_id": faiss_id,
        "unit_key": unit.key,
        "signature": unit.signature,
        "path": first.path,
        "sha256": _content_hash(facts),
        "person": first.person,
        "kind": first.kind,
        "camera": first.camera,
        "tracklet": first.tracklet,
        "frame": first.frame if single else None,
        "split": first.split,
        "width": facts[0].width,
        "height": facts[0].height,
        "n_frames": len(facts),
        "added_at": now_iso(),
    }


def build_gallery(
    data: str | Path | DatasetScan,
    name: str | None = None,
    embedder=None,
    *,
    level: str = "image",
    layout: str | None = None,
    splits: Iterable[str] | None = None,
    camera_pattern: str | None = None,
    rebuild: bool = False,
    indexes_dir: str | Path | None = None,
    frames_per_tracklet: int | None = DEFAULT_FRAMES_PER_TRACKLET,
    checkpoint_seconds: float = 30.0,
    progress: bool = True,
) -> tuple[Gallery, BuildReport]:
    """Embed every image of ``data`` into the gallery ``name`` (created, resumed or grown).

    Only files not yet in the gallery are embedded; unreadable files are recorded in the
    ``skipped`` table and in the report, never fatal. ``rebuild`` starts from scratch.
    """
    import shutil

    from .embedder import Embedder

    embedder = embedder or Embedder()
    scan = data if isinstance(data, DatasetScan) else scan_dataset(data, layout, camera_pattern, splits)
    if not isinstance(data, DatasetScan) and splits is None:
        wanted = set(default_gallery_splits(scan))
        scan.records = [r for r in scan.records if r.split in wanted]
    base = Path(indexes_dir) if indexes_dir else default_indexes_dir()
    path = base / (name or Path(scan.root).name)
    if rebuild and path.exists():
        shutil.rmtree(path)
    if (path / MANIFEST_FILE).is_file():
        gallery = Gallery.open(path)
        gallery.check_model(embedder.model_sha256, embedder.model.path)
        if gallery.level != level:
            raise GalleryError(
                f"{path}: a {gallery.level}-level gallery; use --level {gallery.level} or --rebuild"
            )
        frames_per_tracklet = gallery.manifest.get("frames_per_tracklet")
    else:
        gallery = Gallery.create(path, model_info(embedder), level, frames_per_tracklet)
    report = BuildReport(gallery=str(path), reconciled=gallery.reconcile())
    _record_source(gallery, scan)

    units = make_units(scan.records, level, frames_per_tracklet)
    done = gallery.done_units()
    stale = [done[u.key][0] for u in units if u.key in done and done[u.key][1] != u.signature]
    gallery.remove(stale)
    report.replaced = len(stale)
    pending = [u for u in units if u.key not in done or done[u.key][1] != u.signature]
    report.already_present = len(units) - len(pending)
    gallery.add_units([], np.zeros((0, gallery.index.d), np.float32), [], scan.skipped)
    report.skipped.extend(scan.skipped)

    started = time.perf_counter()
    try:
        _embed_units(gallery, embedder, pending, report, checkpoint_seconds, progress)
    finally:
        report.seconds = time.perf_counter() - started
        gallery.manifest["last_build"] = {
            "images_embedded": report.images_embedded,
            "seconds": round(report.seconds, 2),
            "images_per_second": round(report.images_per_second, 1),
            "batch_size": embedder.batch_size,
        }
        gallery.checkpoint()
    return gallery, report


def _record_source(gallery: Gallery, scan: DatasetScan) -> None:
    source = {"root": scan.root, "layout": scan.layout, "splits": sorted({r.split for r in scan.records})}
    if source not in gallery.manifest["sources"]:
        gallery.manifest["sources"].append(source)


def _embed_units(
    gallery: Gallery,
    embedder,
    units: list[Unit],
    report: BuildReport,
    checkpoint_seconds: float,
    progress: bool,
) -> None:
    """Stream the frames of ``units`` through the embedder; commit each batch's finished units."""
    from tqdm import tqdm

    next_id = gallery.next_id()
    last_checkpoint = time.monotonic()
    total = sum(len(u.records) for u in units)
    bar = tqdm(
        total=total,
        unit="img",
        desc=f"index {gallery.name}",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    try:
        for batch in embedder.iter_pooled([[r.path for r in u.records] for u in units]):
            rows, vectors, members = [], [], []
            for group in batch.groups:
                if group.vector is None:
                    continue
                unit = units[group.index]
                rows.append(_unit_row(unit, next_id, group.images))
                vectors.append(group.vector)
                if gallery.level == "tracklet":
                    members.extend((next_id, r.path) for r in unit.records)
                next_id += 1
            failed = [Skipped(f.path, f.reason) for f in batch.failures]
            gallery.add_units(
                rows, np.array(vectors, np.float32).reshape(-1, gallery.index.d), members, failed
            )
            report.added += len(rows)
            report.images_embedded += batch.n_files - len(failed)
            report.skipped.extend(failed)
            bar.update(batch.n_files)
            for s in failed[:3]:
                bar.write(f"skipped {s.path}: {s.reason}")
            # large galleries: keep checkpoint writes under ~10% of the build time
            interval = max(checkpoint_seconds, 10 * gallery.last_checkpoint_seconds)
            if time.monotonic() - last_checkpoint >= interval:
                gallery.checkpoint()
                last_checkpoint = time.monotonic()
    finally:
        bar.close()
