"""Benchmark: which training levers make a model generalise to cameras it never saw.

Every row trains on the market1501-train split only (its 651 training identities, with the
retail-0277 teacher targets given for them) with the project's own trainer, changing one
lever from the base recipe, and is scored on cuhk03-mars ``bbox_test`` (another campus
and cameras: the leave-one-dataset-out cell, queries camera 1, gallery camera 2) and on
the market1501-train split's ``bounding_box_test`` (same cameras, unseen people).
Base recipe: MobileNetV2 from ImageNet, 128x64, stem + blocks 1-5 frozen with 8 cached
views, triplet + ID + relation (distill) + feature (regress) distillation, AdamW 6e-4,
``--epochs`` epochs. Test-time levers (flip, re-ranking) are rows of cross_domain.py.

    python benchmarks/levers.py --epochs 12 [--only base --only grey] [--runs DIR] [--out FILE]
    python benchmarks/levers.py --only osnet-start --adopt osnet-start=benchmarks/models/market-only.keras

Writes ``benchmarks/results/levers.json``; rows already trained are re-scored only, and a
row interrupted mid-way resumes from its last epoch (its run folder under ``--runs``). A
trained row whose config differs from its lever's recipe stops the run (a stale folder).
The OSNet-start row trains 16 epochs: it is the recipe of cross_domain.py's market-only
model, which ``--adopt`` scores as that row after checking its card's recipe.
The ``base-seed-1`` row repeats the base with another seed: differences between rows
smaller than between these two are noise.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
from _common import REPO, RESULTS  # noqa: E402

from reid_search.embedding.embedder import Embedder
from reid_search.embedding.model_store import card_path
from reid_search.embedding.tower import TowerConfig
from reid_search.evaluation.run import evaluate
from reid_search.training import TrainConfig, parse_losses
from reid_search.training.augment import AugmentConfig
from reid_search.training.loop import cached_views_recipe, train

SHARED = REPO.parent / "shared"
MARKET = SHARED / "data" / "market1501-train"
TEACHER = MARKET / "teacher-omz0277-bounding_box_train.npz"
WEIGHTS = SHARED / "weights" / "mobilenetv2_imagenet_notop.weights.h5"
OSNET = SHARED / "peers" / "osnet_x0_25_msmt17.onnx"
EXTRA = SHARED / "data" / "extra-crops"
EXTRA_TEACHER = EXTRA / "teacher-omz0277.npz"
OUT = RESULTS / "levers.json"
TESTS = {
    "cuhk03-mars bbox_test (unseen cameras)": (SHARED / "data" / "cuhk03-mars" / "bbox_test", [1], [2]),
    "market1501-train split (seen cameras)": (MARKET, None, None),
}


def base_config(out: Path, epochs: int) -> TrainConfig:
    return TrainConfig(
        data=[str(MARKET)],
        out=str(out),
        tower=TowerConfig("mobilenetv2", 128, 64, 256, str(WEIGHTS)),
        augment=AugmentConfig(),
        losses=parse_losses("triplet=1,id=1,distill=10,regress=5"),
        teacher_targets=[str(TEACHER)],
        epochs=epochs,
        lr=6e-4,
        freeze_blocks=5,
        cached_views=8,
    )


def osnet_start(config: TrainConfig, height: int, width: int) -> TrainConfig:
    """The re-ID-pretrained start: OSNet-x0.25's MSMT17 weights, stages 1-2 frozen, 6 cached views."""
    tower = TowerConfig("onnx", height, width, 512, str(OSNET))
    return replace(config, tower=tower, freeze_blocks=2, cached_views=6, lr=3.5e-4, epochs=16)


