"""Benchmark: gallery build rate (images/s from JPEG file to committed vector) on real crops.

Measures in one run, on the same files: decoding alone (PIL, the embedder's thread pool),
embedding (decode + tower), and a full `build_gallery` (decode + tower + SQLite + FAISS),
so the ratios say where the time goes. Prints and writes JSON.

    python benchmarks/index_build.py [DATA] [--model M] [--out benchmarks/results/index_build.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import REPO  # noqa: E402

from reid_search import __version__
from reid_search.data.images import load_image
from reid_search.data.layouts import scan_dataset
from reid_search.embedding.embedder import Embedder
from reid_search.gallery import build_gallery

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cuhk03-mars" / "bbox_test"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    parser.add_argument("--model", default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "index_build.json"))
    args = parser.parse_args()

    paths = [r.path for r in scan_dataset(args.data).records]
    embedder = Embedder(args.model, batch_size=args.batch_size)
    embedder.embed_files(paths[: args.batch_size])  # warm-up: trace the graph once
    size = embedder.input_size

    def decode_only() -> None:
        with ThreadPoolExecutor(embedder.workers) as pool:
            list(pool.map(lambda p: load_image(p, size), paths))

    decode_s = timed(decode_only)
    embed_s = timed(lambda: embedder.embed_files(paths))
    with tempfile.TemporaryDirectory() as tmp:
        build_s = timed(lambda: build_gallery(args.data, "bench", embedder, indexes_dir=tmp, progress=False))
    n = len(paths)
    result = {
        "benchmark": "index_build",
        "tool_version": __version__,
        "data": args.data,
        "images": n,
        "model": embedder.card.name,
        "model_sha256": embedder.model_sha256,
        "input_size": list(size),
        "batch_size": args.batch_size,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "decode_images_per_s": round(n / decode_s, 1),
        "embed_images_per_s": round(n / embed_s, 1),
        "build_images_per_s": round(n / build_s, 1),
        "build_over_embed_ratio": round(embed_s / build_s, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
