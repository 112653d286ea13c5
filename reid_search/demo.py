"""The zero-download demo: synthetic pedestrians -> gallery -> queries -> evaluation -> CMC plot.

Usage::

    from reid_search.demo import run_demo
    result = run_demo("indexes", echo=print)
    result.report.rank(1) > 0
    # True
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .data.layouts import scan_dataset
from .data.synthetic import generate_dataset
from .embedding.embedder import Embedder
from .evaluation.report import format_summary, write_report
from .evaluation.run import EvaluationReport, evaluate
from .gallery import build_gallery, default_indexes_dir
from .search.query import QueryResult, search_gallery


@dataclass
class DemoResult:
    data_dir: Path
    gallery_dir: Path
    queries: list[QueryResult]
    report: EvaluationReport
    report_paths: dict[str, Path]


def run_demo(
    indexes_dir: str | Path | None = None,
    n_people: int = 40,
    n_cameras: int = 3,
    seed: int = 0,
    model: str | Path | None = None,
    echo: Callable[[str], None] = print,
    progress: bool = True,
) -> DemoResult:
    """Generate a synthetic set, index it as gallery ``demo``, query it and evaluate it."""
    base = Path(indexes_dir) if indexes_dir else default_indexes_dir()
    data_dir = base / "demo-data"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    generate_dataset(data_dir, n_people=n_people, n_cameras=n_cameras, frames_per_tracklet=4, seed=seed)
    echo(f"1. generated {n_people} synthetic people x {n_cameras} cameras x 4 frames in {data_dir}")

    embedder = Embedder(model)
    gallery, build = build_gallery(
        data_dir, name="demo", embedder=embedder, rebuild=True, indexes_dir=base, progress=progress
    )
    echo(
        f"2. indexed {build.added} images into {gallery.path} "
        f"({build.images_per_second:.0f} images/s, model {embedder.card.name})"
    )

    records = scan_dataset(data_dir).records
    probes = [r for r in records if r.camera == 1 and r.frame == 1][:3]
    queries = []
    echo("3. who is this? (queries from camera 1; the same person's camera-1 images are excluded)")
    for probe in probes:
        result = search_gallery(gallery, embedder, [probe.path], top_k=3, same_camera_rule=True)
        queries.append(result)
        ranked = ", ".join(f"{h.person} ({h.score:.3f})" for h in result.identities)
        echo(f"   {Path(probe.path).name} (person {probe.person}) -> {ranked}")
    gallery.close()

    report = evaluate(gallery.path, protocol="cross-camera", progress=progress)
    paths = write_report(report, gallery.path / "evaluation")
    echo("4. evaluation of the gallery:")
    echo("   " + format_summary(report).replace("\n", "\n   "))
    echo(f"   CMC plot: {paths['cmc_png']}")
    return DemoResult(data_dir, gallery.path, queries, report, paths)