def levers() -> dict[str, tuple[str, callable]]:
    """name -> (what changes, config -> config)."""
    return {
        "base": ("base recipe", lambda c: c),
        "base-seed-1": ("base recipe, seed 1 (the noise between two runs)", lambda c: replace(c, seed=1)),
        "base-rerun": (
            "base recipe trained again on 29 Nov (the same seed, another TensorFlow: noise between sessions)",
            lambda c: c,
        ),
        "input-192x96": (
            "input 192x96",
            lambda c: replace(c, tower=replace(c.tower, input_height=192, input_width=96)),
        ),
        "input-160x80": (
            "input 160x80 (the default's)",
            lambda c: replace(c, tower=replace(c.tower, input_height=160, input_width=80)),
        ),
        "ibn": (
            "IBN-a in blocks 1-12",
            lambda c: replace(c, tower=replace(c.tower, ibn_blocks=12)),
        ),
        "gem": (
            "GeM pooling (generalised mean, learned power from 3) instead of average pooling",
            lambda c: replace(c, tower=replace(c.tower, pooling="gem")),
        ),
        "grey": ("grey-scale p=0.2", lambda c: replace(c, augment=replace(c.augment, grey=0.2))),
        "randaugment": (
            "light RandAugment",
            lambda c: replace(c, augment=replace(c.augment, randaugment=True)),
        ),
        "no-erasing": ("random erasing off", lambda c: replace(c, augment=replace(c.augment, erase=0.0))),
        "no-colour": ("colour jitter off", lambda c: replace(c, augment=replace(c.augment, colour=0.0))),
        "relation-only": (
            "teacher: relation distillation only",
            lambda c: replace(c, losses=parse_losses("triplet=1,id=1,distill=10")),
        ),
        "feature-only": (
            "teacher: feature distillation only",
            lambda c: replace(c, losses=parse_losses("triplet=1,id=1,regress=5")),
        ),
        "osnet-start": (
            "re-ID start: OSNet-x0.25 (MSMT17) 256x128, stages 1-2 frozen, 6 views, lr 3.5e-4, 16 epochs",
            lambda c: osnet_start(c, 256, 128),
        ),
        "osnet-start-160x80": (
            "re-ID start: OSNet-x0.25 (MSMT17) at the default's 160x80, stages 1-2 frozen, 6 views, "
            "lr 3.5e-4, 16 epochs",
            lambda c: osnet_start(c, 160, 80),
        ),
        "no-teacher": (
            "no teacher",
            lambda c: replace(c, losses=parse_losses("triplet=1,id=1"), teacher_targets=[]),
        ),
        "mixstyle": (
            "MixStyle p=0.5 on the frozen blocks' output (block 5)",
            lambda c: replace(c, mixstyle=0.5),
        ),
        "osnet-teacher": (
            "teacher: the OSNet-start-160x80 row's model instead of retail-0277 (MobileNetV2 student)",
            lambda c: replace(c, teacher_targets=[str(teacher_file(Path(c.out).parent, "osnet-teacher"))]),
        ),
        "two-teachers": (
            "teachers: retail-0277 and the OSNet-start-160x80 row's model, concatenated (each L2-normalised)",
            lambda c: replace(c, teacher_targets=[str(teacher_file(Path(c.out).parent, "two-teachers"))]),
        ),
        "downscale": (
            "low-resolution copies p=0.5 (shrunk to 30-80%, enlarged back)",
            lambda c: replace(c, augment=replace(c.augment, downscale=0.5)),
        ),
        "extra-crops-teacher": (
            "+ extra-crops (5 scenes) through the teacher only (--unlabelled, 16 a batch)",
            lambda c: replace(
                c, unlabelled=[str(EXTRA)], teacher_targets=[*c.teacher_targets, str(EXTRA_TEACHER)]
            ),
        ),
        "extra-crops-named": (
            "+ extra-crops, their 518 people in the identity losses (--named-crops), lone crops teacher only",
            lambda c: replace(
                c, named_crops=[str(EXTRA)], teacher_targets=[*c.teacher_targets, str(EXTRA_TEACHER)]
            ),
        ),
        "adabn": (
            "base model, batch-norm statistics re-estimated on each test set's own images (AdaBN, no labels)",
            lambda c: c,  # the base recipe itself: the lever acts at test time (see TEST_TIME)
        ),
    }


