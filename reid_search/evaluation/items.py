"""Evaluation items: the vectors a protocol scores, with person, camera, kind, sighting and
path, from a scanned dataset (embedded here), MARS's official test tracklets, or a gallery's
stored rows (no model needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.layouts import KIND_UNLABELLED, DatasetScan, tracklet_key
from ..gallery import Gallery, make_units
from ..progress import Progress
from .protocols import EvalItems, ProtocolError, load_mars_official, mars_info_dir, mars_tracklet_key


def _embed_groups(
    embedder, groups: list[list[str]], progress: bool, label: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Pooled vectors of each group, a mask of groups that had a readable file, failure lines."""
    vectors = np.zeros((len(groups), embedder.dim), np.float32)
    ok = np.zeros(len(groups), bool)
    failures: list[str] = []
    with Progress(sum(map(len, groups)), label, enabled=progress) as bar:
        for batch in embedder.iter_pooled(groups):
            for g in batch.groups:
                if g.vector is not None:
                    vectors[g.index], ok[g.index] = g.vector, True
            failures.extend(str(f) for f in batch.failures)
            bar.update(batch.n_files)
    return vectors, ok, failures


def items_from_scan(
    scan: DatasetScan, embedder, level: str, frames_per_tracklet: int | None, progress: bool
) -> tuple[EvalItems, list[str]]:
    """Embed a scanned dataset into evaluation items (one per image or per tracklet)."""
    units = make_units(scan.records, level, frames_per_tracklet)
    vectors, ok, failures = _embed_groups(
        embedder, [[r.path for r in u.records] for u in units], progress, f"embed {Path(scan.root).name}"
    )
    units = [u for u, good in zip(units, ok, strict=True) if good]
    firsts = [u.records[0] for u in units]
    items = EvalItems.from_labels(
        vectors[ok],
        persons=[r.person for r in firsts],
        cameras=[r.camera for r in firsts],
        kinds=[r.kind for r in firsts],
        groups=[r.sighting_key for r in firsts],
        paths=[r.path for r in firsts],
        splits=[r.split for r in firsts],
    )
    return items, failures


def mars_official_items(
    root: str | Path, embedder, frames_per_tracklet: int | None, progress: bool
) -> tuple[EvalItems, np.ndarray, list[str]]:
    """Embed the official MARS test tracklets, in ``tracks_test_info`` order."""
    from ..embedding.embedder import sample_frames

    tracklets, query_rows = load_mars_official(root)
    groups = [sample_frames(t.frames, frames_per_tracklet) for t in tracklets]
    vectors, ok, failures = _embed_groups(embedder, groups, progress, "embed MARS test tracklets")
    if not ok.all():
        lost = [tracklets[i].frames[0] for i in np.flatnonzero(~ok)[:5]]
        raise ProtocolError(f"{int((~ok).sum())} official tracklets have no readable frame, e.g. {lost}")
    items = EvalItems.from_labels(
        vectors,
        persons=[t.person for t in tracklets],
        cameras=[t.camera for t in tracklets],
        kinds=[t.kind for t in tracklets],
        paths=[t.frames[0] for t in tracklets],
    )
    return items, query_rows, failures


def items_from_gallery(gallery: Gallery) -> EvalItems:
    """Evaluation items straight from a gallery's FAISS vectors and SQLite rows."""
    ids, vectors = gallery.vectors()
    rows = gallery.rows()
    ordered = [rows[int(i)] for i in ids]
    return EvalItems.from_labels(
        vectors,
        persons=[r["person"] for r in ordered],
        cameras=[r["camera"] for r in ordered],
        kinds=[r["kind"] for r in ordered],
        groups=[_row_sighting(r, gallery.level) for r in ordered],
        paths=[r["path"] for r in ordered],
        splits=[r["split"] for r in ordered],
    )


def _row_sighting(row: dict[str, Any], level: str) -> str:
    """A gallery row's sighting key (see ``ImageRecord.sighting_key``)."""
    if level == "tracklet":
        return row["unit_key"]
    if row["tracklet"] is None:
        return row["path"]
    return f"{Path(row['path']).parent}|{tracklet_key(row['person'], row['camera'], row['tracklet'])}"


def _gallery_mars_order(gallery: Gallery, items: EvalItems) -> tuple[np.ndarray, np.ndarray] | None:
    """Tracklet gallery of a MARS root with ``info/``: (item order of official tracklets, query rows)."""
    if gallery.level != "tracklet":
        return None
    for source in gallery.manifest["sources"]:
        if source["layout"] == "mars" and mars_info_dir(source["root"]):
            tracklets, query_rows = load_mars_official(source["root"])
            by_key = {k: i for i, k in enumerate(items.groups)}
            order = []
            for t in tracklets:
                key = mars_tracklet_key(t.frames[0])
                if key not in by_key:
                    raise ProtocolError(
                        f"{gallery.path}: gallery lacks the official tracklet of {t.frames[0]}"
                    )
                order.append(by_key[key])
            return np.array(order), query_rows
    return None


def _subset(items: EvalItems, order: np.ndarray) -> EvalItems:
    return EvalItems(
        items.vectors[order],
        items.persons[order],
        items.kinds[order],
        items.cameras[order],
        items.groups[order],
        [items.paths[i] for i in order],
        None if items.splits is None else items.splits[order],
    )


def _check_scorable(items: EvalItems, what: str, skipped: list) -> None:
    """A clear error, before any scoring, when there is nothing a protocol could score."""
    if len(items.vectors) == 0:
        raise ProtocolError(f"{what}: nothing to evaluate (no readable image; {len(skipped)} skipped)")
    if all(kind == KIND_UNLABELLED for kind in items.kinds):
        raise ProtocolError(
            f"{what}: unlabelled crops only; scoring needs to know who is who (a labelled dataset)"
        )
