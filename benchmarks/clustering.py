"""Benchmark: grouping a gallery into people without labels (``reid-search cluster``).

Quality: each labelled test split is indexed with the model, clustered as if it had no
labels (the labels are only read afterwards), and scored with pairwise precision / recall
and the number of clusters against the true number of people. The thresholds come from
*training data only*: the held-out identities of the training splits (``calibrate``'s
split), at the equal error rate and at a false-accept rate of 0.1%. A sweep over fixed
thresholds is printed and saved for reference; it is not how a threshold is chosen.

Cost: ``--cost-entries`` simulated entries (real embeddings plus sightings drawn around
them, as benchmarks/scale.py) clustered from scratch with the gallery's exact (Flat) and
HNSW32 indexes: wall time and peak RSS, each in a fresh process.

    python benchmarks/clustering.py [--model M] [--cost-entries 100000]

Writes ``benchmarks/results/clustering.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import DATA, REPO, RESULTS  # noqa: E402

OUT = RESULTS / "clustering.json"
WORK = REPO / "runs" / "clustering"
TRAIN = [DATA / "cuhk03-mars", DATA / "market1501-train"]
TESTS = {
    "market1501-train bounding_box_test": DATA / "market1501-train" / "bounding_box_test",
    "cuhk03-mars bbox_test": DATA / "cuhk03-mars" / "bbox_test",
}
SWEEP = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)


def thresholds(embedder) -> dict[str, float]:
    """Thresholds chosen on the training splits' held-out identities only."""
    from reid_search.calibration.fit import calibrate_model

    datasets = [str(d) for d in TRAIN]
    return {
        "equal error rate (train held-out)": calibrate_model(embedder, datasets).threshold,
        "false-accept 0.1% (train held-out)": calibrate_model(embedder, datasets, far=0.001).threshold,
    }


def score(gallery, threshold: float, k: int) -> dict:
    from reid_search.evaluation.metrics import pairwise_cluster_scores
    from reid_search.gallery.clusters import cluster_gallery

    report = cluster_gallery(gallery, threshold, k, rebuild=True)
    rows = [r for r in gallery.rows().values() if r["kind"] == "identity"]
    s = pairwise_cluster_scores([r["person"] for r in rows], [r["cluster"] for r in rows])
    return {
        "threshold": round(threshold, 4),
        "k": k,
        "pairwise_precision": round(s.precision, 4),
        "pairwise_recall": round(s.recall, 4),
        "f1": round(s.f1, 4),
        "clusters": s.clusters,
        "people": s.people,
        "entries": len(rows),
        "seconds": round(report.seconds, 2),
    }


def quality(model: str | None, k: int) -> list[dict]:
    from reid_search.embedding.embedder import Embedder
    from reid_search.gallery import build_gallery

    embedder = Embedder(model)
    chosen = thresholds(embedder)
    print(json.dumps(chosen), flush=True)
    rows = []
    for name, folder in TESTS.items():
        gallery, _ = build_gallery(folder, name.split()[0], embedder, indexes_dir=WORK, progress=False)
        for rule, value in chosen.items():
            rows.append({"test_set": name, "rule": rule, **score(gallery, value, k)})
            print(json.dumps(rows[-1]), flush=True)
        for value in SWEEP:
            rows.append({"test_set": name, "rule": "sweep (reference only)", **score(gallery, value, k)})
        gallery.close()
    return rows


def cost_worker(path: Path, index_type: str, k: int) -> dict:
    from scale import peak_rss_bytes

    from reid_search.gallery import Gallery
    from reid_search.gallery.clusters import cluster_gallery

    with Gallery.open(path) as gallery, gallery.writing():
        started = time.perf_counter()
        gallery.reindex(index_type)
        index_s = time.perf_counter() - started
        report = cluster_gallery(gallery, 0.7, k, rebuild=True)
        entries = gallery.size
    return {
        "index_type": index_type,
        "entries": entries,
        "k": k,
        "index_s": round(index_s, 1),
        "cluster_s": round(report.seconds, 1),
        "clusters": report.clusters,
        "peak_rss_bytes": peak_rss_bytes(),
    }


def cost(entries: int, k: int) -> list[dict]:
    from scale import populate, real_vectors

    path = WORK / f"simulated-{entries}"
    shutil.rmtree(path, ignore_errors=True)
    populate(path, entries, real_vectors(WORK / "real-vectors.npy"), 0.75)
    rows = []
    for index_type in ("Flat", "HNSW32"):
        command = [sys.executable, __file__, "--cost-worker", str(path), index_type, str(k)]
        rows.append(json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file [default: the package default]")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--cost-entries", type=int, default=100_000)
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--cost-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cost_worker:
        path, index_type, k = args.cost_worker
        print(json.dumps(cost_worker(Path(path), index_type, int(k))))
        return
    shutil.rmtree(WORK / "market1501-train", ignore_errors=True)
    shutil.rmtree(WORK / "cuhk03-mars", ignore_errors=True)
    result = {"model": args.model or "default", "quality": quality(args.model, args.k)}
    if not args.skip_cost:
        result["cost"] = cost(args.cost_entries, args.k)
    elif OUT.is_file():
        result["cost"] = json.loads(OUT.read_text()).get("cost", [])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