TEST_TIME = {"adabn": "base-rerun"}  # rows that reuse a trained row's model, changing how test sets embed
TEACHER_ROWS = {  # row: (the trained row whose model teaches, keep retail-0277 alongside?)
    "osnet-teacher": ("osnet-start-160x80", False),
    "two-teachers": ("osnet-start-160x80", True),
}


def teacher_file(runs: Path, row: str) -> Path:
    """Where a teacher row's targets are written (``runs/ROW/teacher.npz``)."""
    return runs / row / "teacher.npz"


def write_row_teacher(runs: Path, row: str) -> Path:
    """Targets for a teacher row: the teaching row's model embeds the market training images
    (paths relative to the dataset, as ``--teacher-targets`` reads them); with retail-0277
    kept, each image's target is both vectors L2-normalised and concatenated (512-d)."""
    from reid_search.embedding.vectors import VectorsFile, image_files, read_vectors, write_vectors

    out = teacher_file(runs, row)
    if out.is_file():
        return out
    source, keep_0277 = TEACHER_ROWS[row]
    model = runs / source / "model.keras"
    if not model.is_file():
        raise SystemExit(f"{model}: train the row {source} first (it teaches {row})")
    files = image_files(MARKET / "bounding_box_train")
    vectors, used, failures = Embedder(model).embed_files(files)
    if failures:
        raise SystemExit(f"{failures[0]}")
    paths = [files[i].relative_to(MARKET).as_posix() for i in used]
    if keep_0277:
        teacher = read_vectors(TEACHER)
        table = dict(zip(teacher.paths, teacher.embeddings, strict=True))
        other = np.stack([table[p] for p in paths]).astype(np.float32)
        other /= np.linalg.norm(other, axis=1, keepdims=True)
        vectors = np.concatenate([other, vectors], axis=1) / np.sqrt(2.0)
    write_vectors(out, VectorsFile(paths, vectors, f"teacher of {row}", ""))
    return out


IMAGE_FIELDS = ("data", "unlabelled", "named_crops", "val_fraction", "seed")  # which images train


def borrow_cached_views(config: TrainConfig, runs: Path) -> None:
    """Hard-link the cached views of another lever with the same images, frozen part and augmentation.

    Views cached from the same training images (same folders, held-out share and seed) for
    the same tower, frozen blocks, number of views and augmentation are the same views:
    linking them saves their computation. The trainer still checks the whole key before it
    reads them.
    """
    folder = Path(config.out) / "cache"
    if (folder / "views.json").is_file():
        return
    wanted = cached_views_recipe(config)
    for key_file in sorted(runs.glob("*/cache/views.json")):
        key = json.loads(key_file.read_text())
        lender = key_file.parent.parent / "config.json"
        if not lender.is_file() or not all(key.get(k) == v for k, v in wanted.items()):
            continue
        if set(recipe_differences(json.loads(lender.read_text()), config)) & set(IMAGE_FIELDS):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("views.npy", "views.json"):  # the key last: it vouches for the array
            (folder / name).hardlink_to(key_file.parent / name)
        return


def _by_tail(path: str | None) -> tuple[str, ...] | None:
    """A shared file's path cut to its last two parts: ``../shared/data/x`` ~ ``/work/shared/data/x``."""
    return Path(path).parts[-2:] if path else None


def _comparable(config: dict) -> dict:
    """``config`` without where it was written and how it was spelled, its paths by their tails."""
    tower = {**config["tower"], "backbone_weights": _by_tail(config["tower"]["backbone_weights"])}
    paths = {
        key: [_by_tail(p) for p in config[key]]
        for key in ("data", "teacher_targets", "unlabelled", "named_crops")
    }
    return {k: v for k, v in {**config, **paths, "tower": tower}.items() if k not in ("out", "command")}


