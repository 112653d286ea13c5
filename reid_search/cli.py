"""The ``reid-search`` command line: a thin typer shell over the Python API.

Every command turns a known failure (bad folder, bad image, wrong model, unknown layout)
into one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import __version__

app = typer.Typer(
    help="Person re-identification gallery search: index pedestrian crops, ask 'who is this?', "
    "and measure rank-1/mAP honestly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model",
        "-m",
        help="A model file (.keras, .onnx, OpenVINO .xml, .tflite; card beside it) or a card naming one "
        "[default: the package's model].",
    ),
]
IndexesOpt = Annotated[
    Path | None,
    typer.Option("--indexes-dir", help="Where galleries live [default: $REID_SEARCH_INDEXES or ./indexes]."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
EngineOpt = Annotated[
    str,
    typer.Option("--engine", help="Where embedding runs: local, or ray (pip install 'reid-search[ray]')."),
]
RayAddressOpt = Annotated[
    str | None, typer.Option("--ray-address", help="Ray: a running cluster (auto, ray://host:10001).")
]
RayActorsOpt = Annotated[
    int | None, typer.Option("--ray-actors", help="Ray: embedding actors [default: the cluster's CPUs].")
]
NamePatternOpt = Annotated[
    str | None,
    typer.Option(
        "--name-pattern",
        "--camera-pattern",
        help="Regex searched in file names: (?P<cam>...) camera, (?P<time>...) time, "
        "other named groups kept as metadata.",
    ),
]


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def friendly_errors(func):
    """Project errors (:class:`~reid_search.errors.ReidSearchError`) become one line on stderr
    and exit code 2; anything else is a bug: its traceback, a hint to report it, exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from .errors import ReidSearchError

        try:
            return func(*args, **kwargs)
        except ReidSearchError as exc:
            _fail(str(exc))
        except ModuleNotFoundError as exc:  # a missing extra: its message names it
            _fail(str(exc))
        except KeyboardInterrupt:
            typer.echo("interrupted: what was committed is kept; run the same command to resume", err=True)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception:
            import traceback

            traceback.print_exc()
            typer.echo(
                "reid-search hit an unexpected error (a bug, not your input): please report it "
                f"with the traceback above (reid-search {__version__})",
                err=True,
            )
            raise typer.Exit(1) from None

    return wrapper


def _given_options(ctx: typer.Context) -> set[str]:
    """Names of the parameters the user set on the command line or by environment variable."""
    explicit = ("COMMANDLINE", "ENVIRONMENT")  # compared by name: typer may bring its own click
    return {name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", "") in explicit}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"reid-search {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", help="Let TensorFlow, LiteRT, ONNX Runtime log their start-up on stderr."),
    ] = False,
) -> None:
    """reid-search: who is this person, and how well can we tell?"""
    if verbose:  # read when the runtimes load, which is always later than this
        os.environ["REID_SEARCH_VERBOSE"] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"


