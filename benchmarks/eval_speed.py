"""Benchmark: vectorised evaluation at MARS scale and beyond, on synthetic vectors.

* the MARS official protocol's sizes: 1,980 query tracklets x 12,180 gallery tracklets
  (600 people, 6 cameras, 256-d vectors drawn around a centre per person); target < 2 s;
* a per-frame gallery: 2,000 queries x 100,000 gallery frames.

    python benchmarks/eval_speed.py [--repeats 3]

Prints the times and writes ``benchmarks/results/eval_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import RESULTS  # noqa: E402

from reid_search.evaluation.metrics import summarise
from reid_search.evaluation.protocols import EvalItems, Protocol
from reid_search.evaluation.run import score_protocol

OUT = RESULTS / "eval_speed.json"


def synthetic(n_gallery: int, n_query: int, people: int, dim: int = 256, seed: int = 0):
    rng = np.random.default_rng(seed)
    persons = rng.integers(0, people, n_gallery)
    centres = rng.normal(size=(people, dim)).astype(np.float32)
    vectors = centres[persons] + rng.normal(size=(n_gallery, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = EvalItems.from_labels(vectors, persons, cameras=rng.integers(1, 7, n_gallery))
    query = rng.choice(n_gallery, n_query, replace=False)
    return items, Protocol("synthetic", "", query, np.arange(n_gallery))


def timed(items, protocol, repeats: int) -> dict:
    times, summary = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        summary = summarise(score_protocol(items, protocol))
        times.append(time.perf_counter() - started)
    return {
        "queries": len(protocol.query),
        "gallery": len(protocol.gallery),
        "seconds_min": round(min(times), 3),
        "seconds_median": round(float(np.median(times)), 3),
        "rank1": round(summary.rank(1), 4),
        "mAP": round(summary.mean_ap, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = [
        {"case": "mars-official sizes", **timed(*synthetic(12180, 1980, 600), args.repeats)},
        {"case": "per-frame gallery", **timed(*synthetic(100_000, 2000, 1000), args.repeats)},
    ]
    for r in rows:
        size = f"{r['queries']} x {r['gallery']}"
        print(f"{r['case']:<22} {size}: {r['seconds_min']:.2f} s (min of {args.repeats})")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
