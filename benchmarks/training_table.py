"""Benchmark: towers and losses trained with the same epoch budget, scored on real held-out people.

Each row is trained by the project's own trainer on ``cuhk03-mars`` (``bbox_train`` only:
669 training + 74 validation identities), then evaluated by the engine on ``bbox_test``
(100 unseen people; queries = camera 1, gallery = camera 2, multi-shot mAP, single-shot
rank-1 = mean of 10 draws of one gallery image per person), and its tower timed from JPEG
file to vector on this machine. Prints a Markdown table and writes JSON.

    python benchmarks/training_table.py --epochs 12 [--only mnv2-triplet-id] [--runs runs/table]

Rows already trained (their model.keras exists) are re-evaluated, not re-trained.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import DATA as SHARED_DATA  # noqa: E402
from _common import REPO  # noqa: E402

from reid_search.embedding.embedder import Embedder
from reid_search.embedding.tower import TowerConfig
from reid_search.evaluation.run import evaluate
from reid_search.training import TrainConfig, parse_losses
from reid_search.training.loop import train

DATA = SHARED_DATA / "cuhk03-mars"
WEIGHTS = REPO.parent / "shared" / "weights" / "mobilenetv2_imagenet_notop.weights.h5"

FAST = {"freeze_blocks": 5, "cached_views": 8}  # as the default: frozen stem + blocks 1-5, 8 cached views


def rows() -> dict[str, dict]:
    """name -> (tower, losses, trainer options). Every row gets the same number of epochs.

    All towers read 128x64 crops (the seed tower's own 256x128 would cost 4x the compute);
    the teacher-distilled recipe is the default model's, reported beside this table.
    """
    mnv2 = TowerConfig("mobilenetv2", 128, 64, 256, str(WEIGHTS))
    scratch = TowerConfig("mobilenetv2", 128, 64, 256, None)
    seed_tower = TowerConfig("seed", 128, 64, 256, None)
    return {
        "seed-pair": {"tower": seed_tower, "losses": "pair", "opts": {}},
        "mnv2-pair": {"tower": mnv2, "losses": "pair", "opts": FAST},
        "mnv2-contrastive": {"tower": mnv2, "losses": "contrastive", "opts": FAST},
        "mnv2-triplet-id": {"tower": mnv2, "losses": "triplet,id", "opts": FAST},
        "mnv2-triplet-id-full": {"tower": mnv2, "losses": "triplet,id", "opts": {}},
        "scratch-triplet-id-full": {"tower": scratch, "losses": "triplet,id", "opts": {}},
    }


def throughput(model: Path) -> float:
    """Images/s from JPEG file to vector over bbox_test (one warm-up pass first)."""
    paths = sorted(str(p) for p in (DATA / "bbox_test").rglob("*.jpg"))
    embedder = Embedder(model)
    embedder.embed_files(paths[:64])
    started = time.perf_counter()
    embedder.embed_files(paths)
    return len(paths) / (time.perf_counter() - started)


def run_row(name: str, spec: dict, epochs: int, runs: Path, lr: float) -> dict:
    from levers import check_recipe

    out = runs / name
    model = out / "model.keras"
    config = TrainConfig(
        data=str(DATA),
        out=str(out),
        tower=spec["tower"],
        losses=parse_losses(spec["losses"]),
        epochs=epochs,
        lr=lr,
        **spec["opts"],
    )
    if model.is_file():
        check_recipe(out / "model.card.json", config)  # a stale run folder stops, naming the difference
    else:
        train(config, log=lambda line: print(f"[{name}] {line}", flush=True))
    card = json.loads((out / "model.card.json").read_text())
    report = evaluate(
        DATA / "bbox_test",
        Embedder(model),
        query_cameras=[1],
        gallery_cameras=[2],
        single_shot_draws=10,
        progress=False,
    ).to_dict()
    return {
        "name": name,
        "architecture": spec["tower"].architecture,
        "imagenet_init": bool(spec["tower"].backbone_weights),
        "losses": spec["losses"],
        "trainer_options": spec["opts"],
        "epochs": card["training"]["epochs"],
        "train_wall_seconds": card["training"]["wall_seconds"],
        "rank1": report["rank1"],
        "mAP": report["mAP"],
        "single_shot_rank1": report["single_shot_rank1"],
        "images_per_second": round(throughput(model), 1),
        "val_rank1": card["metrics"]["validation"].get("rank1"),
        "model": str(model),
        "command": card["training"]["command"],
    }


def markdown(results: list[dict]) -> str:
    head = (
        "| run | tower | ImageNet | trained | losses | epochs | train min | rank-1 | mAP "
        "| single-shot R1 | img/s |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in results:
        opts = r["trainer_options"]
        cached = opts.get("cached_views")
        trained = f"blocks {opts['freeze_blocks'] + 1}+ (cached)" if cached else "all layers"
        lines.append(
            f"| {r['name']} | {r['architecture']} | {'yes' if r['imagenet_init'] else 'no'} | {trained} | "
            f"{r['losses']} | {r['epochs']} | {r['train_wall_seconds'] / 60:.1f} | "
            f"{100 * r['rank1']:.1f}% | {100 * r['mAP']:.1f}% | "
            f"{100 * r['single_shot_rank1']:.1f}% | {r['images_per_second']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=3.5e-4)
    parser.add_argument("--runs", default=str(REPO / "runs" / "table"))
    parser.add_argument("--only", action="append", help="row name (repeatable)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "training_table.json"))
    args = parser.parse_args()
    specs = rows()
    names = args.only or list(specs)
    out = Path(args.out)
    previous = {r["name"]: r for r in json.loads(out.read_text())["rows"]} if out.is_file() else {}
    for name in names:
        previous[name] = run_row(name, specs[name], args.epochs, Path(args.runs), args.lr)
        results = [previous[n] for n in specs if n in previous]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "benchmark": "training_table",
                    "epochs": args.epochs,
                    "lr": args.lr,
                    "protocol": "bbox_test, queries camera 1, gallery camera 2",
                    "rows": results,
                },
                indent=2,
            )
            + "\n"
        )
        print(markdown(results), flush=True)


if __name__ == "__main__":
    main()
