"""Benchmark: ``reid-search index`` with the local engine against the Ray engine (1 and 2 actors).

The same copy of cuhk03-mars ``bbox_train`` (7,239 real JPEGs) is indexed from scratch by
the real command line, whole process (start-up, and for Ray starting a local Ray and its
actors, included), ``--runs`` times per engine, with the default model. On one 2-core
machine this measures the Ray engine's overhead, not a cluster's speed-up.

    python benchmarks/ray_speed.py [--runs 2]

Writes ``benchmarks/results/ray_speed.json``: rows ``{"engine", "actors", "images",
"seconds", "images_per_s"}`` (the median run) plus each run's seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import REPO, RESULTS  # noqa: E402

SOURCE = REPO.parent / "shared" / "data" / "cuhk03-mars" / "bbox_train"
OUT = RESULTS / "ray_speed.json"
ENGINES = {"local": [], "ray, 1 actor": ["--engine", "ray", "--ray-actors", "1"]}
ENGINES["ray, 2 actors"] = ["--engine", "ray", "--ray-actors", "2"]


def one_run(data: Path, options: list[str], indexes: Path) -> float:
    shutil.rmtree(indexes, ignore_errors=True)
    command = ["reid-search", "index", str(data), "--name", "speed", "--indexes-dir", str(indexes), "-q"]
    started = time.perf_counter()
    subprocess.run([*command, *options], check=True, capture_output=True)
    seconds = time.perf_counter() - started
    subprocess.run(["ray", "stop", "--force"], capture_output=True)  # no Ray left between runs
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bbox_train"
        shutil.copytree(SOURCE, data)
        images = sum(1 for _ in data.rglob("*.jpg"))
        rows = []
        for engine, options in ENGINES.items():
            runs = [one_run(data, options, Path(tmp) / "indexes") for _ in range(args.runs)]
            median = statistics.median(runs)
            rows.append(
                {
                    "engine": engine.split(",")[0],
                    "actors": int(options[-1]) if options else None,
                    "images": images,
                    "seconds": round(median, 1),
                    "images_per_s": round(images / median, 1),
                    "runs_seconds": [round(r, 1) for r in runs],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            time.sleep(2)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
