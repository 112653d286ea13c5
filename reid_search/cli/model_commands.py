"""Commands about models: train, calibrate, export, adapt, embed, records."""

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
    _input_size,
    _make_embedder,
    app,
    friendly_errors,
)


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
    embedding_dim: Annotated[int, typer.Option(min=1, help="Embedding size.")] = 256,
    backbone_weights: Annotated[
        str | None,
        typer.Option(
            help="MobileNetV2 init: a .weights.h5 file or 'imagenet' (download); onnx: the .onnx network."
        ),
    ] = None,
    loss: Annotated[
        str,
        typer.Option(
            help="Weighted losses: pair, contrastive, triplet, id, cosface, distill, regress; "
            "e.g. 'triplet=1,id=1'."
        ),
    ] = "triplet=1,id=1",
    triplet_margin: Annotated[float, typer.Option(help="Batch-hard triplet margin; 0 = soft margin.")] = 0.3,
    contrastive_margin: Annotated[float, typer.Option(help="Contrastive margin.")] = 1.0,
    label_smoothing: Annotated[float, typer.Option(help="ID (and cosface) loss label smoothing.")] = 0.1,
    cosface_scale: Annotated[float, typer.Option(help="Cosface loss: scale of the cosine logits.")] = 30.0,
    cosface_margin: Annotated[
        float, typer.Option(help="Cosface loss: margin taken off the true class's cosine.")
    ] = 0.25,
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
    named_crops: Annotated[
        list[Path] | None,
        typer.Option(
            help="Folder of crops named PERSON_anything.jpg, each sub-folder its own scene: people "
            "with 2+ crops join the identity losses, single crops learn from the teacher only "
            "(left out without a distill/regress loss); no validation (cameras unknown). Repeatable."
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
    pooling: Annotated[
        str,
        typer.Option(help="MobileNetV2 pooling: avg, or gem (generalised mean, learned power)."),
    ] = "avg",
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
    downscale: Annotated[
        float, typer.Option(help="Probability of a low-resolution copy (shrunk to 30-80%, enlarged back).")
    ] = 0.0,
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
        int | None, typer.Option(min=1, help="CPU threads TensorFlow may use [default: all cores].")
    ] = None,
) -> None:
    """Train the siamese tower; writes a checkpoint each epoch and exports model.keras with its card.

    --resume continues the run in --out at the step it stopped; only --epochs, --threads and
    --export may be given with it. --config RUN/config.json reruns a run into a new --out.
    """
    from ..embedding.backends import import_tensorflow_quietly

    tf = import_tensorflow_quietly()
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    from ..embedding.tower import TowerConfig, default_input_size
    from ..training import TrainConfig, parse_losses
    from ..training import train as run_training
    from ..training.augment import AugmentConfig

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
            tower=TowerConfig(architecture, h, w, embedding_dim, backbone_weights, seed, ibn_blocks, pooling),
            augment=AugmentConfig(flip, pad, colour_jitter, random_erasing, randaugment, grey, downscale),
            losses=parse_losses(loss),
            triplet_margin=triplet_margin or None,
            contrastive_margin=contrastive_margin,
            label_smoothing=label_smoothing,
            cosface_scale=cosface_scale,
            cosface_margin=cosface_margin,
            teacher_targets=[str(t) for t in teacher_targets or []],
            unlabelled=[str(u) for u in unlabelled or []],
            named_crops=[str(n) for n in named_crops or []],
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
    result = run_training(config, resume=resume, log=typer.echo, epochs=epochs if "epochs" in given else None)
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
        "max_crops": max_crops,
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
