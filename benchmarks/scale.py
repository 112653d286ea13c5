"""Benchmark: a MARS-sized gallery (1.2M entries) in each FAISS index type.

The vectors: real embeddings of the shared images (cuhk03-mars and the market1501-train
split, embedded by the default model) plus simulated ones drawn around them. Each
simulated entry picks a real vector as its person and adds Gaussian noise scaled so that
its cosine to that vector is about ``--spread`` (0.75 by default, like two sightings of
one person), then is re-normalised; queries are fresh draws of the same kind, never in
the gallery. So the gallery has the cluster structure of real re-ID vectors, at any size.

For ``--entries`` N the gallery is written once into SQLite through the project's own
``Gallery`` API (rows and vectors, one transaction per batch), then every index type is
built from those stored vectors by ``Gallery.reindex`` in a fresh process and measured:
build time, index file size, the process's peak RSS, single-query latency p50/p99 over
``--queries`` queries, and recall@10 against exact search (numpy brute force).

    python benchmarks/scale.py [--entries 1200000] [--types Flat HNSW32 IVF4096,Flat]

Writes ``benchmarks/results/scale.json``: a list of rows ``{"index_type", "entries",
"build_s", "disk_bytes", "peak_rss_bytes", "p50_ms", "p99_ms", "recall_at_10"}`` plus
search parameters; a ``populate`` row gives the SQLite write (time, size, peak RSS).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import DATA, REPO, RESULTS  # noqa: E402

OUT = RESULTS / "scale.json"
WORK = REPO / "runs" / "scale"
TYPES = ("Flat", "HNSW32", "IVF4096,Flat", "IVF4096,PQ32")
PARAMS = {
    "Flat": {},
    "HNSW32": {"efSearch": 128},
    "IVF4096,Flat": {"nprobe": 32},
    "IVF4096,PQ32": {"nprobe": 32},
}


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


def real_vectors(cache: Path) -> np.ndarray:
    """Default-model embeddings of every shared cuhk03-mars and market1501-train image (cached)."""
    if cache.is_file():
        return np.load(cache)
    from reid_search.embedding.embedder import Embedder
    from reid_search.embedding.vectors import image_files

    embedder = Embedder()
    files = image_files(DATA / "cuhk03-mars") + image_files(DATA / "market1501-train")
    vectors, _, _ = embedder.embed_files(files)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def sightings(real: np.ndarray, n: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors around randomly chosen real ones, cosine about ``spread`` to them."""
    dim = real.shape[1]
    centres = real[rng.integers(0, len(real), n)]
    sigma = np.sqrt((1 / spread**2 - 1) / dim)  # |noise|^2 ~ dim sigma^2 -> cos = 1/sqrt(1 + dim sigma^2)
    v = centres + rng.normal(0, sigma, (n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def populate(path: Path, entries: int, real: np.ndarray, spread: float) -> dict:
    """Write ``entries`` rows + vectors through the Gallery API (batches of 10,000)."""
    from reid_search.gallery import Gallery

    rng = np.random.default_rng(0)
    started = time.perf_counter()
    gallery = Gallery.create(
        path,
        {"sha256": "scale-benchmark", "name": "simulated", "embedding_dim": real.shape[1]},
        "image",
        None,
    )
    n_real = min(len(real), entries)
    for start in range(0, entries, 10_000):
        stop = min(entries, start + 10_000)
        ids = np.arange(start, stop)
        real_part = real[start : min(stop, n_real)] if start < n_real else real[:0]
        vectors = np.concatenate([real_part, sightings(real, len(ids) - len(real_part), spread, rng)])
        rows = [
            dict(
                faiss_id=int(i),
                unit_key=f"e{i}",
                signature="",
                path=f"entry{i}.jpg",
                sha256=None,
                person=None,
                kind="identity",
                camera=None,
                tracklet=None,
                frame=None,
                split="",
                width=None,
                height=None,
                n_frames=1,
                added_at="",
            )
            for i in ids
        ]
        gallery.add_units(rows, vectors, [], [])
    gallery.checkpoint()
    gallery.close()
    return {
        "index_type": "populate (SQLite rows + vectors)",
        "entries": entries,
        "build_s": round(time.perf_counter() - started, 1),
        "disk_bytes": (path / "meta.sqlite").stat().st_size,
        "peak_rss_bytes": peak_rss_bytes(),
        "p50_ms": None,  # no index: this row is the SQLite write every index type is built from
        "p99_ms": None,
        "recall_at_10": None,
    }


def exact_top10(path: Path, queries: np.ndarray) -> np.ndarray:
    from reid_search.gallery import Gallery

    best_sims = np.full((len(queries), 10), -np.inf, np.float32)
    best_ids = np.full((len(queries), 10), -1, np.int64)
    with Gallery.open(path) as gallery:
        for ids, vectors in gallery.iter_vectors():
            sims = queries @ vectors.T
            all_sims = np.concatenate([best_sims, sims], axis=1)
            all_ids = np.concatenate([best_ids, np.broadcast_to(ids, sims.shape)], axis=1)
            top = np.argsort(-all_sims, axis=1)[:, :10]
            best_sims = np.take_along_axis(all_sims, top, 1)
            best_ids = np.take_along_axis(all_ids, top, 1)
    return best_ids


def worker(path: Path, index_type: str, queries_file: Path, truth_file: Path) -> dict:
    """In a fresh process: build the index from SQLite, time single queries, measure recall."""
    from reid_search.gallery import Gallery

    queries, truth = np.load(queries_file), np.load(truth_file)
    with Gallery.open(path) as gallery:
        started = time.perf_counter()
        state = gallery.reindex(index_type, PARAMS.get(index_type, {}))
        build_s = time.perf_counter() - started
        gallery.search(queries[:5], 10)  # warm-up
        latencies, found = [], []
        for q in queries:
            t0 = time.perf_counter()
            _, ids = gallery.search(q[None, :], 10)
            latencies.append((time.perf_counter() - t0) * 1000)
            found.append(ids[0])
    recall = np.mean([len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)])
    return {
        "index_type": index_type,
        "entries": state.count,
        "build_s": round(build_s, 1),
        "disk_bytes": (path / "index.faiss").stat().st_size,
        "peak_rss_bytes": peak_rss_bytes(),
        "p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "p99_ms": round(float(np.percentile(latencies, 99)), 3),
        "recall_at_10": round(float(recall), 4),
        "params": state.params if index_type != "Flat" else {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_200_000)
    parser.add_argument("--types", nargs="+", default=list(TYPES))
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=0.75)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument(
        "--worker", nargs=4, metavar=("GALLERY", "TYPE", "QUERIES", "TRUTH"), help=argparse.SUPPRESS
    )
    parser.add_argument("--populate", nargs=2, metavar=("GALLERY", "ENTRIES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        gallery, index_type, queries, truth = args.worker
        print(json.dumps(worker(Path(gallery), index_type, Path(queries), Path(truth))))
        return
    real = real_vectors(WORK / "real-vectors.npy")
    if args.populate:
        print(json.dumps(populate(Path(args.populate[0]), int(args.populate[1]), real, args.spread)))
        return
    path = WORK / f"gallery-{args.entries}"
    if path.exists():
        import shutil

        shutil.rmtree(path)
    run = lambda *extra: json.loads(  # noqa: E731
        subprocess.run([sys.executable, __file__, *extra], check=True, capture_output=True, text=True).stdout
    )
    rows = [run("--populate", str(path), str(args.entries), "--spread", str(args.spread))]
    print(f"populate: {rows[0]['build_s']} s, SQLite {rows[0]['disk_bytes'] / 1e9:.2f} GB", flush=True)
    queries = sightings(real, args.queries, args.spread, np.random.default_rng(1))
    np.save(WORK / "queries.npy", queries)
    np.save(WORK / "truth.npy", exact_top10(path, queries))
    for index_type in args.types:
        row = run("--worker", str(path), index_type, str(WORK / "queries.npy"), str(WORK / "truth.npy"))
        rows.append(row)
        print(
            f"{index_type:<14} build {row['build_s']:7.1f} s  disk {row['disk_bytes'] / 1e6:8.1f} MB  "
            f"RSS {row['peak_rss_bytes'] / 1e9:5.2f} GB  p50 {row['p50_ms']:7.2f} ms  "
            f"p99 {row['p99_ms']:7.2f} ms  recall@10 {row['recall_at_10']:.3f}",
            flush=True,
        )
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
