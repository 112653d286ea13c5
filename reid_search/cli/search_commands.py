"""Commands that ask galleries and score them: query, compare, evaluate, export-clip, demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    EngineOpt,
    IndexesOpt,
    ModelOpt,
    NamePatternOpt,
    QuietOpt,
    RayActorsOpt,
    RayAddressOpt,
    _fail,
    _fresh_folder,
    _make_embedder,
    app,
    fits_line,
    friendly_errors,
)


@app.command()
@friendly_errors
def query(
    images: Annotated[
        list[Path], typer.Argument(help="Query image(s) or folder(s); several form one tracklet query.")
    ],
    index_name: Annotated[
        str | None, typer.Option("--index", "-i", help="Gallery name or folder [default: the only one].")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Identities to return.")] = 10,
    matches: Annotated[int, typer.Option(help="Best gallery matches shown per identity.")] = 3,
    camera: Annotated[
        list[int] | None, typer.Option(help="Search only entries of this camera (repeatable).")
    ] = None,
    exclude_camera: Annotated[
        list[int] | None, typer.Option(help="Ignore gallery entries of this camera (repeatable).")
    ] = None,
    after: Annotated[
        str | None, typer.Option(help="Only entries seen at or after this time (2026-11-25T08:00).")
    ] = None,
    before: Annotated[str | None, typer.Option(help="Only entries seen at or before this time.")] = None,
    same_camera_rule: Annotated[
        bool,
        typer.Option(
            help="Ignore the query person's own camera, as evaluation does (reads MARS/Market names)."
        ),
    ] = False,
    rerank: Annotated[
        bool, typer.Option(help="k-reciprocal re-ranking of the shortlist (scores become re-ranked).")
    ] = False,
    min_score: Annotated[
        float | None,
        typer.Option(help="Same-person threshold on cosine similarity [default: the model card's]."),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(help="Only entries that fit this description ('backpack'; see `find --help`)."),
    ] = None,
    where_min: Annotated[float, typer.Option(help="... with at least this probability of fitting it.")] = 0.5,
    by: Annotated[
        str,
        typer.Option(help="auto (a person, cluster, tracklet or entry), or identity (after `identities`)."),
    ] = "auto",
    plot: Annotated[
        Path | None,
        typer.Option(help="Draw the query beside its top-k answers to this PNG (green/red when labelled)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (schema reid-search/query/v2).")
    ] = False,
    model: ModelOpt = None,
    indexes_dir: IndexesOpt = None,
) -> None:
    """Rank the gallery's identities by likeness to the query image(s).

    Unlabelled entries are answered one by one. Filters (--camera, --exclude-camera,
    --after, --before) apply inside the search: K answers whenever K pass.
    """
    from ..gallery import Gallery
    from ..search.service import QueryOptions, answer_query, embedder_for_gallery

    options = QueryOptions(
        top_k, matches, tuple(camera or ()), tuple(exclude_camera or ()), after, before,
        same_camera_rule, rerank, min_score, where, where_min, by,
    )  # fmt: skip
    if plot:
        from ..figures import check_figure_path

        check_figure_path(plot)  # before the search, not after it
    with Gallery.open(index_name, indexes_dir) as gallery:
        result = answer_query(gallery, embedder_for_gallery(gallery, model), images, options)
    if plot:
        from ..data.layouts import parse_any_name
        from ..evaluation.rankplot import draw_rank_rows, query_rank_row

        named = parse_any_name(result.images[0])
        row = query_rank_row(result, named.person if named else None)
        draw_rank_rows([row], plot, f"gallery {result.gallery}")
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "plot": str(plot) if plot else None}, indent=2))
        return
    if plot:
        typer.echo(f"figure: {plot}")
    for line in result.skipped:
        typer.echo(f"skipped {line}", err=True)
    typer.echo(f"query: {len(result.images)} image(s) against gallery {result.gallery}")
    if result.filter:
        typer.echo("filter: " + ", ".join(f"{k} {v}" for k, v in result.filter.items()))
    flag = {True: "yes", False: "no", None: "?"}
    columns = "best matches (similarity, camera, tracklet or time, path)"
    typer.echo(f"{'rank':>4}  {'person':<12} {'score':>6} {'match':>5} {'conf':>4}  {columns}")
    for hit in result.identities:
        who = hit.key.replace(":", " ", 1).removeprefix("person ")
        conf = "  - " if hit.confidence is None else f"{100 * hit.confidence:3.0f}%"
        for j, m in enumerate(hit.matches):
            head = (
                f"{hit.rank:>4}  {who:<12} {hit.score:6.3f} {flag[hit.match]:>5} {conf}"
                if j == 0
                else " " * 36
            )
            camera = "c-" if m.camera is None else f"c{m.camera}"
            when = m.time or ("-" if m.tracklet is None else f"t{m.tracklet}")
            where = m.path
            if "video" in m.extra:  # a crop cut from video: the video, its frame and box
                box = ",".join(str(v) for v in m.extra.get("box", []))
                where = f"{Path(m.extra['video']).name} frame {m.extra.get('frame')} box {box}"
            typer.echo(f"{head}  {m.similarity:.3f}  {camera}  {when}  {where}")
        if hit.attributes:
            typer.echo(f"{'':36}  fits: {fits_line(hit.attributes)}")
        if hit.cluster:
            cams = ",".join(map(str, hit.cluster["cameras"])) or "-"
            typer.echo(f"{'':36}  cluster of {hit.cluster['size']} entries, cameras {cams}")
    if not result.identities:
        typer.echo("no gallery entry passes the filter" if result.filter else "the gallery is empty")
    elif result.in_gallery is False and result.open_set and result.threshold_source.endswith("rule"):
        best = result.identities[0].confidence or 0.0
        typer.echo(
            f"no match: the best answer's confidence {100 * best:.0f}% is under the accept level "
            f"{100 * result.open_set['accept']:.0f}% ({result.threshold_source}); "
            "this person is probably not in the gallery"
        )
    elif result.in_gallery is False:
        typer.echo(
            f"no match: nothing in the gallery reaches the same-person threshold {result.threshold:.3f} "
            f"({result.threshold_source}); this person is probably not in the gallery"
        )


@app.command("export-clip")
@friendly_errors
def export_clip_command(
    entry: Annotated[
        int, typer.Argument(help="The match's faiss_id (query --json: results[].matches[].faiss_id).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="match.mp4 (a clip) or match.jpg (its frame).")],
    index_name: Annotated[
        str | None, typer.Option("--index", "-i", help="Gallery name or folder [default: the only one].")
    ] = None,
    seconds: Annotated[
        float, typer.Option(min=0, help="Clip: seconds of video either side of the match.")
    ] = 2.0,
    indexes_dir: IndexesOpt = None,
) -> None:
    """A gallery entry cut from video, shown where it was filmed: its frame (box drawn) or a clip."""
    from ..gallery import Gallery
    from ..video.clips import CLIP_SUFFIXES, export_clip

    if out.suffix.lower() not in CLIP_SUFFIXES:
        _fail(f"{out}: write a clip as .mp4 or its frame as .jpg / .png")
    if not 0 <= entry < 2**63:
        _fail(f"entry {entry}: gallery entries are numbered 0 to 2^63 - 1")
    with Gallery.open(index_name, indexes_dir) as gallery:
        where = gallery.video_source(entry)
    written = export_clip(where["video"], where["frame"], where["box"], out, seconds, where["label"])
    typer.echo(f"written: {written} ({Path(where['video']).name}, frame {where['frame']})")


@app.command()
@friendly_errors
def compare(
    image_a: Annotated[Path, typer.Argument(help="First image.")],
    image_b: Annotated[Path, typer.Argument(help="Second image.")],
    plot: Annotated[Path | None, typer.Option(help="Write a side-by-side figure to this PNG.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    model: ModelOpt = None,
) -> None:
    """Similarity of two images and a same/different verdict at the model's threshold."""
    from ..embedding.embedder import Embedder
    from ..search.compare import compare_images, plot_comparison

    comparison = compare_images(Embedder(model), image_a, image_b)
    if plot:
        plot_comparison(comparison, plot)
    if as_json:
        typer.echo(json.dumps({**comparison.to_dict(), "plot": str(plot) if plot else None}, indent=2))
        return
    threshold = "none" if comparison.threshold is None else f"{comparison.threshold:.4f}"
    typer.echo(f"similarity {comparison.similarity:.4f} (threshold {threshold}): {comparison.verdict}")
    if plot:
        typer.echo(f"figure: {plot}")


