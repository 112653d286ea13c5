"""``reid-search models``: the model zoo (shipped re-ID models, registered person detectors)
and ``models fetch NAME`` to install a detector's files. Guide: docs/models.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import app, friendly_errors

models_app = typer.Typer(
    help="The models and person detectors the package knows, with their cards (docs/models.md).",
    no_args_is_help=False,
    invoke_without_command=True,
)
app.add_typer(models_app, name="models")


@models_app.callback()
@friendly_errors
def models_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Every card, whole, as JSON.")] = False,
) -> None:
    """List every shipped re-ID model and registered person detector: kind, state, input,
    licence, how it was made, scores."""
    if ctx.invoked_subcommand is not None:
        return
    from ..zoo import zoo_rows

    rows = zoo_rows()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        scores = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k}: {v}"
                           for k, v in r["scores"].items() if not isinstance(v, dict))  # fmt: skip
        typer.echo(f"{r['kind']:8} {r['name']}  [{r['state']}]")
        typer.echo(f"         input {r['input']} -> {r['output']}; licence: {r['licence']}")
        if r["made"]:
            made = r["made"] if len(r["made"]) <= 100 else r["made"][:100] + "... (--json: the whole card)"
            typer.echo(f"         made: {made}")
        if scores:
            typer.echo(f"         scores: {scores}")


@models_app.command("fetch")
@friendly_errors
def models_fetch(
    name: Annotated[str, typer.Argument(help="A registered detector (see `reid-search models`).")],
    source: Annotated[
        Path | None,
        typer.Option("--from", help="A folder holding the detector's files (no download)."),
    ] = None,
) -> None:
    """Install a person detector's files into the detector home ($REID_SEARCH_HOME/detectors,
    default ~/.cache/reid-search/detectors), each file's sha256 checked."""
    from ..video.detector_store import fetch_detector

    card = fetch_detector(name, source, log=lambda line: typer.echo(line, err=True))
    typer.echo(str(card))
