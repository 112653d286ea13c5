"""Evaluate a model on a dataset folder, or a built gallery, under a re-ID protocol.

``evaluate`` picks the protocol from what the source holds (``protocol="auto"``):
MARS ``info/`` files -> ``mars-official``; Market-1501 ``query/`` -> ``market1501``;
otherwise ``cross-camera`` (``cross-tracklet`` when no cameras are known). See
:mod:`reid_search.data.protocols` for the matching rule and :mod:`reid_search.data.metrics` for the
metric definitions.

Usage::

    from reid_search import evaluate
    report = evaluate("../shared/data/cuhk03-mars/bbox_test")
    round(report.rank(1), 3), round(report.summary.mean_ap, 3)
    # (0.123, 0.101)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..data.layouts import KIND_UNLABELLED, DatasetScan, default_gallery_splits, scan_dataset, tracklet_key
from ..data.metrics import MetricSummary, QueryScore, score_items, summarise
from ..data.protocols import (
    EvalItems,
    Protocol,
    ProtocolError,
    cross_camera,
    load_mars_official,
    market1501,
    mars_info_dir,
    mars_official,
    mars_tracklet_key,
)
from ..gallery import DEFAULT_FRAMES_PER_TRACKLET, MANIFEST_FILE, Gallery, make_units, resolve_gallery_path
from ..progress import Progress
from .rerank import RerankConfig, rerank_similarities

AP_DEFINITION = (
    "non-interpolated average precision as torchreid: mean over the query's true matches of "
    "precision at each match's rank, junk removed first; CMC(k) = share of queries whose first "
    "true match is within rank k; INP = matches / rank of the last match; ties in similarity "
    "keep gallery order (stable sort); single-shot rank-1 = mean rank-1 over draws of a gallery "
    "holding one random item per person"
)
REPORTED_RANKS = (1, 5, 10, 20)


@dataclass
class EvaluationReport:
    """Metrics of one evaluation and everything needed to trust or redo them."""

    protocol: Protocol
    items: EvalItems
    scores: list[QueryScore]
    summary: MetricSummary
    source: str
    level: str
    model: dict[str, Any]
    seconds: float
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    single_shot: float | None = None
    single_shot_draws: int = 0
    rerank: RerankConfig | None = None

    def rank(self, k: int) -> float:
        return self.summary.rank(k)

    def to_dict(self) -> dict[str, Any]:
        unmatched = [self.items.paths[self.protocol.query[i]] for i in self.summary.unmatched]
        return {
            "format": "reid-search/evaluation/v1",
            "tool_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": self.source,
            "level": self.level,
            "protocol": self.protocol.name,
            "protocol_description": self.protocol.description,
            "ap_definition": AP_DEFINITION,
            "model": self.model,
            "n_queries": len(self.protocol.query),
            "n_queries_scored": self.summary.n_scored,
            "n_queries_without_match": len(unmatched),
            "queries_without_match": unmatched[:100],
            "n_gallery": len(self.protocol.gallery),
            **{f"rank{k}": round(self.rank(k), 6) for k in REPORTED_RANKS},
            "mAP": round(self.summary.mean_ap, 6),
            "mINP": round(self.summary.mean_inp, 6),
            "single_shot_rank1": None if self.single_shot is None else round(self.single_shot, 6),
            "single_shot_draws": self.single_shot_draws,
            "rerank": None if self.rerank is None else asdict(self.rerank),
            "cmc": [round(float(v), 6) for v in self.summary.cmc],
            "n_skipped_files": len(self.skipped),
            "skipped_files": self.skipped[:100],
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }


def score_protocol(
    items: EvalItems, protocol: Protocol, block: int = 512, rerank: RerankConfig | None = None
) -> list[QueryScore]:
    """Score every query of ``protocol`` (:func:`reid_search.data.metrics.score_items`); with
    ``rerank`` the query-gallery similarities are k-reciprocal re-ranked first (over all
    queries and gallery items at once)."""
    reranked = None
    if rerank:
        reranked = rerank_similarities(items.vectors[protocol.query], items.vectors[protocol.gallery], rerank)
    return score_items(items, protocol, block, reranked)


def single_shot_rank1(
    items: EvalItems, protocol: Protocol, draws: int = 10, seed: int = 0, rerank: RerankConfig | None = None
) -> float | None:
    """Mean rank-1 over ``draws`` galleries reduced to one random item per person (CUHK03 style).

    Distractors and junk stay in the gallery; queries are unchanged.
    """
    if draws <= 0:
        return None
    rng = np.random.default_rng(seed)
    gallery = protocol.gallery
    persons = items.persons[gallery]
    groups = [np.flatnonzero(persons == p) for p in np.unique(persons)]
    values = []
    for _ in range(draws):
        picked = np.sort(np.array([gallery[rng.choice(g)] for g in groups]))
        reduced = Protocol(protocol.name, protocol.description, protocol.query, picked)
        values.append(summarise(score_protocol(items, reduced, rerank=rerank), max_rank=1).rank(1))
    return float(np.mean(values))


# ---------------------------------------------------------------------- items
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


@dataclass(frozen=True)
class ProtocolKind:
    """One evaluation protocol a gallery or dataset can be scored with."""

    name: str
    applies: Callable[[EvalItems, bool], bool]  # (items, cameras chosen by the user) -> usable here?
    build: Callable[[EvalItems, list[int] | None, list[int] | None], Protocol]


def _has_market_splits(items: EvalItems, cameras_chosen: bool) -> bool:
    return (
        not cameras_chosen
        and items.splits is not None
        and {"query", "bounding_box_test"} <= set(items.splits)
    )


PROTOCOL_REGISTRY: dict[str, ProtocolKind] = {
    kind.name: kind
    for kind in (
        ProtocolKind("market1501", _has_market_splits, lambda items, q, g: market1501(items)),
        ProtocolKind("cross-camera", lambda items, chosen: True, cross_camera),
    )
}
AUTO_ORDER = ("market1501", "cross-camera")  # ``auto``: the first that applies
# mars-official needs MARS's own items (tracklets from info/): evaluate() builds it itself
PROTOCOLS = ("auto", *PROTOCOL_REGISTRY, "mars-official")


def choose_protocol(items: EvalItems, protocol: str, query_cameras, gallery_cameras) -> Protocol:
    """The protocol named, or for ``auto`` the first of :data:`AUTO_ORDER` that applies."""
    chosen = bool(query_cameras or gallery_cameras)
    names = AUTO_ORDER if protocol == "auto" else (protocol,)
    for name in names:
        kind = PROTOCOL_REGISTRY.get(name)
        if kind is not None and (kind.applies(items, chosen) or protocol != "auto"):
            return kind.build(items, query_cameras, gallery_cameras)
    raise ProtocolError(f"protocol {protocol!r} does not apply here (known: {', '.join(PROTOCOLS)})")


def gallery_source(source: str | Path, indexes_dir) -> Path | None:
    path = Path(source)
    if (path / MANIFEST_FILE).is_file():
        return path
    if not path.exists():
        candidate = resolve_gallery_path(str(source), indexes_dir)
        if (candidate / MANIFEST_FILE).is_file():
            return candidate
    return None


def _check_scorable(items: EvalItems, what: str, skipped: list) -> None:
    """A clear error, before any scoring, when there is nothing a protocol could score."""
    if len(items.vectors) == 0:
        raise ProtocolError(f"{what}: nothing to evaluate (no readable image; {len(skipped)} skipped)")
    if all(kind == KIND_UNLABELLED for kind in items.kinds):
        raise ProtocolError(
            f"{what}: unlabelled crops only; scoring needs to know who is who (a labelled dataset)"
        )


def evaluate(
    source: str | Path,
    embedder=None,
    *,
    protocol: str = "auto",
    layout: str | None = None,
    name_pattern: str | None = None,
    level: str = "image",
    frames_per_tracklet: int | None = DEFAULT_FRAMES_PER_TRACKLET,
    query_cameras: list[int] | None = None,
    gallery_cameras: list[int] | None = None,
    indexes_dir: str | Path | None = None,
    max_rank: int = 50,
    single_shot_draws: int = 10,
    progress: bool = True,
    rerank: RerankConfig | None = None,
) -> EvaluationReport:
    """Evaluate on a dataset folder (embedding it with ``embedder``) or on a built gallery.

    A gallery is evaluated from its stored vectors, with no model needed.
    """
    if protocol not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    started = time.perf_counter()
    notes: list[str] = []
    failures: list[str] = []
    gallery_path = gallery_source(source, indexes_dir)
    if gallery_path is not None:
        with Gallery.open(gallery_path) as gallery:
            items = items_from_gallery(gallery)
            _check_scorable(items, f"gallery {gallery.name}", gallery.skipped())
            level = gallery.level
            model = gallery.manifest["model"]
            failures = [f"{s['path']}: {s['reason']}" for s in gallery.skipped()]
            mars = None
            if protocol in ("auto", "mars-official") and not (query_cameras or gallery_cameras):
                mars = _gallery_mars_order(gallery, items)
            if mars is not None:
                items = _subset(items, mars[0])
                chosen = mars_official(items, mars[1])
            elif protocol == "mars-official":
                raise ProtocolError(
                    f"{gallery_path}: mars-official needs a tracklet gallery of a MARS root with info/"
                )
            else:
                chosen = choose_protocol(items, protocol, query_cameras, gallery_cameras)
        notes.append(f"vectors read from gallery {gallery_path} (its SQLite rows)")
    else:
        from ..embedding.embedder import Embedder
        from ..gallery import model_info

        embedder = embedder or Embedder()
        model = model_info(embedder)
        scan = scan_dataset(source, layout, name_pattern)
        use_mars = scan.layout == "mars" and mars_info_dir(scan.root) is not None
        if protocol == "mars-official" or (
            protocol == "auto" and use_mars and not (query_cameras or gallery_cameras)
        ):
            items, query_rows, failures = mars_official_items(
                scan.root, embedder, frames_per_tracklet, progress
            )
            chosen, level = mars_official(items, query_rows), "tracklet"
        else:
            splits = (
                ["query", "bounding_box_test"]
                if {"query", "bounding_box_test"} <= set(scan.splits)
                else default_gallery_splits(scan)
            )
            scan.records = [r for r in scan.records if r.split in splits]
            failures = [f"{s.path}: {s.reason}" for s in scan.skipped]
            items, embed_failures = items_from_scan(scan, embedder, level, frames_per_tracklet, progress)
            failures += embed_failures
            _check_scorable(items, str(source), failures)
            chosen = choose_protocol(items, protocol, query_cameras, gallery_cameras)
        if level == "tracklet":
            notes.append(
                f"tracklet vectors: mean of up to {frames_per_tracklet} evenly spaced frames, re-normalised"
            )
    scores = score_protocol(items, chosen, rerank=rerank)
    summary = summarise(scores, max_rank)
    single = single_shot_rank1(items, chosen, single_shot_draws, rerank=rerank)
    if rerank:
        notes.append(
            f"k-reciprocal re-ranking (k1={rerank.k1}, k2={rerank.k2}, lambda={rerank.lambda_value}) "
            "over all queries and gallery items"
        )
    if summary.unmatched:
        notes.append(
            f"{len(summary.unmatched)} queries had no true match in the gallery: "
            "they are listed and left out of the averages"
        )
    return EvaluationReport(
        chosen,
        items,
        scores,
        summary,
        str(source),
        level,
        model,
        time.perf_counter() - started,
        failures,
        notes,
        single,
        single_shot_draws if single is not None else 0,
        rerank,
    )
