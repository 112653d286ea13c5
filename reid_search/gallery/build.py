"""Build, grow or rebuild a gallery on this machine (the local engine).

Images are grouped into *units* (one image, or the sampled frames of a tracklet), only
units not yet in the gallery are embedded, and every batch is committed to SQLite with
its vectors in one transaction. Memory stays bounded while embedding: nothing grows with
the gallery until the FAISS index is written at the end (its size is that of the index).
``rebuild`` builds beside the old gallery and swaps at the end, so a failed rebuild keeps
the old one. Precomputed vectors (``reid-search embed``'s ``.npz``) can stand in for the
model.

Usage::

    from reid_search import Embedder, build_gallery
    gallery, report = build_gallery("bbox_test", name="cuhk", embedder=Embedder())
    report.added, report.images_per_second
    # (938, 310.2)
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.layouts import DatasetScan, ImageRecord, Skipped, default_gallery_splits, scan_dataset
from ..progress import Progress
from . import index as idx
from .store import (
    DEFAULT_FRAMES_PER_TRACKLET,
    MANIFEST_FILE,
    Gallery,
    GalleryError,
    check_gallery_name,
    default_indexes_dir,
    gallery_name_from_folder,
    now_iso,
)


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
    metadata_updated: int = 0  # entries already present whose camera / time / extra changed
    metadata_unmatched: list[str] = field(default_factory=list)  # CSV rows naming no image here
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    index_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.images_embedded / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "gallery": self.gallery,
            "added": self.added,
            "already_present": self.already_present,
            "replaced": self.replaced,
            "metadata_updated": self.metadata_updated,
            "metadata_unmatched": self.metadata_unmatched,
            "images_embedded": self.images_embedded,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "seconds": round(self.seconds, 3),
            "index_seconds": round(self.index_seconds, 3),
            "images_per_second": round(self.images_per_second, 1),
        }


def make_units(records: Sequence[ImageRecord], level: str, frames_per_tracklet: int | None) -> list[Unit]:
    """Group records into gallery units: one per image, or one per tracklet (frames sampled)."""
    from ..embedding.embedder import sample_frames

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
    """What the manifest records of the model that makes a gallery's vectors."""
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
        "sha256": _content_hash(facts) if facts else None,
        "person": first.person,
        "kind": first.kind,
        "camera": first.camera,
        "tracklet": first.tracklet,
        "frame": first.frame if single else None,
        "split": first.split,
        "width": facts[0].width if facts else None,
        "height": facts[0].height if facts else None,
        "n_frames": len(unit.records),
        "added_at": now_iso(),
        "time": first.time,
        "extra": first.extra,
    }