@app.command()
@friendly_errors
def evaluate(
    source: Annotated[
        str, typer.Argument(help="Dataset folder, or a gallery name/folder (uses its stored vectors).")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Report folder [default: runs/eval-<name>, or -2, -3... if taken].")
    ] = None,
    protocol: Annotated[str, typer.Option(help="auto, cross-camera, market1501 or mars-official.")] = "auto",
    level: Annotated[str, typer.Option(help="Dataset folders: image or tracklet.")] = "image",
    layout: Annotated[str | None, typer.Option(help="Force a layout [default: detect].")] = None,
    name_pattern: NamePatternOpt = None,
    query_camera: Annotated[
        list[int] | None, typer.Option(help="Cross-camera: queries only from this camera (repeatable).")
    ] = None,
    gallery_camera: Annotated[
        list[int] | None, typer.Option(help="Cross-camera: gallery only from this camera (repeatable).")
    ] = None,
    frames_per_tracklet: Annotated[
        int, typer.Option(min=1, help="Tracklet level: frames pooled per tracklet at most.")
    ] = 32,
    single_shot_draws: Annotated[
        int, typer.Option(min=0, help="Single-shot rank-1: draws of one gallery item per person (0 = off).")
    ] = 10,
    rerank: Annotated[
        bool, typer.Option(help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3) before scoring.")
    ] = False,
    flip_tta: Annotated[
        bool, typer.Option(help="Dataset folders: average each image's vector with its mirror image's.")
    ] = False,
    plot_ranks: Annotated[
        int, typer.Option(help="Also draw the N worst and N best queries beside their top-10.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics JSON.")] = False,
    model: ModelOpt = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_actors: RayActorsOpt = None,
    indexes_dir: IndexesOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Rank-1/5/10/20, mAP, mINP and a CMC curve (PNG, CSV, JSON)."""
    from ..evaluation.report import format_summary, write_report
    from ..evaluation.run import evaluate as run_evaluation
    from ..evaluation.run import gallery_source
    from ..search.rerank import RerankConfig

    embedder = None
    if not gallery_source(source, indexes_dir):
        embedder = _make_embedder(engine, model, flip=flip_tta, address=ray_address, actors=ray_actors)
    report = run_evaluation(
        source,
        embedder,
        protocol=protocol,
        layout=layout,
        name_pattern=name_pattern,
        level=level,
        frames_per_tracklet=frames_per_tracklet,
        query_cameras=query_camera,
        gallery_cameras=gallery_camera,
        indexes_dir=indexes_dir,
        single_shot_draws=single_shot_draws,
        progress=not quiet,
        rerank=RerankConfig() if rerank else None,
    )
    out = out or _fresh_folder(Path("runs") / f"eval-{Path(source).name}")
    paths = write_report(report, out, plot_ranks)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    typer.echo(format_summary(report))
    typer.echo(f"report     {paths['metrics_json']}  {paths['cmc_csv']}  {paths['per_query_csv']}")
    typer.echo(f"CMC plot   {paths['cmc_png']}")
    if plot_ranks:
        typer.echo(f"rank lists {paths['ranks_worst_png']}  {paths['ranks_best_png']}")


@app.command()
@friendly_errors
def demo(
    people: Annotated[int, typer.Option(min=2, help="Synthetic identities.")] = 40,
    cameras: Annotated[int, typer.Option(min=2, help="Synthetic cameras.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed of the generator.")] = 0,
    model: ModelOpt = None,
    indexes_dir: IndexesOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Zero-download tour: synthetic people -> gallery -> queries -> rank-1/mAP and a CMC plot."""
    from ..demo import run_demo

    run_demo(indexes_dir, people, cameras, seed, model, echo=typer.echo, progress=not quiet)
