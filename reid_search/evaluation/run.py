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
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..data.layouts import scan_dataset
from ..gallery import DEFAULT_FRAMES_PER_TRACKLET, MANIFEST_FILE, Gallery, resolve_gallery_path
from ..search.rerank import RerankConfig, rerank_similarities
from .items import _check_scorable, items_from_gallery
from .kinds import PROTOCOLS, EvalRequest, choose_protocol
from .metrics import MetricSummary, QueryScore, score_items, summarise
from .protocols import (
    EvalItems,
    Protocol,
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


def gallery_source(source: str | Path, indexes_dir) -> Path | None:
    path = Path(source)
    if (path / MANIFEST_FILE).is_file():
        return path
    if not path.exists():
        candidate = resolve_gallery_path(str(source), indexes_dir)
        if (candidate / MANIFEST_FILE).is_file():
            return candidate
    return None


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