def build_gallery(
    data: str | Path | DatasetScan,
    name: str | None = None,
    embedder=None,
    *,
    level: str = "image",
    layout: str | None = None,
    splits: Iterable[str] | None = None,
    name_pattern: str | None = None,
    metadata: str | Path | None = None,
    rebuild: bool = False,
    indexes_dir: str | Path | None = None,
    frames_per_tracklet: int | None = DEFAULT_FRAMES_PER_TRACKLET,
    checkpoint_seconds: float = 30.0,
    progress: bool = True,
    index_type: str | None = None,
    vectors=None,
    attributes: bool | None = None,
) -> tuple[Gallery, BuildReport]:
    """Embed every image of ``data`` into the gallery ``name`` (created, resumed or grown).

    Only files not yet in the gallery are embedded; unreadable files are recorded in the
    ``skipped`` table and in the report, never fatal. ``rebuild`` builds a new gallery
    beside the old one and replaces it only when done. ``vectors`` (a
    :class:`~reid_search.embedding.vectors.VectorsFile` of this data) supplies precomputed vectors
    instead of the embedder. ``index_type``: a FAISS factory string or ``auto``.
    ``name_pattern`` / ``metadata`` (CSV) give camera, time and extra metadata
    (:mod:`reid_search.data.metadata`); run again with new metadata, entries already
    embedded get it without being embedded again. ``attributes``: give new entries attribute
    probabilities (None: when the model has an attribute head; True: it must have one).
    """
    if isinstance(data, DatasetScan):
        scan = data
    else:
        scan = scan_dataset(data, layout, name_pattern, splits, metadata)
    if not isinstance(data, DatasetScan) and splits is None:
        wanted = set(default_gallery_splits(scan))
        scan.records = [r for r in scan.records if r.split in wanted]
    if vectors is None and embedder is None:
        from ..embedding.embedder import Embedder

        embedder = Embedder()
    info = model_info(embedder) if vectors is None else _vectors_model_info(vectors)
    base = Path(indexes_dir) if indexes_dir else default_indexes_dir()
    path = base / (check_gallery_name(name) if name else gallery_name_from_folder(scan.root))
    if path.exists() and not path.is_dir() or path.is_symlink():
        raise GalleryError(f"{path}: exists and is not a gallery folder; choose another --name")
    _recover_interrupted_swap(path)

    def build_at(target: Path, wanted_index_type: str | None) -> tuple[Gallery, BuildReport]:
        return _build_into(
            target, scan, embedder, vectors, info, level, frames_per_tracklet, checkpoint_seconds,
            progress, wanted_index_type, attributes,
        )  # fmt: skip

    if not (rebuild and (path / MANIFEST_FILE).is_file()):
        return build_at(path, index_type)
    with Gallery.open(path) as old, old.writing():
        new_path = path.with_name(f".{path.name}.rebuild")
        shutil.rmtree(new_path, ignore_errors=True)
        gallery, report = build_at(new_path, index_type or old.index_type)
        gallery.close()
        _swap(new_path, path)
    gallery = Gallery.open(path)
    gallery.manifest["name"] = path.name
    gallery.checkpoint()
    report.gallery = str(path)
    return gallery, report


def _attach_attributes(gallery: Gallery, wanted: bool | None) -> None:
    """Attach the model's attribute head for new entries (see :func:`build_gallery`)."""
    from ..attributes.head import AttributeHeadError, head_for_model

    if wanted is False:
        return
    try:
        gallery.attach_attribute_head(head_for_model(gallery.model_sha256))
    except AttributeHeadError:
        if wanted:
            gallery.unlock()
            gallery.close()
            raise


def _recover_interrupted_swap(path: Path) -> None:
    """A rebuild killed between its two renames: put the old gallery back; drop a half rebuild."""
    old = path.with_name(f".{path.name}.old")
    if old.is_dir() and not path.exists():
        old.rename(path)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(path.with_name(f".{path.name}.rebuild"), ignore_errors=True)


