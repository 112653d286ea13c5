"""Commands about models: train, calibrate, export, embed, records. Guide: docs/training.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    EngineOpt,
    ModelOpt,
    QuietOpt,
    RayActorsOpt,
    RayAddressOpt,
    _fail,
    _given_options,
    _make_embedder,
    app,
    friendly_errors,
)


def _train_options(func):
    """Give ``func`` one typer option per row of the training options table (their shown
    defaults read from the config dataclasses): the table is the only place they are written."""
    import inspect

    from ..training.options import TRAIN_OPTIONS

    params = [
        p for p in inspect.signature(func, eval_str=True).parameters.values() if p.kind != p.VAR_KEYWORD
    ]
    for option in TRAIN_OPTIONS:
        kind = list[option.kind] if option.repeat else option.kind
        flag = option.flag
        flags = [f"{flag}/--no-{flag.removeprefix('--')}"] if option.kind is bool else [flag]
        info = typer.Option(*flags, help=option.help, show_default=option.default_text())
        annotation = Annotated[kind | None, info]
        func.__annotations__[option.name] = annotation
        params.append(inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=annotation))  # fmt: skip
    func.__signature__ = inspect.Signature(params)
    return func


@app.command()
@friendly_errors
@_train_options
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
            help="A recipe or a run's config.json: it gives every setting (recipes/*.json; give --out for "
            "the new run, no other setting).",
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    export: Annotated[Path | None, typer.Option(help="Also copy the final model (+ card) here.")] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads TensorFlow may use [default: all cores].")
    ] = None,
    **settings,
) -> None:
    """Train the siamese tower; writes a checkpoint each epoch and exports model.keras with its card.

    Only the settings given are passed on: every other one is the config's default (shown).
    --resume continues the run in --out at the step it stopped; only --epochs, --threads and
    --export may be given with it. --config FILE.json (a recipe or a run's config) trains
    those settings into a new --out.
    """
    from ..embedding.backends import import_tensorflow_quietly

    tf = import_tensorflow_quietly()
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    from ..training import TrainConfig, config_from_options
    from ..training.loop import train as run_training

    given = {name: settings[name] for name in _given_options(ctx) if name in settings}
    if out is None:
        _fail("--out RUN_FOLDER is needed")
    if resume or config_file:
        saved_file = (out / "config.json") if resume else config_file
        try:
            saved = TrainConfig.from_dict(json.loads(Path(saved_file).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            _fail(f"{saved_file}: not a run's config.json or a recipe ({exc})")
        refused = sorted(set(given) - ({"epochs"} if resume else set()) | ({"data"} if data else set()))
        if refused:
            names = ", ".join("--" + n.replace("_", "-") for n in refused)
            rule = "--epochs, --threads and --export" if resume else "--out, --threads and --export"
            _fail(f"{names} cannot be given with {'--resume' if resume else '--config'} (only {rule} may)")
        if "epochs" in given:
            saved.epochs = given["epochs"]
        if config_file:
            saved.out, saved.command = str(out), ""
        config = saved
    else:
        if not data:
            _fail("give the DATA folder(s) to train on (or --config RECIPE.json, or --resume)")
        config = config_from_options([str(d) for d in data], str(out), given)
    result = run_training(config, resume=resume, log=typer.echo, epochs=given.get("epochs"))
    typer.echo(
        f"model: {result.model_path} (card {result.model_path.with_suffix('').with_suffix('.card.json')})"
    )
    if export:
        from ..embedding.model_store import copy_model

        typer.echo(f"exported: {copy_model(result.model_path, export)}")


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
    val_fraction: Annotated[
        float | None,
        typer.Option(help="Held-out share of identities [default: the model's training split's, else 0.1]."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Identity split seed [default: the model's training seed, else 0].")
    ] = None,
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
    from ..calibration.fit import (
        calibrate_model,
        calibrate_open_set,
        held_out_split,
        write_open_set,
        write_threshold,
    )
    from ..embedding.embedder import Embedder

    embedder = Embedder(model)
    datasets = [str(d) for d in data]
    val_fraction, seed = held_out_split(embedder.card, datasets, val_fraction, seed)
    if open_set_far is not None:
        rule, tracklet_rule, per = calibrate_open_set(embedder, datasets, open_set_far, val_fraction, seed)
        typer.echo(
            f"open-set accept level {rule.accept:.4f} (margin weight {rule.margin_weight:g}): "
            f"{rule.description}"
        )
        for name, rates in per.items():
            by_share = " ".join(f"{share}: {far:.3f}" for share, far in rates["FAR_by_gallery_share"].items())
            typer.echo(
                f"  {name:<24} DIR {rates['DIR']:.3f}  FAR {rates['FAR']:.3f}  ({rates['queries']} queries; "
                f"FAR by share of the people in the gallery {by_share})"
            )
        typer.echo(
            f"open-set accept level for galleries of tracklets {tracklet_rule.accept:.4f} (margin weight "
            f"{tracklet_rule.margin_weight:g}): "
            + ", ".join(
                f"{name} DIR {r['tracklets']['DIR']:.3f} FAR {r['tracklets']['FAR']:.3f}"
                for name, r in per.items()
            )
        )
        if write:
            for card in write_open_set(model, rule, tracklet_rule, per):
                typer.echo(f"written: {card}")
    result = calibrate_model(embedder, datasets, far, val_fraction, seed)
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
def export(
    model: Annotated[Path, typer.Argument(help="A trained .keras model (its card beside it).")],
    format: Annotated[str, typer.Option("--format", "-f", help="litert or onnx.")] = "litert",
    out: Annotated[Path | None, typer.Option(help="Output file [default: NAME-FORMAT.tflite/.onnx].")] = None,
    link: Annotated[
        bool, typer.Option(help="Record it in the source card so embedding uses it automatically.")
    ] = True,
) -> None:
    """Convert a .keras model to a fast CPU format (card included; vectors match Keras)."""
    from ..embedding.backends import import_tensorflow_quietly
    from ..embedding.export import export_model

    import_tensorflow_quietly()

    target = export_model(model, format, out, link)
    typer.echo(f"exported {model} -> {target} ({target.stat().st_size / 1e6:.1f} MB)")


@app.command()
@friendly_errors
def embed(
    data: Annotated[Path, typer.Argument(help="Folder of images (any depth, any layout).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Vectors file to write (.npz).")],
    model: ModelOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 64,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_actors: RayActorsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Embed every image below DATA into a .npz (paths relative to DATA, L2-normalised vectors)."""
    from ..embedding.vectors import embed_folder

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
def records(
    data: Annotated[
        Path, typer.Argument(help="Dataset folder (its train split is used: bbox_train/bounding_box_train).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the shards, label map and summary.")],
    val_fraction: Annotated[float, typer.Option(help="Share of identities held out for validation.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the identity split.")] = 0,
    shards: Annotated[int, typer.Option(min=1, help="Shards per split.")] = 4,
    split: Annotated[
        list[str] | None, typer.Option(help="Split folder(s) to use instead of the train split.")
    ] = None,
    layout: Annotated[str | None, typer.Option(help="Force a layout [default: detect].")] = None,
) -> None:
    """Write identity-disjoint train/validation TFRecord shards (image, labels, camera, tracklet, path)."""
    from ..data.records import write_records

    summary = write_records(data, out, val_fraction, seed, shards, split, layout)
    typer.echo(
        f"train: {summary['train']['images']} images of {summary['train']['identities']} identities; "
        f"val: {summary['val']['images']} images of {summary['val']['identities']} identities -> {out}"
    )