@app.command()
@friendly_errors
def index(
    data: Annotated[
        list[Path],
        typer.Argument(
            help="Dataset folder (MARS, Market-1501, Kaggle MARS, one folder per identity), any "
            "folder of unlabelled crops, or video files (.mp4, .avi, .mkv, ...; --layout frames: "
            "folders of frame images)."
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Gallery name [default: the folder's name].")
    ] = None,
    model: ModelOpt = None,
    level: Annotated[
        str, typer.Option(help="image: a vector per image; tracklet: a mean-pooled vector per tracklet.")
    ] = "image",
    layout: Annotated[
        str | None,
        typer.Option(
            help="mars, kaggle-mars, market1501, unlabelled, generic, or frames (folders of video "
            "frames) [default: detect; video files are always video]."
        ),
    ] = None,
    split: Annotated[
        list[str] | None, typer.Option(help="Split folder(s) to index [default: the test split].")
    ] = None,
    name_pattern: NamePatternOpt = None,
    metadata: Annotated[
        Path | None,
        typer.Option(help="CSV sidecar: a path column plus any (camera, time, site, ...); wins over names."),
    ] = None,
    rebuild: Annotated[bool, typer.Option(help="Delete the gallery and start over.")] = False,
    frames_per_tracklet: Annotated[
        int, typer.Option(help="Tracklet level: at most this many evenly spaced frames.")
    ] = 32,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 64,
    checkpoint_seconds: Annotated[
        float, typer.Option(help="Update the manifest's counts at least this often.")
    ] = 30.0,
    index_type: Annotated[
        str | None,
        typer.Option(help="FAISS factory string (Flat, HNSW32, IVF4096,PQ32, ...) or auto [default: auto]."),
    ] = None,
    vectors: Annotated[
        Path | None,
        typer.Option(help="Precomputed vectors (.npz from 'embed' of DATA) instead of embedding."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the build report as JSON.")] = False,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_actors: RayActorsOpt = None,
    indexes_dir: IndexesOpt = None,
    quiet: QuietOpt = False,
    detector: Annotated[
        Path | None,
        typer.Option(
            envvar="REID_SEARCH_DETECTOR",
            help="Video: a person detector card [default: benchmarks/detectors/person-detection-0202].",
        ),
    ] = None,
    detect_every: Annotated[int, typer.Option(help="Video: detect people every Nth frame.")] = 1,
    camera: Annotated[
        int | None, typer.Option(help="Video: the camera number [default: cam3/c3 in the file name].")
    ] = None,
    start_time: Annotated[
        str | None,
        typer.Option(help="Video: ISO 8601 time of the first frame [default: the video's creation time]."),
    ] = None,
    min_box_height: Annotated[int, typer.Option(help="Video: smallest person box kept, in pixels.")] = 64,
    min_confidence: Annotated[float, typer.Option(help="Video: lowest detector confidence kept.")] = 0.5,
    min_track_length: Annotated[int, typer.Option(help="Video: fewest crops a tracklet keeps.")] = 3,
    fps: Annotated[float, typer.Option(help="--layout frames: frames per second of the folders.")] = 10.0,
) -> None:
    """Embed every image of DATA into a gallery (resumes; adds only new files).

    Video files (or, with --layout frames, folders of frames) are cut into person tracklets
    first: detect, track, crop; the crops are kept under the gallery (NAME/crops).
    """
    from .embedding.vectors import read_vectors
    from .gallery import build_gallery
    from .video.decode import is_video

    if layout == "frames" or any(is_video(d) for d in data):
        from .video.ingest import VideoOptions

        card = detector or _default_detector()
        options = VideoOptions(
            str(card), detect_every, min_box_height, min_confidence, min_track_length, camera, start_time, fps
        )
        _index_video(data, name, model, batch_size, options, layout == "frames", level, frames_per_tracklet,
                     rebuild, index_type, indexes_dir, quiet, as_json)  # fmt: skip
        return
    if len(data) != 1:
        _fail("give one dataset folder (several paths are for video files)")
    data = data[0]
    precomputed = read_vectors(vectors) if vectors else None
    embedder = None
    if not precomputed:
        embedder = _make_embedder(engine, model, batch_size, address=ray_address, actors=ray_actors)
    gallery, report = build_gallery(
        data,
        name,
        embedder,
        level=level,
        layout=layout,
        splits=split,
        name_pattern=name_pattern,
        metadata=metadata,
        rebuild=rebuild,
        indexes_dir=indexes_dir,
        frames_per_tracklet=frames_per_tracklet,
        checkpoint_seconds=checkpoint_seconds,
        progress=not quiet,
        index_type=index_type,
        vectors=precomputed,
    )
    counts = gallery.manifest["counts"]
    if as_json:
        typer.echo(
            json.dumps({**report.to_dict(), "counts": counts, "index": gallery.manifest["index"]}, indent=2)
        )
        gallery.close()
        return
    typer.echo(
        f"gallery {gallery.path}: {counts['vectors']} vectors ({level} level), "
        f"{counts['persons']} persons, {counts['cameras']} cameras"
    )
    typer.echo(
        f"this run: {report.added} added, {report.already_present} already present, "
        f"{report.replaced} replaced, {len(report.skipped)} skipped, "
        f"{report.images_embedded} images in {report.seconds:.1f} s ({report.images_per_second:.0f} images/s)"
    )
    typer.echo(f"index {gallery.manifest['index'].get('factory')} written in {report.index_seconds:.1f} s")
    if report.metadata_updated:
        typer.echo(f"metadata updated on {report.metadata_updated} entries already present")
    if report.metadata_unmatched:
        more = (
            f" (and {len(report.metadata_unmatched) - 3} more)" if len(report.metadata_unmatched) > 3 else ""
        )
        typer.echo(
            f"warning: {len(report.metadata_unmatched)} --metadata rows name no image here: "
            + ", ".join(report.metadata_unmatched[:3])
            + more,
            err=True,
        )
    for s in report.skipped[:10]:
        typer.echo(f"skipped {s.path}: {s.reason}", err=True)
    if len(report.skipped) > 10:
        typer.echo(
            f"... and {len(report.skipped) - 10} more (table 'skipped' in {gallery.path / 'meta.sqlite'})",
            err=True,
        )
    gallery.close()


def _default_detector() -> Path:
    """The person detector card used when --detector is not given (a checkout's benchmarks/)."""
    card = (
        Path(__file__).resolve().parents[1] / "benchmarks" / "detectors" / "person-detection-0202.card.json"
    )
    if not card.is_file():
        _fail("indexing video needs a person detector: --detector CARD.json (README, From video)")
    return card


def _index_video(videos, name, model, batch_size, options, frame_folders, level, frames_per_tracklet,
                 rebuild, index_type, indexes_dir, quiet, as_json) -> None:  # fmt: skip
    """``index`` for video files or frame folders: cut tracklets, then index their crops."""
    from .embedding.embedder import Embedder
    from .gallery.from_video import build_video_gallery
    from .gallery.store import gallery_name_from_folder

    gallery, report, cuts = build_video_gallery(
        videos, name or gallery_name_from_folder(Path(videos[0]).stem),
        Embedder(model, batch_size=batch_size), options, level=level, indexes_dir=indexes_dir,
        frames_per_tracklet=frames_per_tracklet, progress=not quiet, index_type=index_type,
        rebuild=rebuild, frame_folders=frame_folders,
        log=(lambda line: None) if as_json else typer.echo,
    )  # fmt: skip
    counts = gallery.manifest["counts"]
    if as_json:
        payload = {**report.to_dict(), "counts": counts, "videos": [_cut_dict(c) for c in cuts]}
        typer.echo(json.dumps(payload, indent=2))
    else:
        typer.echo(
            f"gallery {gallery.path}: {counts['vectors']} vectors ({level} level) from "
            f"{sum(c.tracklets for c in cuts)} tracklets of {len(cuts)} video(s)"
        )
        for s in report.skipped[:10]:
            typer.echo(f"skipped {s.path}: {s.reason}", err=True)
    gallery.close()


def _cut_dict(cut) -> dict:
    keep = ("video", "frames", "frames_detected", "detections", "tracklets", "dropped_tracklets", "stopped")
    return {
        **{k: getattr(cut, k) for k in keep},
        "crops": len(cut.records),
        "seconds": round(cut.seconds, 2),
        "video_seconds": round(cut.video_seconds, 2),
    }


def _make_embedder(engine: str, model, batch_size: int = 64, flip: bool = False, address=None, actors=None):
    """The embedder of ``--engine``; a missing extra or an unknown engine is one clear line."""
    from .embedding.engines import EngineOptions, make_embedder

    return make_embedder(engine, model, batch_size, flip, EngineOptions(actors, address))


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
    from .gallery import Gallery
    from .search.service import QueryOptions, answer_query, embedder_for_gallery

    options = QueryOptions(
        top_k, matches, tuple(camera or ()), tuple(exclude_camera or ()), after, before,
        same_camera_rule, rerank, min_score,
    )  # fmt: skip
    with Gallery.open(index_name, indexes_dir) as gallery:
        result = answer_query(gallery, embedder_for_gallery(gallery, model), images, options)
    if plot:
        from .data.layouts import parse_any_name
        from .search.rankplot import draw_rank_rows, query_rank_row

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
            typer.echo(f"{head}  {m.similarity:.3f}  {camera}  {when}  {m.path}")
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
    seconds: Annotated[float, typer.Option(help="Clip: seconds of video either side of the match.")] = 2.0,
    indexes_dir: IndexesOpt = None,
) -> None:
    """A gallery entry cut from video, shown where it was filmed: its frame (box drawn) or a clip."""
    from .gallery import Gallery
    from .video.clips import export_clip

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
    from .embedding.embedder import Embedder
    from .search.query import compare_images, plot_comparison

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
        int, typer.Option(help="Tracklet level: frames pooled per tracklet at most.")
    ] = 32,
    single_shot_draws: Annotated[
        int, typer.Option(help="Single-shot rank-1: draws of one gallery item per person (0 = off).")
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
    from .search.evaluation import evaluate as run_evaluation
    from .search.evaluation import gallery_source
    from .search.report import format_summary, write_report
    from .search.rerank import RerankConfig

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
def embed(
    data: Annotated[Path, typer.Argument(help="Folder of images (any depth, any layout).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Vectors file to write (.npz).")],
    model: ModelOpt = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 64,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_actors: RayActorsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Embed every image below DATA into a .npz (paths relative to DATA, L2-normalised vectors)."""
    from .embedding.vectors import embed_folder

    embedder = _make_embedder(engine, model, batch_size, address=ray_address, actors=ray_actors)
    report = embed_folder(data, embedder, out, progress=not quiet)
    for line in report.skipped:
        typer.echo(f"skipped {line}", err=True)
    typer.echo(
        f"{report.embedded} vectors -> {report.out} ({len(report.skipped)} skipped, "
        f"{report.images_per_second:.0f} images/s)"
    )


@app.command()
@friendly_errors
def export(
    model: Annotated[Path, typer.Argument(help="A trained .keras model (its card beside it).")],
    format: Annotated[str, typer.Option("--format", "-f", help="litert or onnx.")] = "litert",
    out: Annotated[Path | None, typer.Option(help="Output file [default: NAME-FORMAT.tflite/.onnx].")] = None,
    link: Annotated[
        bool, typer.Option(help="Record it in the source card so embedding uses it automatically.")
    ] = True,
) -> None:
    """Convert a .keras model to a fast CPU format (card included; vectors match Keras)."""
    from .embedding.export import export_model

    target = export_model(model, format, out, link)
    typer.echo(f"exported {model} -> {target} ({target.stat().st_size / 1e6:.1f} MB)")


@app.command()
@friendly_errors
def calibrate(
    model: Annotated[Path, typer.Argument(help="The model whose same-person threshold to set.")],
    data: Annotated[
        list[Path], typer.Argument(help="Labelled dataset(s); their held-out identities are used.")
    ],
    far: Annotated[
        float | None, typer.Option(help="Target false-accept rate (e.g. 0.01) [default: equal error rate].")
    ] = None,
    val_fraction: Annotated[float, typer.Option(help="Held-out share of identities, as in train.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Identity split seed, as in train.")] = 0,
    open_set_far: Annotated[
        float | None,
        typer.Option(
            help="Also fit the query's open-set rule (graded confidence, accept level) at this "
            "false-alarm rate, e.g. 0.1."
        ),
    ] = None,
    write: Annotated[bool, typer.Option(help="Store the threshold in the model's card(s).")] = False,
) -> None:
    """Choose the same-person threshold on held-out identities; print its error rates per dataset."""
    from .embedding.embedder import Embedder
    from .training.calibration import calibrate_model, calibrate_open_set, write_open_set, write_threshold

    embedder = Embedder(model)
    if open_set_far is not None:
        rule, per = calibrate_open_set(embedder, [str(d) for d in data], open_set_far, val_fraction, seed)
        typer.echo(f"open-set accept level {rule.accept:.4f}: {rule.description}")
        for name, rates in per.items():
            typer.echo(
                f"  {name:<24} DIR {rates['DIR']:.3f}  FAR {rates['FAR']:.3f}  ({rates['queries']} queries)"
            )
        if write:
            for card in write_open_set(model, rule, per):
                typer.echo(f"written: {card}")
    result = calibrate_model(embedder, [str(d) for d in data], far, val_fraction, seed)
    typer.echo(f"threshold {result.threshold:.4f}: {result.rule}")
    for name, rates in result.per_dataset.items():
        typer.echo(
            f"  {name:<24} FAR {rates['false_accept']:.4f}  FRR {rates['false_reject']:.4f}  "
            f"look-alike FAR {rates['lookalike_false_accept']:.4f}  "
            f"({rates['same_pairs']} same, {rates['different_pairs']} different, "
            f"{rates['lookalike_pairs']} look-alike pairs)"
        )
    if write:
        for card in write_threshold(model, result):
            typer.echo(f"written: {card}")


@app.command()
@friendly_errors
def records(
    data: Annotated[
        Path, typer.Argument(help="Dataset folder (its train split is used: bbox_train/bounding_box_train).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the shards, label map and summary.")],
    val_fraction: Annotated[float, typer.Option(help="Share of identities held out for validation.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the identity split.")] = 0,
    shards: Annotated[int, typer.Option(help="Shards per split.")] = 4,
    split: Annotated[
        list[str] | None, typer.Option(help="Split folder(s) to use instead of the train split.")
    ] = None,
    layout: Annotated[str | None, typer.Option(help="Force a layout [default: detect].")] = None,
) -> None:
    """Write identity-disjoint train/validation TFRecord shards (image, labels, camera, tracklet, path)."""
    from .data.records import write_records

    summary = write_records(data, out, val_fraction, seed, shards, split, layout)
    typer.echo(
        f"train: {summary['train']['images']} images of {summary['train']['identities']} identities; "
        f"val: {summary['val']['images']} images of {summary['val']['identities']} identities -> {out}"
    )


def _fresh_folder(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``... if it exists: an earlier report is never overwritten."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _input_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected HEIGHTxWIDTH, e.g. 128x64") from None
    return h, w


@app.command()
@friendly_errors
def train(
    ctx: typer.Context,
    data: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Dataset or 'records' folder(s); several train together, identities namespaced per dataset."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder (config, checkpoints, logs, model).")
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Rerun a run: its config.json gives every setting (give --out for the new run; "
            "no other option).",
        ),
    ] = None,
    architecture: Annotated[
        str,
        typer.Option(help="mobilenetv2, onnx (imported from --backbone-weights FILE.onnx), seed or mini."),
    ] = "mobilenetv2",
    input_size: Annotated[
        str | None,
        typer.Option(help="HEIGHTxWIDTH of the tower's input [default: 256x128 for seed, else 128x64]."),
    ] = None,
    embedding_dim: Annotated[int, typer.Option(help="Embedding size.")] = 256,
    backbone_weights: Annotated[
        str | None,
        typer.Option(
            help="MobileNetV2 init: a .weights.h5 file or 'imagenet' (download); onnx: the .onnx network."
        ),
    ] = None,
    loss: Annotated[
        str,
        typer.Option(
            help="Weighted losses: pair, contrastive, triplet, id, distill, regress; e.g. 'triplet=1,id=1'."
        ),
    ] = "triplet=1,id=1",
    triplet_margin: Annotated[float, typer.Option(help="Batch-hard triplet margin; 0 = soft margin.")] = 0.3,
    contrastive_margin: Annotated[float, typer.Option(help="Contrastive margin.")] = 1.0,
    label_smoothing: Annotated[float, typer.Option(help="ID loss label smoothing.")] = 0.1,
    teacher_targets: Annotated[
        list[Path] | None,
        typer.Option(
            help="Teacher embeddings .npz (paths relative to the dataset, embeddings) for distill/regress; "
            "repeat for several datasets."
        ),
    ] = None,
    unlabelled: Annotated[
        list[Path] | None,
        typer.Option(
            help="Folder of crops with no identities (any layout), trained by the teacher only "
            "(distill/regress); its --teacher-targets file must cover every image. Repeatable."
        ),
    ] = None,
    unlabelled_per_batch: Annotated[
        int, typer.Option(help="Crops of --unlabelled folders added to each P x K batch.")
    ] = 16,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 30,
    p: Annotated[int, typer.Option("--p", help="Identities per batch.")] = 16,
    k: Annotated[int, typer.Option("--k", help="Images per identity in a batch.")] = 4,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 3.5e-4,
    warmup_epochs: Annotated[float, typer.Option(help="Linear warm-up epochs before cosine decay.")] = 2.0,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 5e-4,
    ibn_blocks: Annotated[
        int,
        typer.Option(help="MobileNetV2: IBN-a (half instance norm) in blocks 1..N (0 = off)."),
    ] = 0,
    mixstyle: Annotated[
        float,
        typer.Option(
            help="MixStyle probability on the frozen blocks' output (needs --cached-views; 0 = off)."
        ),
    ] = 0.0,
    freeze_blocks: Annotated[
        int,
        typer.Option(
            help="Freeze the first N blocks (MobileNetV2: stem + blocks 1..N; onnx: N pooling stages)."
        ),
    ] = 0,
    cached_views: Annotated[
        int,
        typer.Option(help="With --freeze-blocks: precompute the frozen part for V augmented views (fast)."),
    ] = 0,
    flip: Annotated[bool, typer.Option(help="Random horizontal flip.")] = True,
    pad: Annotated[float, typer.Option(help="Pad-and-crop fraction (0 = off).")] = 0.1,
    colour_jitter: Annotated[float, typer.Option(help="Colour jitter strength (0 = off).")] = 0.2,
    grey: Annotated[float, typer.Option(help="Probability of a grey-scale training image.")] = 0.0,
    random_erasing: Annotated[float, typer.Option(help="Random erasing probability.")] = 0.5,
    randaugment: Annotated[
        bool, typer.Option(help="Light RandAugment (grey, contrast stretch, blur).")
    ] = False,
    val_fraction: Annotated[float, typer.Option(help="Dataset input: share of identities held out.")] = 0.1,
    steps_per_epoch: Annotated[
        int | None, typer.Option(help="Batches per epoch [default: images / (P*K)].")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed: weights, sampler, augmentation, split.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    export: Annotated[Path | None, typer.Option(help="Also copy the final model (+ card) here.")] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads TensorFlow may use [default: all cores].")
    ] = None,
) -> None:
    """Train the siamese tower; writes a checkpoint each epoch and exports model.keras with its card.

    --resume continues the run in --out at the step it stopped; only --epochs, --threads and
    --export may be given with it. --config RUN/config.json reruns a run into a new --out.
    """
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    from .embedding.tower import TowerConfig, default_input_size
    from .training import TrainConfig, parse_losses
    from .training import train as run_training
    from .training.augment import AugmentConfig

    given = _given_options(ctx) - {"out", "resume", "threads", "export", "config_file"}
    if out is None:
        _fail("--out RUN_FOLDER is needed")
    if resume or config_file:
        saved_file = (out / "config.json") if resume else config_file
        try:
            saved = TrainConfig.from_dict(json.loads(Path(saved_file).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            _fail(f"{saved_file}: not a run's config.json ({exc})")
        refused = sorted(given - ({"epochs"} if resume else set()))
        if refused:
            names = ", ".join("--" + n.replace("_", "-") for n in refused)
            rule = "--epochs, --threads and --export" if resume else "--out, --threads and --export"
            _fail(f"{names} cannot be given with {'--resume' if resume else '--config'} (only {rule} may)")
        if "epochs" in given:
            saved.epochs = epochs
        if config_file:
            saved.out, saved.command = str(out), ""
        config = saved
    else:
        if not data:
            _fail("give the DATA folder(s) to train on (or --config RUN/config.json, or --resume)")
        h, w = _input_size(input_size) if input_size else default_input_size(architecture)
        config = TrainConfig(
            data=[str(d) for d in data],
            out=str(out),
            tower=TowerConfig(architecture, h, w, embedding_dim, backbone_weights, seed, ibn_blocks),
            augment=AugmentConfig(flip, pad, colour_jitter, random_erasing, randaugment, grey),
            losses=parse_losses(loss),
            triplet_margin=triplet_margin or None,
            contrastive_margin=contrastive_margin,
            label_smoothing=label_smoothing,
            teacher_targets=[str(t) for t in teacher_targets or []],
            unlabelled=[str(u) for u in unlabelled or []],
            unlabelled_per_batch=unlabelled_per_batch,
            p=p,
            k=k,
            epochs=epochs,
            lr=lr,
            warmup_epochs=warmup_epochs,
            weight_decay=weight_decay,
            mixstyle=mixstyle,
            freeze_blocks=freeze_blocks,
            cached_views=cached_views,
            val_fraction=val_fraction,
            seed=seed,
            steps_per_epoch=steps_per_epoch,
        )
    config.validate()
    result = run_training(config, resume=resume, log=typer.echo, epochs=epochs if "epochs" in given else None)
    typer.echo(
        f"model: {result.model_path} (card {result.model_path.with_suffix('').with_suffix('.card.json')})"
    )
    if export:
        from .embedding.model_store import copy_model

        typer.echo(f"exported: {copy_model(result.model_path, export)}")


@app.command()
@friendly_errors
def demo(
    people: Annotated[int, typer.Option(help="Synthetic identities.")] = 40,
    cameras: Annotated[int, typer.Option(help="Synthetic cameras.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed of the generator.")] = 0,
    model: ModelOpt = None,
    indexes_dir: IndexesOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Zero-download tour: synthetic people -> gallery -> queries -> rank-1/mAP and a CMC plot."""
    from .demo import run_demo

    run_demo(indexes_dir, people, cameras, seed, model, echo=typer.echo, progress=not quiet)


@app.command()
@friendly_errors
def galleries(
    indexes_dir: IndexesOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifests as a JSON list.")] = False,
) -> None:
    """List the galleries in the indexes folder with their size, index type and model."""
    from .gallery import MANIFEST_FILE, default_indexes_dir, list_galleries, read_manifest

    found = [(path, read_manifest(path / MANIFEST_FILE)) for path in list_galleries(indexes_dir)]
    if as_json:
        typer.echo(json.dumps([{"path": str(p), **m} for p, m in found], indent=2))
        return
    if not found:
        typer.echo(f"no gallery in {indexes_dir or default_indexes_dir()}")
    for path, m in found:
        c = m.get("counts", {})
        index = m.get("index", {}).get("factory") or m.get("index_type", "?")
        typer.echo(
            f"{path.name:<20} {c.get('vectors', 0):>8} vectors  {m['level']:<8} index {index:<10} "
            f"model {m['model']['name']} ({m['model']['sha256'][:12]})  updated {m['updated']}"
        )


@app.command()
@friendly_errors
def reindex(
    name: Annotated[str, typer.Argument(help="Gallery name or folder.")],
    index_type: Annotated[
        str,
        typer.Option(help="FAISS factory string (Flat, HNSW32, IVF1024,Flat, IVF4096,PQ32, ...) or auto."),
    ] = "auto",
    nprobe: Annotated[int | None, typer.Option(help="IVF lists searched per query.")] = None,
    ef_search: Annotated[int | None, typer.Option(help="HNSW search depth.")] = None,
    indexes_dir: IndexesOpt = None,
) -> None:
    """Rebuild a gallery's FAISS index from its stored vectors (no embedding)."""
    import time

    from .gallery import Gallery

    params = {k: v for k, v in {"nprobe": nprobe, "efSearch": ef_search}.items() if v is not None}
    started = time.perf_counter()
    with Gallery.open(name, indexes_dir) as gallery, gallery.writing():
        state = gallery.reindex(index_type, params)
    typer.echo(
        f"{gallery.path}: index {state.factory} over {state.count} vectors "
        f"({time.perf_counter() - started:.1f} s; params {state.params})"
    )


@app.command()
@friendly_errors
def cluster(
    name: Annotated[str, typer.Argument(help="Gallery name or folder.")],
    threshold: Annotated[
        float | None,
        typer.Option(help="Link entries at or above this cosine [default: the model card's threshold]."),
    ] = None,
    k: Annotated[int, typer.Option("--k", help="Neighbours per entry; links must be k-reciprocal.")] = 10,
    rebuild: Annotated[bool, typer.Option(help="Cluster every entry again, not only new ones.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    indexes_dir: IndexesOpt = None,
) -> None:
    """Group a gallery's entries into people (k-reciprocal neighbours above the threshold).

    Incremental: new entries join existing clusters or start new ones. Unlabelled queries
    then answer with clusters: "this person, seen on cameras 1, 3, 6, in 14 images".
    """
    from .gallery import Gallery
    from .gallery.clusters import cluster_gallery

    with Gallery.open(name, indexes_dir) as gallery, gallery.writing():
        report = cluster_gallery(gallery, threshold, k, rebuild)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    how = "all entries" if report.reclustered else "new entries"
    typer.echo(
        f"{gallery.path}: {report.clustered} {how} clustered at threshold {report.threshold:.4f} "
        f"(k {report.k}) in {report.seconds:.1f} s: {report.clusters} clusters, {report.merged} merged"
    )


@app.command()
@friendly_errors
def clusters(
    name: Annotated[str, typer.Argument(help="Gallery name or folder.")],
    min_size: Annotated[int, typer.Option(help="Only clusters with at least this many entries.")] = 1,
    limit: Annotated[int, typer.Option(help="Show at most this many (biggest first; 0 = all).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    indexes_dir: IndexesOpt = None,
) -> None:
    """List a gallery's clusters: size, cameras, time span, biggest first."""
    from .gallery import Gallery
    from .gallery.clusters import list_clusters

    with Gallery.open(name, indexes_dir) as gallery:
        found = list_clusters(gallery, min_size)
        unclustered = gallery.con.execute("select count(*) from vectors where cluster is null").fetchone()[0]
    shown = found[:limit] if limit else found
    if as_json:
        typer.echo(json.dumps({"clusters": [c.to_dict() for c in shown], "total": len(found)}, indent=2))
        return
    if not found:
        typer.echo(f"no clusters (run 'reid-search cluster {name}' first)")
        return
    typer.echo(f"{'cluster':>7}  {'size':>5}  cameras      time span")
    for c in shown:
        cams = ",".join(map(str, c.cameras)) or "-"
        span = f"{c.first_time} .. {c.last_time}" if c.first_time else "-"
        typer.echo(f"{c.cluster:>7}  {c.size:>5}  {cams:<12} {span}")
    typer.echo(f"{len(found)} clusters; {unclustered} entries not clustered yet")


@app.command()
@friendly_errors
def serve(
    index_name: Annotated[
        str | None, typer.Option("--index", "-i", help="Default gallery [default: the only one].")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(envvar="REID_SEARCH_TOKEN", help="Require this token on every API call."),
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest image accepted, in MB.")] = 8.0,
    max_request_mp: Annotated[
        float, typer.Option(help="Most pixels of all images of one request, in megapixels.")
    ] = 40.0,
    workers: Annotated[
        int, typer.Option(help="Server processes, each with its own copy of the model (use the cores).")
    ] = 1,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="Host header names answered (repeatable) [default: localhost names when bound to loopback, "
            "else any]."
        ),
    ] = None,
    indexes_dir: IndexesOpt = None,
) -> None:
    """Serve the galleries: a web page at /, a JSON API under /api, its docs at /docs."""
    from .serve.config import require_serve_extra

    try:
        require_serve_extra()
    except ModuleNotFoundError as exc:
        _fail(str(exc))
    import uvicorn

    from .serve import ServeConfig, create_app

    if index_name is not None:
        from .gallery import Gallery

        Gallery.open(index_name, indexes_dir).close()  # a wrong name fails now, not per request
    loopback = ("127.0.0.1", "localhost", "::1")
    hosts = tuple(h.lower() for h in allowed_host or ()) or (loopback if host in loopback else ())
    config = ServeConfig(
        indexes_dir=indexes_dir,
        default_gallery=index_name,
        token=token,
        max_upload_bytes=int(max_upload_mb * 2**20),
        max_request_pixels=int(max_request_mp * 1e6),
        allowed_hosts=hosts,
    )
    if host not in loopback and not token:
        typer.echo(
            f"warning: serving on {host} without --token: anyone who can reach it may search", err=True
        )
    typer.echo(f"reid-search on http://{host}:{port}/  (API docs: /docs)")
    if workers > 1:  # uvicorn starts each worker from an import string: the settings go by environment
        from .serve.config import CONFIG_ENV

        os.environ[CONFIG_ENV] = config.to_json()
        uvicorn.run(
            "reid_search.serve.app:app_from_environment", factory=True, workers=workers, host=host,
            port=port, log_level="warning",
        )  # fmt: skip
        return
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="reid-search")


if __name__ == "__main__":
    sys.exit(main())