def _swap(new_path: Path, path: Path) -> None:
    old = path.with_name(f".{path.name}.old")
    path.rename(old)
    new_path.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _build_into(
    path: Path,
    scan: DatasetScan,
    embedder,
    vectors,
    info: dict[str, Any],
    level: str,
    frames_per_tracklet: int | None,
    checkpoint_seconds: float,
    progress: bool,
    index_type: str | None,
    attributes: bool | None = None,
) -> tuple[Gallery, BuildReport]:
    if (path / MANIFEST_FILE).is_file():
        gallery = Gallery.open(path)
        gallery.check_model(info["sha256"], info.get("path") or "")
        if gallery.level != level:
            gallery.close()
            raise GalleryError(
                f"{path}: a {gallery.level}-level gallery; use --level {gallery.level} or --rebuild"
            )
        frames_per_tracklet = gallery.manifest.get("frames_per_tracklet")
        if index_type:
            gallery.manifest["index_type"] = index_type
    else:
        gallery = Gallery.create(path, info, level, frames_per_tracklet, index_type or idx.AUTO)
    try:
        gallery.lock()
    except GalleryError:
        gallery.close()
        raise
    report = BuildReport(gallery=str(path))
    _attach_attributes(gallery, attributes)
    _record_source(gallery, scan)
    gallery.checkpoint()  # the folder is on record before any of its entries (servers check it)

    units = make_units(scan.records, level, frames_per_tracklet)
    done = gallery.done_units()
    stale = [done[u.key][0] for u in units if u.key in done and done[u.key][1] != u.signature]
    gallery.remove(stale)
    report.replaced = len(stale)
    pending = [u for u in units if u.key not in done or done[u.key][1] != u.signature]
    report.already_present = len(units) - len(pending)
    if scan.metadata_given:  # else a run without --metadata would erase what an earlier one set
        present = [u for u in units if u.key in done and done[u.key][1] == u.signature]
        report.metadata_updated = gallery.update_metadata({done[u.key][0]: u.records[0] for u in present})
    report.metadata_unmatched = list(scan.metadata_unmatched)
    gallery.add_units([], np.zeros((0, gallery.dim), np.float32), [], scan.skipped)
    report.skipped.extend(scan.skipped)

    started = time.perf_counter()
    try:
        if vectors is None:
            _embed_units(gallery, embedder, pending, report, checkpoint_seconds, progress)
        else:
            _add_precomputed(gallery, vectors, pending, scan.root, report, level)
    finally:
        report.seconds = time.perf_counter() - started
        gallery.manifest["last_build"] = {
            "images_embedded": report.images_embedded,
            "seconds": round(report.seconds, 2),
            "images_per_second": round(report.images_per_second, 1),
            "batch_size": getattr(embedder, "batch_size", None),
        }
        gallery.checkpoint()
    index_started = time.perf_counter()
    gallery.save_index()
    report.index_seconds = time.perf_counter() - index_started
    gallery.checkpoint()
    gallery.unlock()
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
    next_id = gallery.next_id()
    last_checkpoint = time.monotonic()
    total = sum(len(u.records) for u in units)
    with Progress(total, f"index {gallery.name}", enabled=progress) as bar:
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
            gallery.add_units(rows, np.array(vectors, np.float32).reshape(-1, gallery.dim), members, failed)
            report.added += len(rows)
            report.images_embedded += batch.n_files - len(failed)
            report.skipped.extend(failed)
            bar.update(batch.n_files)
            for s in failed[:3]:
                bar.write(f"skipped {s.path}: {s.reason}")
            if time.monotonic() - last_checkpoint >= checkpoint_seconds:
                gallery.checkpoint()
                last_checkpoint = time.monotonic()


def _vectors_model_info(vectors) -> dict[str, Any]:
    if not vectors.model_sha256:
        raise GalleryError("the vectors file does not say which model made it (model_sha256)")
    return {
        "path": None,
        "sha256": vectors.model_sha256,
        "name": vectors.model,
        "architecture": None,
        "embedding_dim": int(vectors.embeddings.shape[1]),
        "input_size": None,
        "flip_tta": False,
        "from_vectors_file": True,
    }


def _add_precomputed(
    gallery: Gallery, vectors, units: list[Unit], root: str, report: BuildReport, level: str
) -> None:
    """Add units from a vectors file (paths relative to the dataset root), in batches."""
    from ..embedding.embedder import l2_normalise

    if level != "image":
        raise GalleryError("precomputed vectors are per image: use --level image")
    by_path = {p: i for i, p in enumerate(vectors.paths)}
    next_id = gallery.next_id()
    for start in range(0, len(units), 1024):
        rows, batch, missing = [], [], []
        for unit in units[start : start + 1024]:
            key = Path(unit.records[0].path).relative_to(root).as_posix()
            if key not in by_path:
                missing.append(Skipped(unit.records[0].path, "no vector for it in the vectors file"))
                continue
            rows.append(_unit_row(unit, next_id, []))
            batch.append(vectors.embeddings[by_path[key]])
            next_id += 1
        gallery.add_units(rows, l2_normalise(np.array(batch).reshape(-1, gallery.dim)), [], missing)
        report.added += len(rows)
        report.skipped.extend(missing)
