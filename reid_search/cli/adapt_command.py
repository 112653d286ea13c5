"""``reid-search adapt``: a model learns a user's cameras from their unlabelled crops.
Guide: docs/training.md (Adaptation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import ModelOpt, _fail, app, friendly_errors


def _adapt_option(name: str, help: str, *flags: str):
    """A typer option whose shown default is :class:`AdaptConfig`'s (the one place it is set)."""
    from ..adaptation import AdaptConfig

    value = AdaptConfig(target=[], out="x.keras")
    for part in name.split("."):
        value = getattr(value, part)
    return typer.Option(*flags, help=help, show_default=str(value))


@app.command()
@friendly_errors
def adapt(
    data: Annotated[
        list[str],
        typer.Argument(help="A gallery name, or folders of crops of the cameras to adapt to (no labels)."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The adapted model (.keras) to write.")],
    model: ModelOpt = None,
    method: Annotated[
        str,
        typer.Option(
            help="self-training (clusters the crops into people and learns them) or batchnorm (AdaBN)."
        ),
    ] = "self-training",
    metadata: Annotated[
        Path | None,
        typer.Option(help="CSV beside folders of crops: path plus camera, tracklet, time or frame columns."),
    ] = None,
    source: Annotated[
        list[Path] | None,
        typer.Option(help="Labelled dataset to mix in (its people kept apart; repeatable)."),
    ] = None,
    rounds: Annotated[int | None, _adapt_option("rounds", "Cluster-and-learn rounds.")] = None,
    steps_per_round: Annotated[
        int | None, _adapt_option("steps_per_round", "Training steps per round.")
    ] = None,
    p: Annotated[int | None, _adapt_option("p", "Pseudo-identities per batch.", "--p")] = None,
    k: Annotated[int | None, _adapt_option("k", "Crops per pseudo-identity in a batch.", "--k")] = None,
    lr: Annotated[float | None, _adapt_option("lr", "Learning rate.")] = None,
    temperature: Annotated[
        float | None, _adapt_option("temperature", "Cluster-memory softmax temperature.")
    ] = None,
    camera_weight: Annotated[
        float | None, _adapt_option("camera_weight", "Weight of the camera-proxy term.")
    ] = None,
    distill_weight: Annotated[
        float | None, _adapt_option("distill_weight", "Weight of distillation from the start model.")
    ] = None,
    ignore_partners: Annotated[
        int | None,
        _adapt_option(
            "ignore_partners",
            "A one-camera pseudo-identity's N nearest one-camera ones on other cameras are not its "
            "negatives (likely the same person, not yet associated).",
        ),
    ] = None,
    eps: Annotated[
        float | None, _adapt_option("cluster.eps", "DBSCAN: Jaccard distance of neighbours.")
    ] = None,
    min_samples: Annotated[
        int | None, _adapt_option("cluster.min_samples", "DBSCAN: neighbours a core crop needs.")
    ] = None,
    k1: Annotated[int | None, _adapt_option("cluster.k1", "k-reciprocal neighbourhood size.")] = None,
    without: Annotated[
        list[str] | None,
        typer.Option(help="Leave an ingredient out: tracklets, cameras, recluster, distill (repeatable)."),
    ] = None,
    max_crops: Annotated[
        int | None, _adapt_option("max_crops", "Use at most this many crops (evenly spread).")
    ] = None,
    max_images: Annotated[int, typer.Option(min=1, help="batchnorm: use at most this many images.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run of --out where it stopped.")] = False,
) -> None:
    """Adapt a model to your cameras from their unlabelled crops, then re-embed the gallery with it
    (reid-search index ... --rebuild --model OUT). Progress and checkpoints go to OUT.adapt/;
    Ctrl-C stops cleanly and --resume continues."""
    from ..embedding.backends import import_tensorflow_quietly

    import_tensorflow_quietly()
    if method == "batchnorm":
        from ..embedding.adapt import adapt_batchnorm
        from ..embedding.model_store import read_card

        if len(data) != 1:
            _fail("--method batchnorm adapts to one folder of images")
        written = adapt_batchnorm(model, [Path(data[0])], out, max_images)
        typer.echo(f"written: {written} ({read_card(written).notes.rsplit('; ', 1)[-1]})")
        return
    if method != "self-training":
        _fail(f"--method {method}: known: self-training, batchnorm")
    from ..adaptation import AdaptConfig, ClusterSettings
    from ..adaptation import adapt as run_adaptation

    given = {
        "rounds": rounds, "steps_per_round": steps_per_round, "p": p, "k": k, "lr": lr,
        "temperature": temperature, "camera_weight": camera_weight, "distill_weight": distill_weight,
        "max_crops": max_crops, "ignore_partners": ignore_partners,
    }  # fmt: skip
    cluster = {"eps": eps, "min_samples": min_samples, "k1": k1}
    config = AdaptConfig(
        target=list(data), out=str(out), model=str(model) if model else None,
        metadata=str(metadata) if metadata else None, source=[str(s) for s in source or []],
        without=list(without or []), seed=seed, **{k: v for k, v in given.items() if v is not None},
        cluster=ClusterSettings(**{k: v for k, v in cluster.items() if v is not None}),
    )  # fmt: skip
    result = run_adaptation(config, resume=resume, log=typer.echo)
    state = "interrupted, written as it stood" if result.interrupted else "written"
    typer.echo(
        f"{state}: {result.model_path} ({result.seconds / 60:.1f} min); "
        f"re-embed with --model {result.model_path}"
    )
