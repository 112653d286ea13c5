"""Shared pieces of the command line: the typer app, common options, error handling."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated

import typer

from .. import __version__

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


def fits_line(attributes: list[dict]) -> str:
    """An answer's description terms as the CLI shows them: ``red top 93%, no hat 88%``."""
    return ", ".join(f"{a['words']} {100 * a['probability']:.0f}%" for a in attributes)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def friendly_errors(func):
    """Project errors (:class:`~reid_search.errors.ReidSearchError`) become one line on stderr
    and exit code 2; anything else is a bug: its traceback, a hint to report it, exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from ..errors import ReidSearchError

        try:
            return func(*args, **kwargs)
        except ReidSearchError as exc:
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


def _given_options(ctx: typer.Context, sources: tuple[str, ...] = ("COMMANDLINE", "ENVIRONMENT")) -> set[str]:
    """Names of the parameters the user set on the command line or by environment variable
    (``sources``; compared by name: typer may bring its own click)."""
    return {name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", "") in sources}


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


def _make_embedder(engine: str, model, batch_size: int = 64, flip: bool = False, address=None, actors=None):
    """The embedder of ``--engine``; a missing extra or an unknown engine is one clear line."""
    from ..embedding.engines import EngineOptions, make_embedder

    return make_embedder(engine, model, batch_size, flip, EngineOptions(actors, address))


def _fresh_folder(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``... if it exists: an earlier report is never overwritten."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _input_size(text: str) -> tuple[int, int]:
    """``"128x64"`` -> (128, 64); anything else is one InputError line."""
    from ..errors import InputError

    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--input-size {text!r}: expected HEIGHTxWIDTH, e.g. 128x64") from None
    return h, w


def main() -> None:
    """Console-script entry point."""
    app(prog_name="reid-search")