def recipe_differences(trained: dict, wanted: TrainConfig) -> list[str]:
    """The hyper-parameters in which a trained run's config differs from ``wanted``.

    Where a run was written and how its command was spelled do not count; paths to the
    shared data compare by their last two parts, so ``../shared/data/x`` matches
    ``/work/shared/data/x``.

    >>> base = base_config(Path("runs/a"), 12)
    >>> recipe_differences(replace(base, out="elsewhere", seed=1).to_dict(), base)
    ['seed']
    """
    have = _comparable(TrainConfig.from_dict(trained).to_dict())
    want = _comparable(wanted.to_dict())
    return sorted(key for key in set(have) | set(want) if have.get(key) != want.get(key))


def check_recipe(card_file: Path, config: TrainConfig) -> None:
    """Stop, in one line naming the file, when a trained model's recipe is not ``config``'s."""
    card = json.loads(card_file.read_text())
    differ = recipe_differences(card["training"]["config"], config)
    if differ:
        raise SystemExit(f"{card_file}: trained with another recipe (differs in {', '.join(differ)})")


def adopt(model: Path, config: TrainConfig) -> None:
    """Take a model trained elsewhere by the same recipe as a lever's row (no retraining).

    Its card's config must match the lever's recipe in every hyper-parameter; the model
    and its card are copied into the lever's run folder.
    """
    card_file = card_path(model)
    check_recipe(card_file, config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, out / "model.keras")
    shutil.copyfile(card_file, out / "model.card.json")


def _training_seconds(training: dict) -> float:
    """Epochs plus the reading and caching before them (older cards: epochs only)."""
    return training["wall_seconds"] + training.get("setup_seconds", 0.0)


def score(model: Path, adapt: bool = False) -> dict[str, dict]:
    """Rank-1 / mAP on each test set; with ``adapt``, the model's batch-norm statistics are first
    re-estimated on that test set's images (no labels)."""
    out = {}
    for name, (source, q, g) in TESTS.items():
        embedder = Embedder(model)
        if adapt:
            from reid_search.data.images import list_images
            from reid_search.embedding.adapt import adapt_batchnorm

            split = Path(source) / "bounding_box_test"
            images = list_images([split if split.is_dir() else source])
            adapted = model.with_name(f"adapted-{Path(source).name}.keras")
            embedder = Embedder(adapt_batchnorm(model, images, adapted))
        report = evaluate(
            source, embedder, query_cameras=q, gallery_cameras=g, single_shot_draws=0, progress=False
        )
        out[name] = {"rank1": round(report.rank(1), 4), "mAP": round(report.summary.mean_ap, 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--runs", default=str(REPO / "runs" / "levers"))
    parser.add_argument("--only", action="append")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--adopt",
        action="append",
        default=[],
        metavar="NAME=MODEL.keras",
        help="score a model trained elsewhere by the lever's exact recipe as its row",
    )
    args = parser.parse_args()
    adopted = {k: Path(v) for k, v in (a.split("=", 1) for a in args.adopt)}
    table = levers()
    out_file = args.out
    previous = {r["name"]: r for r in json.loads(out_file.read_text())} if out_file.is_file() else {}
    for name in args.only or list(table):
        what, change = table[name]
        out = Path(args.runs) / TEST_TIME.get(name, name)
        config = change(base_config(out, args.epochs))
        model = out / "model.keras"
        if name in adopted:
            adopt(adopted[name], config)
        if model.is_file():
            check_recipe(out / "model.card.json", config)
        else:
            resume = (out / "config.json").is_file()
            if name in TEACHER_ROWS:
                write_row_teacher(Path(args.runs), name)
            borrow_cached_views(config, Path(args.runs))
            train(config, resume=resume, log=lambda line, n=name: print(f"[{n}] {line}", flush=True))
        card = json.loads((out / "model.card.json").read_text())
        previous[name] = {
            "name": name,
            "lever": what,
            "epochs": card["training"]["epochs"],
            "train_minutes": round(_training_seconds(card["training"]) / 60, 1),
            "scores": score(model, adapt=name == "adabn"),
            "command": card["training"]["command"],
        }
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps([previous[n] for n in table if n in previous], indent=2) + "\n")
        print(json.dumps(previous[name]["scores"]), flush=True)


if __name__ == "__main__":
    main()
