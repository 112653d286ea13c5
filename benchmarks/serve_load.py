"""Benchmark: the real server under load on loopback.

Builds a gallery of cuhk03-mars ``bbox_test`` (938 real crops), starts ``reid-search
serve`` in its own process, and sends ``--queries`` POST /api/query requests (one real
crop each, from ``bbox_train``: never in the gallery) from ``--threads`` client threads.
Reports latency p50 / p99 / max, throughput, errors (any non-200 or malformed answer),
and the server's resident memory sampled every ``--sample-every`` requests (flat memory =
no leak per request).

    python benchmarks/serve_load.py [--queries 500 --threads 8]

Writes ``benchmarks/results/serve_load.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cuhk03-mars"
OUT = REPO / "benchmarks" / "results" / "serve_load.json"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def multipart(path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{path.name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    tail = f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="top_k"\r\n\r\n10\r\n--{boundary}--\r\n'
    return head + path.read_bytes() + tail.encode(), f"multipart/form-data; boundary={boundary}"


def ask(url: str, path: Path) -> tuple[float, bool]:
    body, content_type = multipart(path)
    request = urllib.request.Request(f"{url}/api/query", body, {"Content-Type": content_type})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
            ok = response.status == 200 and len(answer["results"]) == 10
    except Exception:  # any failure counts as an error
        ok = False
    return time.perf_counter() - started, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--sample-every", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="reid-serve-load-"))
    env = {**os.environ, "REID_SEARCH_INDEXES": str(work / "indexes")}
    cli = [sys.executable, str(REPO / "cli.py")]
    subprocess.run([*cli, "index", str(DATA / "bbox_test"), "--name", "cuhk", "-q"], env=env, check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{url}/api/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        probes = sorted((DATA / "bbox_train").rglob("*.jpg"))
        probes = [
            probes[i] for i in np.random.default_rng(0).choice(len(probes), args.queries, replace=False)
        ]
        ask(url, probes[0])  # the first query loads the model: not part of the measurement
        memory = [(0, rss_mb(server.pid))]
        done, lock = [0], threading.Lock()

        def one(path: Path) -> tuple[float, bool]:
            result = ask(url, path)
            with lock:
                done[0] += 1
                if done[0] % args.sample_every == 0:
                    memory.append((done[0], rss_mb(server.pid)))
            return result

        started = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            results = list(pool.map(one, probes))
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    latency = np.array([r[0] for r in results]) * 1000
    row = {
        "queries": args.queries,
        "client_threads": args.threads,
        "gallery": "cuhk03-mars bbox_test (938 entries, Flat)",
        "errors": int(sum(not r[1] for r in results)),
        "p50_ms": round(float(np.percentile(latency, 50)), 1),
        "p99_ms": round(float(np.percentile(latency, 99)), 1),
        "max_ms": round(float(latency.max()), 1),
        "queries_per_s": round(args.queries / wall, 1),
        "server_rss_mb": [{"after_queries": n, "rss_mb": round(m, 1)} for n, m in memory],
    }
    growth = memory[-1][1] - memory[1][1] if len(memory) > 2 else 0.0
    row["rss_growth_mb_after_warmup"] = round(growth, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
