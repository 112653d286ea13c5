"""Evaluate a model on a dataset folder, or a built gallery, under a re-ID protocol.

``evaluate`` picks the protocol from what the source holds (``protocol="auto"``):
MARS ``info/`` files -> ``mars-official``; Market-1501 ``query/`` -> ``market1501``;
otherwise ``cross-camera`` (``cross-tracklet`` when no cameras are known). See
:mod:`reid_search.evaluation.protocols` for the matching rule and
:mod:`reid_search.evaluation.metrics` for the metric definitions. The kinds are the
:data:`PROTOCOLS` registry; ``auto`` tries them in order.

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
from ..gallery import DEFAULT_FRAMES_PER_TRACKLET, MANIFEST_FILE, Gallery, make_units, resolve_gallery_path
from ..progress import Progress
from ..registry import Registry
from ..search.rerank import RerankConfig, rerank_similarities
from .metrics import MetricSummary, QueryScore, score_items, summarise
from .protocols import (
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
    """Score every query of ``protocol`` (:func:`reid_search.evaluation.metrics.score_items`); with
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


@dataclass
class EvalRequest:
    """What the user asked of an evaluation, shared by the protocol kinds that try it (the
    dataset's ordinary items are embedded once, however many kinds look at them)."""

    embedder: Any
    level: str
    frames_per_tracklet: int | None
    progress: bool
    query_cameras: list[int] | None
    gallery_cameras: list[int] | None
    named: bool  # the user named the protocol: it is used if it can be at all
    _items: tuple[EvalItems, list[str]] | None = None

    @property
    def cameras_chosen(self) -> bool:
        return bool(self.query_cameras or self.gallery_cameras)

    def dataset_items(self, scan: DatasetScan, source: str) -> tuple[EvalItems, list[str]]:
        """The scan's query + test splits (else its gallery splits) embedded: (items, failures)."""
        if self._items is None:
            splits = (
                ["query", "bounding_box_test"]
                if {"query", "bounding_box_test"} <= set(scan.splits)
                else default_gallery_splits(scan)
            )
            scan.records = [r for r in scan.records if r.split in splits]
            failures = [f"{s.path}: {s.reason}" for s in scan.skipped]
            items, embed_failures = items_from_scan(
                scan, self.embedder, self.level, self.frames_per_tracklet, self.progress
            )
            _check_scorable(items, source, failures + embed_failures)
            self._items = (items, failures + embed_failures)
        return self._items


@dataclass
class Chosen:
    """A protocol kind's answer: the items it scores, the protocol, their level, failures."""

    items: EvalItems
    protocol: Protocol
    level: str
    failures: list[str] = field(default_factory=list)


class ProtocolKind:
    """One evaluation protocol. ``auto`` tries the registered kinds in order and takes the first
    whose ``for_gallery`` / ``for_dataset`` answers; a named kind is used if it can be at all.
    Ordinary kinds only say when they apply (:meth:`applies`) and how to ``build`` the protocol
    over the usual items; a kind with items of its own (mars-official) overrides the ``for_``s."""

    name: str = ""
    needs: str = ""  # what a source must hold for this kind (the error when it cannot be used)

    def applies(self, items: EvalItems, cameras_chosen: bool) -> bool:
        return True

    def build(self, items: EvalItems, request: EvalRequest) -> Protocol:
        raise NotImplementedError

    def _choose(
        self, items: EvalItems, request: EvalRequest, level: str, failures: list[str]
    ) -> Chosen | None:
        if request.named or self.applies(items, request.cameras_chosen):
            return Chosen(items, self.build(items, request), level, failures)
        return None

    def for_gallery(self, gallery: Gallery, items: EvalItems, request: EvalRequest) -> Chosen | None:
        return self._choose(items, request, gallery.level, [])

    def for_dataset(self, scan: DatasetScan, source: str, request: EvalRequest) -> Chosen | None:
        items, failures = request.dataset_items(scan, source)
        return self._choose(items, request, request.level, failures)


