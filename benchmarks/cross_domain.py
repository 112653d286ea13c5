"""Benchmark: how well each model recognises people on cameras it has (or has not) seen.

Every model runs through the project's own backends and evaluation on four test sets of
people never trained on:

* ``cuhk03-mars bbox_test``: 100 people, queries camera 1, gallery camera 2;
* ``market1501-train split``: ``bounding_box_test`` of ../shared/data/market1501-train
  (100 people, 6 cameras), every image queries all others, the same person on the same
  camera is junk. This is NOT the published Market-1501 protocol.
* ``cuhk01-mars bbox_test``: 100 people, two other CUHK cameras, camera 1 -> camera 2;
* ``conreid``: 131 construction workers, 6 CCTV cameras, every image queries all others
  (same person and camera junk): a domain like nothing any model here trained on. Test
  only: nothing is trained, tuned or chosen on it.

Rows: the default model, models trained on one dataset only (the leave-one-dataset-out
cells are the honest measure of generalisation) and the three peers (OSNet-x0.25,
retail-0288, retail-0277). ``images_per_s`` is the whole evaluation (decode, model,
scoring) divided into the test set's images. ``--variant rerank`` / ``flip`` add rows
with k-reciprocal re-ranking or flip test-time augmentation.

    python benchmarks/cross_domain.py [--model NAME=PATH ...] [--only NAME] [--variant rerank]

Writes ``benchmarks/results/cross_domain.json``: a list of rows ``{"model", "trained_on",
"test_set", "rank1", "mAP", "images_per_s"}`` (fractions), plus ``variant`` and details.
Rows of models not given this time are kept from the previous file.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import DATA, PEER_CARDS, REPO  # noqa: E402
from _common import RESULTS as RESULTS_DIR  # noqa: E402

from reid_search.embedding.embedder import Embedder
from reid_search.evaluation.run import evaluate
from reid_search.search.rerank import RerankConfig

RESULTS = RESULTS_DIR / "cross_domain.json"

TEST_SETS = {
    "cuhk03-mars bbox_test": {
        "source": DATA / "cuhk03-mars" / "bbox_test",
        "query_cameras": [1],
        "gallery_cameras": [2],
    },
    "market1501-train split": {
        "source": DATA / "market1501-train",
        "query_cameras": None,
        "gallery_cameras": None,
    },
    "cuhk01-mars bbox_test": {
        "source": DATA / "cuhk01-mars" / "bbox_test",
        "query_cameras": [1],
        "gallery_cameras": [2],
    },
    "conreid": {
        "source": DATA / "conreid",
        "query_cameras": None,
        "gallery_cameras": None,
    },
}

MODELS = {
    "default": REPO / "reid_search" / "models" / "default.keras",
    "lodo-no-cuhk03": REPO / "benchmarks" / "models" / "lodo-no-cuhk03.keras",
    "lodo-no-market": REPO / "benchmarks" / "models" / "lodo-no-market.keras",
    "osnet-start-all": REPO / "benchmarks" / "models" / "osnet-start-all-160.keras",
    "osnet-lodo-no-cuhk03": REPO / "benchmarks" / "models" / "osnet-lodo-no-cuhk03.keras",
    "osnet-lodo-no-market": REPO / "benchmarks" / "models" / "osnet-lodo-no-market.keras",
    "market-only": REPO / "benchmarks" / "models" / "market-only.keras",
    "cuhk03-only": REPO / "benchmarks" / "models" / "cuhk03-only.keras",
    **PEER_CARDS,
}
VARIANTS = ("plain", "rerank", "flip")


def trained_on(card) -> str:
    """Short names of the data a model learnt from (its card), e.g. 'cuhk03-mars + market1501-train'."""
    data = card.training.get("data", "")
    if "by" in card.training:  # a peer's card: a description, not dataset folders
        return str(data)
    names = [Path(d).name for d in ([data] if isinstance(data, str) else data)]
    init = card.tower_config.get("backbone_weights") or ""
    start = " (from OSNet-x0.25 MSMT17)" if str(init).endswith(".onnx") else ""
    return " + ".join(names) + start


def run_cell(embedder: Embedder, test_set: str, variant: str) -> dict:
    spec = TEST_SETS[test_set]
    started = time.perf_counter()
    report = evaluate(
        spec["source"],
        embedder,
        query_cameras=spec["query_cameras"],
        gallery_cameras=spec["gallery_cameras"],
        single_shot_draws=0,
        progress=False,
        rerank=RerankConfig() if variant == "rerank" else None,
    )
    seconds = time.perf_counter() - started
    return {
        "test_set": test_set,
        "rank1": round(report.rank(1), 6),
        "mAP": round(report.summary.mean_ap, 6),
        "mINP": round(report.summary.mean_inp, 6),
        "images_per_s": round(len(report.items.paths) / seconds, 1),
        "queries": report.summary.n_scored,
        "gallery": len(report.protocol.gallery),
    }


def run_model(name: str, path: Path, variants: list[str], test_sets: list[str]) -> list[dict]:
    rows = []
    for variant in variants:
        embedder = Embedder(path, flip=variant == "flip")
        embedder.embed_files(sorted((DATA / "mars-samples").glob("*.jpg")))  # warm-up
        for test_set in test_sets:
            cell = run_cell(embedder, test_set, variant)
            rows.append(
                {
                    "model": name,
                    "trained_on": trained_on(embedder.card),
                    **cell,
                    "variant": variant,
                    "model_file": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path),
                    "model_sha256": embedder.model_sha256,
                }
            )
            print(
                f"{name:<14} {variant:<7} {test_set:<24} rank-1 {100 * cell['rank1']:5.1f}%  "
                f"mAP {100 * cell['mAP']:5.1f}%  {cell['images_per_s']:6.1f} img/s",
                flush=True,
            )
    return rows


def markdown(rows: list[dict]) -> str:
    """One line per (model, variant): rank-1 / mAP on each test set, and images/s."""
    sets = list(TEST_SETS)
    head = "| model | trained on | " + " | ".join(f"{s} R1 / mAP" for s in sets) + " | img/s |"
    lines = [head, "|" + "---|" * (len(sets) + 3)]
    keys = list(dict.fromkeys((r["model"], r["variant"]) for r in rows))
    for model, variant in keys:
        mine = {r["test_set"]: r for r in rows if (r["model"], r["variant"]) == (model, variant)}
        label = model if variant == "plain" else f"{model} + {variant}"
        cells = " | ".join(
            f"{100 * mine[s]['rank1']:.1f} / {100 * mine[s]['mAP']:.1f}" if s in mine else "-" for s in sets
        )
        rate = min(r["images_per_s"] for r in mine.values())
        lines.append(f"| {label} | {next(iter(mine.values()))['trained_on']} | {cells} | {rate:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="NAME=PATH (adds or replaces a row)")
    parser.add_argument("--only", action="append", help="model name to run (repeatable)")
    parser.add_argument("--variant", action="append", choices=VARIANTS, help="default: plain")
    parser.add_argument("--test-set", action="append", choices=list(TEST_SETS), help="default: all")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    models = dict(MODELS)
    for item in args.model:
        name, _, path = item.partition("=")
        models[name] = Path(path).resolve()
    names = args.only or [n for n, p in models.items() if p.is_file()]
    variants = args.variant or ["plain"]
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.is_file() else []
    for name in names:
        fresh = run_model(name, models[name], variants, args.test_set or list(TEST_SETS))
        done = {(r["model"], r["variant"], r["test_set"]) for r in fresh}
        previous = [
            r for r in previous if (r["model"], r.get("variant", "plain"), r["test_set"]) not in done
        ] + fresh
        order = {n: i for i, n in enumerate(models)}
        sets = list(TEST_SETS)
        previous.sort(
            key=lambda r: (
                order.get(r["model"], len(order)),
                VARIANTS.index(r.get("variant", "plain")),
                sets.index(r["test_set"]),
            )
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(previous, indent=2) + "\n")
    print(markdown(previous))


if __name__ == "__main__":
    main()
