"""Benchmark: the real server under load on loopback.

Builds a gallery of cuhk03-mars ``bbox_test`` (938 real crops), starts ``reid-search
serve`` in its own process and measures:

* **throughput and latency at 1, 8 and 32 client threads**: ``--queries`` POST /api/query
  each (one real crop from ``bbox_train``, never in the gallery): queries/s, p50 / p99,
  errors (any non-200 or malformed answer);
* **responsiveness under load**: while the 32 clients query, a prober asks ``/api/health``
  and a thumbnail every 50 ms: their p50 / p99;
* **one heavy request**: a client sends 32 PNGs of 25 MP each (16-bit RGBA, about 200 KB
  each) in one query while the prober asks ``/api/health``: the heavy request's status and
  time, health p99 meanwhile;
* the server's resident memory sampled through the run (flat after warm-up = no leak).

    python benchmarks/serve_load.py [--queries 300]

Writes ``benchmarks/results/serve_load.json``. Time it on an idle machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _common import DATA, REPO, write_result

CUHK = DATA / "cuhk03-mars"
LEVELS = (1, 8, 32)
LEVEL_QUERIES = [300]  # queries per level (set from --queries)


def rss_mb(pid: int) -> float:
    """Resident memory of the server: the process and its worker children, in MB."""
    total = 0.0
    for proc in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{proc}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        out += [int(c) for c in children]
    return out + [g for c in out for g in _children(c)]


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, data in files:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{name}"\r\n\r\n'
        parts.append(head.encode() + data + b"\r\n")
    for key, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post(url: str, files: list[tuple[str, bytes]], timeout: float = 120) -> tuple[float, int, dict]:
    body, content_type = multipart(files, {"top_k": "10"})
    request = urllib.request.Request(f"{url}/api/query", body, {"Content-Type": content_type})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return time.perf_counter() - started, response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return time.perf_counter() - started, exc.code, {}
    except Exception:  # any failure counts as an error
        return time.perf_counter() - started, 0, {}


def get_ms(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
    return 1000 * (time.perf_counter() - started)


class Prober(threading.Thread):
    """Asks ``urls`` in turn every ``every`` seconds until stopped; latencies per URL."""

    def __init__(self, urls: dict[str, str], every: float = 0.05):
        super().__init__(daemon=True)
        self.urls, self.every = urls, every
        self.times: dict[str, list[float]] = {k: [] for k in urls}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for key, url in self.urls.items():
                self.times[key].append(get_ms(url))
            self.stop.wait(self.every)

    def summary(self) -> dict:
        return {k: percentiles(np.array(v)) for k, v in self.times.items()}


def percentiles(ms: np.ndarray) -> dict:
    if len(ms) == 0:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def load_level(url: str, probes: list[Path], threads: int, server_pid: int, memory: list) -> dict:
    def one(path: Path) -> tuple[float, bool]:
        seconds, status, answer = post(url, [(path.name, path.read_bytes())])
        memory.append(rss_mb(server_pid))
        return seconds, status == 200 and len(answer.get("results", [])) == 10

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(one, probes))
    wall = time.perf_counter() - started
    latency = np.array([r[0] for r in results]) * 1000
    return {
        "client_threads": threads,
        "queries": len(probes),
        "errors": int(sum(not ok for _, ok in results)),
        "queries_per_s": round(len(probes) / wall, 1),
        **{k: v for k, v in percentiles(latency).items() if k != "n"},
    }


def heavy_pngs(count: int = 32, side: int = 5000) -> list[tuple[str, bytes]]:
    """``count`` PNGs of ``side`` x ``side`` (25 MP), 16-bit RGBA, all zero (tiny files)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("I;16", (side, side)).save(out, "PNG")  # grey 16-bit; promoted to RGBA below
    grey = out.getvalue()
    return [(f"big{i}.png", grey) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300, help="queries per concurrency level")
    parser.add_argument("--workers", type=int, default=2, help="server processes (serve --workers)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="reid-serve-load-"))
    env = {**os.environ, "REID_SEARCH_INDEXES": str(work / "indexes")}
    cli = [sys.executable, str(REPO / "cli.py")]
    subprocess.run([*cli, "index", str(CUHK / "bbox_test"), "--name", "cuhk", "-q"], env=env, check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([*cli, "serve", "--port", str(port), "--workers", str(args.workers)], env=env)
    url = f"http://127.0.0.1:{port}"
    memory: list[float] = []
    LEVEL_QUERIES[0] = args.queries
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{url}/api/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        (gallery,) = json.loads(urllib.request.urlopen(f"{url}/api/galleries").read())
        all_probes = sorted((CUHK / "bbox_train").rglob("*.jpg"))
        rng = np.random.default_rng(0)
        first = all_probes[0]
        post(url, [(first.name, first.read_bytes())])  # loads the model: not measured
        idle_health = percentiles(np.array([get_ms(f"{url}/api/health") for _ in range(50)]))
        levels = []
        under_load = {}
        for threads in LEVELS:
            probes = [all_probes[i] for i in rng.choice(len(all_probes), args.queries, replace=False)]
            prober = Prober({"health": f"{url}/api/health", "thumbnail": f"{url}/api/thumb/cuhk/0"})
            prober.start()
            levels.append(load_level(url, probes, threads, server.pid, memory))
            prober.stop.set()
            prober.join()
            under_load[threads] = prober.summary()
            print(json.dumps({**levels[-1], "probes": under_load[threads]}))
        prober = Prober({"health": f"{url}/api/health"})
        prober.start()
        heavy_seconds, heavy_status, _ = post(url, heavy_pngs())
        time.sleep(0.5)
        prober.stop.set()
        prober.join()
        heavy = {
            "request": "32 PNGs of 5000 x 5000 (25 MP each, 16-bit) in one /api/query",
            "status": heavy_status,
            "seconds": round(heavy_seconds, 2),
            "health_meanwhile": prober.summary()["health"],
        }
        print(json.dumps(heavy))
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    one, many = levels[0], levels[-1]
    warm = memory[-LEVEL_QUERIES[0] // 2 :] if memory else []  # the second half of the 32-client level
    result = {
        "gallery": f"cuhk03-mars bbox_test ({gallery['size']} entries, {gallery['index']})",
        "server_workers": args.workers,
        "idle_health": idle_health,
        "levels": levels,
        "probes_under_load": {str(k): v for k, v in under_load.items()},
        "heavy_request": heavy,
        "scaling_32_vs_1": round(many["queries_per_s"] / one["queries_per_s"], 2),
        "errors": sum(level["errors"] for level in levels),
        "server_rss_mb": {
            "start": round(memory[0], 1) if memory else None,
            "mid_32_clients": round(warm[0], 1) if warm else None,
            "end": round(memory[-1], 1) if memory else None,
            "growth_in_second_half_of_32_clients": round(warm[-1] - warm[0], 1) if warm else None,
        },
        "required": {
            "health_p99_under_32_clients_ms_below": 50,
            "scaling_32_vs_1_at_least": 1.6,
            "health_p99_during_heavy_request_ms_below": 100,
        },
    }
    write_result("serve_load", result)
    print(json.dumps({k: result[k] for k in ("scaling_32_vs_1", "errors", "server_rss_mb")}, indent=2))


if __name__ == "__main__":
    main()
