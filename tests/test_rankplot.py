"""Rank-list pictures: the right gallery items, in the metrics' order, coloured by correctness."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from reid_search.cli import app
from reid_search.evaluation.metrics import summarise
from reid_search.evaluation.protocols import EvalItems, cross_camera
from reid_search.evaluation.rankplot import COLOURS, evaluation_rank_rows
from reid_search.evaluation.run import EvaluationReport, score_protocol

runner = CliRunner()


def report_of(items: EvalItems) -> EvaluationReport:
    protocol = cross_camera(items, None, None)
    scores = score_protocol(items, protocol)
    return EvaluationReport(protocol, items, scores, summarise(scores), "synthetic", "image", {}, 0.0)


def test_rows_rank_like_the_metrics_without_junk_and_mark_who_is_right():
    # a: two on camera 1, one on camera 2; b: one on camera 2 that looks like a
    vectors = np.array([[1, 0], [0.99, 0.14], [0.6, 0.8], [0.8, 0.6]], np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = EvalItems.from_labels(vectors, ["a", "a", "a", "b"], [1, 1, 2, 2], paths=["q", "a1", "a2", "b2"])
    report = report_of(items)
    (worst,) = evaluation_rank_rows(report, 1, worst=True, k=5)
    assert worst.query_path == "q" and "AP 0.50" in worst.query_caption
    # a1 (same person, same camera) is junk: never shown; b2 (wrong) outranks a2 (right)
    assert [(r.path, r.correct) for r in worst.ranked] == [("b2", False), ("a2", True)]
    sims = [r.similarity for r in worst.ranked]
    assert sims == sorted(sims, reverse=True)


def has_colour(png, hex_colour: str) -> bool:
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3).astype(int)
    return bool((np.abs(pixels - rgb).sum(1) < 30).any())


def test_query_plot_and_evaluate_plot_ranks_draw_green_and_red(synth_root, indexes_dir, tmp_path):
    assert runner.invoke(app, ["index", str(synth_root), "--name", "s", "-q"]).exit_code == 0
    probe = next(p for p in sorted(synth_root.rglob("*.jpg")) if p.name.startswith("0003C1"))
    plot = tmp_path / "q.png"
    result = runner.invoke(app, ["query", str(probe), "--index", "s", "-k", "5", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert has_colour(plot, COLOURS[True]) and has_colour(plot, COLOURS[False])  # 0003 right, others not
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "s", "--out", str(out), "--plot-ranks", "2"])
    assert result.exit_code == 0, result.output
    best, worst = out / "ranks-best.png", out / "ranks-worst.png"
    assert has_colour(best, COLOURS[True]) and has_colour(worst, COLOURS[False])
    assert Image.open(best).height > Image.open(plot).height  # two query rows, not one
