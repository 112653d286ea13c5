"""The ``reid-search`` command line: a thin typer shell over the Python API.

Every command turns a known failure (bad folder, bad image, wrong model, unknown layout)
into one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import json
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
    typer.Option("--model", "-m", help="A .keras model file (card beside it); default: the package's model."),
]
IndexesOpt = Annotated[
    Path | None,
    typer.Option("--indexes-dir", help="Where galleries live [default: $REID_SEARCH_INDEXES or ./indexes]."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def friendly_errors(func):
    """Known errors become one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from .gallery import GalleryError
        from .images import ImageError
        from .layouts import LayoutError
        from .model_store import ModelError
        from .protocols import ProtocolError

        try:
            return func(*args, **kwargs)
        except (GalleryError, ImageError, LayoutError, ModelError, ProtocolError, FileNotFoundError) as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            typer.echo("interrupted: what was committed is kept; run the same command to resume", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"reid-search {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """reid-search: who is this person, and how well can we tell?"""


@app.command()
@friendly_errors
def index(
    data: Annotated[
        Path,
        typer.Argument(help="Dataset folder (MARS, Market-1501, Kaggle MARS or one folder per identity)."),
    ],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Gallery name [default: the folder's name].")
    ] = None,
    model: ModelOpt = None,
    level: Annotated[
        str, typer.Option(help="image: a vector per image; tracklet: a mean-pooled vector per tracklet.")
    ] = "image",
    layout: Annotated[
        str | None, typer.Option(help="mars, kaggle-mars, market1501 or generic [default: detect].")
    ] = None,
    split: Annotated[
        list[str] | None, typer.Option(help="Split folder(s) to index [default: the test split].")
    ] = None,
    camera_pattern: Annotated[
        str | None, typer.Option(help="Generic layout: regex with a (?P<cam>...) group read from file names.")
    ] = None,
    rebuild: Annotated[bool, typer.Option(help="Delete the gallery and start over.")] = False,
    frames_per_tracklet: Annotated[
        int, typer.Option(help="Tracklet level: at most this many evenly spaced frames.")
    ] = 32,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 64,
    checkpoint_seconds: Annotated[
        float, typer.Option(help="Write the FAISS file at least this often.")
    ] = 30.0,
    indexes_dir: IndexesOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Embed every image of DATA into a gallery (resumes; adds only new files)."""
    from .embedder import Embedder
    from .gallery import build_gallery

    embedder = Embedder(model, batch_size=batch_size)
    gallery, report = build_gallery(
        data,
        name,
        embedder,
        level=level,
        layout=layout,
        splits=split,
        camera_pattern=camera_pattern,
        rebuild=rebuild,
        indexes_dir=indexes_dir,
        frames_per_tracklet=frames_per_tracklet,
        checkpoint_seconds=checkpoint_seconds,
        progress=not quiet,
    )
    counts = gallery.manifest["counts"]
    typer.echo(
        f"gallery {gallery.path}: {counts['vectors']} vectors ({level} level), "
        f"{counts['persons']} persons, {counts['cameras']} cameras"
    )
    typer.echo(
        f"this run: {report.added} added, {report.already_present} already present, "
        f"{report.replaced} replaced, {len(report.skipped)} skipped, "
        f"{report.images_embedded} images in {report.seconds:.1f} s ({report.images_per_second:.0f} images/s)"
    )
    for s in report.skipped[:10]:
        typer.echo(f"skipped {s.path}: {s.reason}", err=True)
    if len(report.skipped) > 10:
        typer.echo(
            f"... and {len(report.skipped) - 10} more (table 'skipped' in {gallery.path / 'meta.sqlite'})",
            err=True,
        )
    gallery.close()


def _embedder_for_gallery(gallery, model: Path | None):
    """The model that built the gallery, unless --model names another (then it must match)."""
    from .embedder import Embedder

    built = Path(gallery.manifest["model"]["path"])
    return Embedder(model if model is not None or not built.is_file() else built)


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
    exclude_camera: Annotated[
        list[int] | None, typer.Option(help="Ignore gallery entries of this camera (repeatable).")
    ] = None,
    same_camera_rule: Annotated[
        bool,
        typer.Option(
            help="Ignore the query person's own camera, as evaluation does (reads MARS/Market names)."
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (schema reid-search/query/v1).")
    ] = False,
    model: ModelOpt = None,
    indexes_dir: IndexesOpt = None,
) -> None:
    """Rank the gallery's identities by likeness to the query image(s)."""
    from .gallery import Gallery
    from .search import search_gallery

    with Gallery.open(index_name, indexes_dir) as gallery:
        embedder = _embedder_for_gallery(gallery, model)
        result = search_gallery(
            gallery, embedder, images, top_k, matches, exclude_camera or (), same_camera_rule
        )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    for line in result.skipped:
        typer.echo(f"skipped {line}", err=True)
    typer.echo(f"query: {len(result.images)} image(s) against gallery {result.gallery}")
    typer.echo(f"{'rank':>4}  {'person':<10} {'score':>6}  best matches (similarity, camera, tracklet, path)")
    for hit in result.identities:
        for j, m in enumerate(hit.matches):
            head = f"{hit.rank:>4}  {hit.person:<10} {hit.score:6.3f}" if j == 0 else " " * 23
            typer.echo(f"{head}  {m.similarity:.3f}  c{m.camera}  t{m.tracklet}  {m.path}")


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
    from .embedder import Embedder
    from .search import compare_images, plot_comparison

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
    out: Annotated[Path | None, typer.Option(help="Report folder [default: runs/eval-<name>].")] = None,
    protocol: Annotated[str, typer.Option(help="auto, cross-camera, market1501 or mars-official.")] = "auto",
    level: Annotated[str, typer.Option(help="Dataset folders: image or tracklet.")] = "image",
    layout: Annotated[str | None, typer.Option(help="Force a layout [default: detect].")] = None,
    camera_pattern: Annotated[str | None, typer.Option(help="Generic layout: camera regex.")] = None,
    query_camera: Annotated[
        list[int] | None, typer.Option(help="Cross-camera: queries only from this camera (repeatable).")
    ] = None,
    gallery_camera: Annotated[
        list[int] | None, typer.Option(help="Cross-camera: gallery only from this camera (repeatable).")
    ] = None,
    frames_per_tracklet: Annotated[
        int, typer.Option(help="Tracklet level: frames pooled per tracklet at most.")
    ] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics JSON.")] = False,
    model: ModelOpt = None,
    indexes_dir: IndexesOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Rank-1/5/10/20, mAP, mINP and a CMC curve (PNG, CSV, JSON)."""
    from .embedder import Embedder
    from .evaluation import evaluate as run_evaluation
    from .evaluation import gallery_source
    from .report import format_summary, write_report

    embedder = None if gallery_source(source, indexes_dir) else Embedder(model)
    report = run_evaluation(
        source,
        embedder,
        protocol=protocol,
        layout=layout,
        camera_pattern=camera_pattern,
        level=level,
        frames_per_tracklet=frames_per_tracklet,
        query_cameras=query_camera,
        gallery_cameras=gallery_camera,
        indexes_dir=indexes_dir,
        progress=not quiet,
    )
    out = out or Path("runs") / f"eval-{Path(source).name}"
    paths = write_report(report, out)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    typer.echo(format_summary(report))
    typer.echo(f"report     {paths['metrics_json']}  {paths['cmc_csv']}  {paths['per_query_csv']}")
    typer.echo(f"CMC plot   {paths['cmc_png']}")


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
def galleries(indexes_dir: IndexesOpt = None) -> None:
    """List the galleries in the indexes folder with their size and model."""
    from .gallery import _read_manifest, default_indexes_dir, list_galleries

    found = list_galleries(indexes_dir)
    if not found:
        typer.echo(f"no gallery in {indexes_dir or default_indexes_dir()}")
    for path in found:
        m = _read_manifest(path / "manifest.json")
        c = m.get("counts", {})
        typer.echo(
            f"{path.name:<20} {c.get('vectors', 0):>8} vectors  {m['level']:<8} "
            f"model {m['model']['name']} ({m['model']['sha256'][:12]})  updated {m['updated']}"
        )


def main() -> None:
    """Console-script entry point."""
    app(prog_name="reid-search")


if __name__ == "__main__":
    sys.exit(main())
