"""Write an evaluation to disk: metrics JSON, CMC CSV, per-query CSV and the CMC curve PNG.

Usage::

    from reid_search.evaluation.report import write_report
    paths = write_report(report, "runs/eval-cuhk")
    sorted(paths)
    # ['cmc_csv', 'cmc_png', 'metrics_json', 'per_query_csv']
"""

from __future__ import annotations

import csv
from pathlib import Path

from .._files import write_json_atomic
from ..figures import pyplot, save_figure
from .run import EvaluationReport


def plot_cmc(curves: dict[str, list[float]], out: str | Path, title: str = "CMC") -> Path:
    """Draw one or more CMC curves (label -> values at ranks 1..N) to a PNG."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
    for label, values in curves.items():
        ranks = range(1, len(values) + 1)
        ax.plot(ranks, [100 * v for v in values], marker="o", markersize=2.5, label=label)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(1, max(len(v) for v in curves.values()))
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, out)


def write_report(report: EvaluationReport, out_dir: str | Path, plot_ranks: int = 0) -> dict[str, Path]:
    """Write ``metrics.json``, ``cmc.csv``, ``per_query.csv`` and ``cmc.png`` into ``out_dir``;
    with ``plot_ranks`` N also ``ranks-worst.png`` / ``ranks-best.png``: the N queries of
    lowest and highest AP beside their top-10 (:mod:`reid_search.evaluation.rankplot`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = report.to_dict()
    paths = {
        "metrics_json": out / "metrics.json",
        "cmc_csv": out / "cmc.csv",
        "per_query_csv": out / "per_query.csv",
        "cmc_png": out / "cmc.png",
    }
    write_json_atomic(paths["metrics_json"], data)
    with open(paths["cmc_csv"], "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["rank", "cmc"])
        writer.writerows((k, v) for k, v in enumerate(data["cmc"], start=1))
    with open(paths["per_query_csv"], "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["query", "person", "camera", "first_match_rank", "ap", "inp", "n_true_matches"])
        items = report.items
        for q, score in zip(report.protocol.query, report.scores, strict=True):
            writer.writerow(
                [
                    csv_safe(items.paths[q]),
                    csv_safe(items.persons[q]),
                    int(items.cameras[q]),
                    score.first_hit or "",
                    "" if score.ap is None else f"{score.ap:.6f}",
                    "" if score.inp is None else f"{score.inp:.6f}",
                    score.n_positives,
                ]
            )
    name = report.model.get("name", "model")
    label = f"{name}: R1 {100 * report.rank(1):.1f}%, mAP {100 * report.summary.mean_ap:.1f}%"
    plot_cmc(
        {label: data["cmc"]},
        paths["cmc_png"],
        title=f"CMC, {report.protocol.name} protocol, {data['n_queries_scored']} queries",
    )
    if plot_ranks > 0:
        from .rankplot import draw_rank_rows, evaluation_rank_rows

        for which, worst in (("worst", True), ("best", False)):
            rows = evaluation_rank_rows(report, plot_ranks, worst=worst)
            title = f"{which} {len(rows)} queries by AP ({name}; green: same person, red: another)"
            paths[f"ranks_{which}_png"] = draw_rank_rows(rows, out / f"ranks-{which}.png", title)
    return paths


def csv_safe(text) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula (a leading ``= + - @`` is quoted).

    >>> csv_safe("=1+2"), csv_safe("@SUM(A1)"), csv_safe("0744")
    ("'=1+2", "'@SUM(A1)", '0744')
    """
    text = str(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def format_summary(report: EvaluationReport) -> str:
    """A few readable lines for the terminal."""
    d = report.to_dict()
    lines = [
        f"protocol   {d['protocol']} ({d['level']} level)",
        f"queries    {d['n_queries_scored']} scored of {d['n_queries']}"
        + (
            f" ({d['n_queries_without_match']} without a true match, listed in metrics.json)"
            if d["n_queries_without_match"]
            else ""
        ),
        f"gallery    {d['n_gallery']}",
        "rank-1 {:.2f}%  rank-5 {:.2f}%  rank-10 {:.2f}%  rank-20 {:.2f}%".format(
            *(100 * d[f"rank{k}"] for k in (1, 5, 10, 20))
        ),
        f"mAP {100 * d['mAP']:.2f}%  mINP {100 * d['mINP']:.2f}%",
    ]
    if d["single_shot_rank1"] is not None:
        lines.append(
            f"single-shot rank-1 {100 * d['single_shot_rank1']:.2f}% (mean of {d['single_shot_draws']} draws)"
        )
    if d["n_skipped_files"]:
        lines.append(f"skipped    {d['n_skipped_files']} unreadable files (listed in metrics.json)")
    return "\n".join(lines)