PROTOCOLS: Registry[ProtocolKind] = Registry("protocol", ProtocolError)  # auto: tried in this order


class MarsOfficial(ProtocolKind):
    """MARS's own test protocol: the official tracklets and queries of its ``info/`` files."""

    name, needs = "mars-official", "a MARS root with info/ (or a tracklet gallery built from one)"

    def for_gallery(self, gallery, items, request):
        mars = None if request.cameras_chosen else _gallery_mars_order(gallery, items)
        if mars is None:
            return None
        items = _subset(items, mars[0])
        return Chosen(items, mars_official(items, mars[1]), gallery.level)

    def for_dataset(self, scan, source, request):
        official = scan.layout == "mars" and mars_info_dir(scan.root) is not None
        if not request.named and (request.cameras_chosen or not official):
            return None
        items, query_rows, failures = mars_official_items(
            scan.root, request.embedder, request.frames_per_tracklet, request.progress
        )
        return Chosen(items, mars_official(items, query_rows), "tracklet", failures)


class Market1501(ProtocolKind):
    """Market-1501's own split: ``query/`` against ``bounding_box_test/``."""

    name, needs = "market1501", "query/ and bounding_box_test/ splits"

    def applies(self, items, cameras_chosen):
        return (
            not cameras_chosen
            and items.splits is not None
            and {"query", "bounding_box_test"} <= set(items.splits)
        )

    def build(self, items, request):
        return market1501(items)


class CrossCamera(ProtocolKind):
    """Every item queries the rest; matches of the query's own camera (or tracklet) are junk."""

    name, needs = "cross-camera", "labelled items"

    def build(self, items, request):
        return cross_camera(items, request.query_cameras, request.gallery_cameras)


for _kind in (MarsOfficial(), Market1501(), CrossCamera()):
    PROTOCOLS.register(_kind.name, _kind)


def choose_protocol(
    kinds: list[ProtocolKind], source: str, answer: Callable[[ProtocolKind], Chosen | None]
) -> Chosen:
    """The first kind's answer (``kinds``: the one named, or all for ``auto``)."""
    for kind in kinds:
        chosen = answer(kind)
        if chosen is not None:
            return chosen
    kind = kinds[0] if len(kinds) == 1 else None
    why = f"protocol {kind.name} needs {kind.needs}" if kind else "no protocol applies"
    raise ProtocolError(f"{source}: {why} (known: auto, {', '.join(PROTOCOLS.names())})")


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
    kinds = list(PROTOCOLS.values()) if protocol == "auto" else [PROTOCOLS.get(protocol)]
    started = time.perf_counter()
    notes: list[str] = []
    gallery_path = gallery_source(source, indexes_dir)
    request = EvalRequest(
        embedder,
        level,
        frames_per_tracklet,
        progress,
        query_cameras,
        gallery_cameras,
        named=protocol != "auto",
    )
    if gallery_path is not None:
        with Gallery.open(gallery_path) as gallery:
            items = items_from_gallery(gallery)
            _check_scorable(items, f"gallery {gallery.name}", gallery.skipped())
            model = gallery.manifest["model"]
            answer = choose_protocol(
                kinds, str(gallery_path), lambda k: k.for_gallery(gallery, items, request)
            )
            failures = [f"{s['path']}: {s['reason']}" for s in gallery.skipped()]
        notes.append(f"vectors read from gallery {gallery_path} (its SQLite rows)")
    else:
        from ..embedding.embedder import Embedder
        from ..gallery import model_info

        request.embedder = embedder or Embedder()
        model = model_info(request.embedder)
        scan = scan_dataset(source, layout, name_pattern)
        answer = choose_protocol(kinds, str(source), lambda k: k.for_dataset(scan, str(source), request))
        failures = answer.failures
        if answer.level == "tracklet":
            notes.append(
                f"tracklet vectors: mean of up to {frames_per_tracklet} evenly spaced frames, re-normalised"
            )
    items, chosen, level = answer.items, answer.protocol, answer.level
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
