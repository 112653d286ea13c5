"""Benchmark: the real server under four kinds of abuse on loopback, and what each costs it.

Starts ``reid-search serve --token T`` (default workers) on a gallery of the 938 cuhk03-mars
``bbox_test`` crops and one of the Intel sample video, then, one after the other:

* **slowloris**: 1,100 connections that send half their headers and then a byte every 5 s;
* **frame flood**: 48 threads asking ``/api/frame`` for late frames of the video;
* **multipart flood**: 8 parallel bodies of 240 parts of 1 MiB each;
* **chunked flood**: a chunked upload of up to 1.5 GB without the token (how much does the
  server read before it closes the connection?).

During each, a prober asks ``/api/health`` every 50 ms (p50 / p99 / failures), and the
server's memory, open files (its processes' descriptors) and temporary disk (its TMPDIR) are
sampled. Required: health p99 < 100 ms during each, open files and temp disk bounded by the
settings, memory flat.

    python benchmarks/serve_abuse.py [--seconds 20]

Writes ``benchmarks/results/serve_abuse.json``. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
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
from pathlib import Path

import numpy as np
from _common import DATA, REPO, write_result
from serve_load import _children, percentiles, rss_mb

TOKEN = "abuse-benchmark-token"


def server_processes(pid: int) -> list[int]:
    """The server and its worker processes (threads come and go while they are listed)."""
    try:
        return [pid, *_children(pid)]
    except OSError:
        return [pid]


def open_files(pid: int) -> int:
    total = 0
    for proc in server_processes(pid):
        try:
            total += len(os.listdir(f"/proc/{proc}/fd"))
        except OSError:
            continue
    return total


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class Watch(threading.Thread):
    """Health every 50 ms (with the token) and the server's costs every 0.5 s, until stopped."""

    def __init__(self, url: str, pid: int, tmp: Path):
        super().__init__(daemon=True)
        self.url, self.pid, self.tmp = url, pid, tmp
        self.health: list[float] = []
        self.failures = 0
        self.samples: list[tuple[float, int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        last = 0.0
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                request = urllib.request.Request(f"{self.url}/api/health", headers={"X-Token": TOKEN})
                with urllib.request.urlopen(request, timeout=10) as response:
                    response.read()
                self.health.append(1000 * (time.perf_counter() - started))
            except OSError:
                self.failures += 1
            if time.perf_counter() - last > 0.5:
                last = time.perf_counter()
                with contextlib.suppress(OSError):  # a thread ended while it was read: sample again later
                    self.samples.append((rss_mb(self.pid), open_files(self.pid), disk_bytes(self.tmp)))
            self.stop.wait(0.05)

    def summary(self) -> dict:
        rss, fds, disk = (
            (np.array(v) for v in zip(*self.samples, strict=True)) if self.samples else ([0],) * 3
        )
        return {
            "health": percentiles(np.array(self.health)),
            "health_failures": self.failures,
            "rss_mb": {
                "first": round(float(rss[0]), 1),
                "max": round(float(np.max(rss)), 1),
                "last": round(float(rss[-1]), 1),
            },  # fmt: skip
            "open_files_max": int(np.max(fds)),
            "temp_disk_mb_max": round(float(np.max(disk)) / 2**20, 1),
        }


def slowloris(port: int, seconds: float, count: int = 1100) -> dict:
    sockets, refused = [], 0
    for _ in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sockets.append(s)
        except OSError:
            refused += 1
    end = time.time() + seconds
    dropped = 0
    while time.time() < end:
        for s in list(sockets):
            try:
                s.sendall(b"a")
            except OSError:
                dropped += 1
                sockets.remove(s)
        time.sleep(5)
    for s in sockets:
        s.close()
    return {"connections": count, "refused_at_connect": refused, "closed_by_server": dropped}


def frame_flood(url: str, entries: list[int], seconds: float, threads: int = 48) -> dict:
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    end = time.time() + seconds

    def worker(offset: int) -> None:
        i = offset
        while time.time() < end:
            entry = entries[i % len(entries)]
            i += threads
            request = urllib.request.Request(f"{url}/api/frame/intel/{entry}", headers={"X-Token": TOKEN})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                    code = response.status
            except urllib.error.HTTPError as exc:
                code = exc.code
            except OSError:
                code = 0
            with lock:
                statuses[code] = statuses.get(code, 0) + 1

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"threads": threads, "statuses": {str(k): v for k, v in sorted(statuses.items())}}


def _stream_body(port: int, head: bytes, chunks, limit_seconds: float = 60) -> tuple[int, str]:
    """Send ``head`` then the chunks until the server stops reading; (bytes sent, status line)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=limit_seconds) as s:
        s.sendall(head)
        try:
            for chunk in chunks:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        try:
            s.settimeout(5)
            reply = s.recv(200).split(b"\r\n", 1)[0].decode("latin-1")
        except OSError:
            reply = "(connection closed)"
    return sent, reply


def multipart_flood(port: int, parallel: int = 8, parts: int = 240) -> dict:
    boundary = "abuse"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n\r\n'
    ).encode()
    mib = b"\0" * 2**20
    length = parts * (len(part) + len(mib) + 2) + len(f"--{boundary}--\r\n")
    head = (
        f"POST /api/query HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Token: {TOKEN}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()

    def chunks():
        for _ in range(parts):
            yield part + mib + b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    results = []
    pool = [
        threading.Thread(target=lambda: results.append(_stream_body(port, head, chunks())))
        for _ in range(parallel)
    ]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"bodies": parallel, "parts_each": parts, "replies": sorted({r[1] for r in results}),
            "max_mb_sent": round(max(r[0] for r in results) / 2**20, 1)}  # fmt: skip


def chunked_flood(port: int, total: int = 1_500_000_000) -> dict:
    head = (
        b"POST /api/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    block = 2**20

    def chunks():
        for _ in range(total // block):
            yield f"{block:x}\r\n".encode() + b"\0" * block + b"\r\n"

    started = time.perf_counter()
    sent, reply = _stream_body(port, head, chunks())
    seconds = round(time.perf_counter() - started, 2)
    mb_sent = round(sent / 2**20, 1)
    return {
        "planned_mb": round(total / 2**20),
        "mb_sent_before_close": mb_sent,
        "reply": reply,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="length of the slowloris and frame floods"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="reid-serve-abuse-"))
    tmp = work / "tmp"
    tmp.mkdir()
    env = {**os.environ, "REID_SEARCH_INDEXES": str(work / "indexes"), "TMPDIR": str(tmp)}
    cli = [sys.executable, str(REPO / "cli.py")]
    video = DATA.parent / "video" / "intel-sample" / "one-by-one-person-detection.mp4"
    detector = REPO / "benchmarks" / "detectors" / "person-detection-0202.card.json"
    subprocess.run(
        [*cli, "index", str(DATA / "cuhk03-mars" / "bbox_test"), "--name", "cuhk", "-q"], env=env, check=True
    )
    index_video = [*cli, "index", str(video), "--name", "intel", "--detector", str(detector), "-q"]
    subprocess.run([*index_video, "--detect-every", "2"], env=env, check=True)
    from reid_search.gallery import Gallery

    with Gallery.open(work / "indexes" / "intel") as gallery:
        rows = sorted(gallery.rows().items(), key=lambda item: -(item[1]["frame"] or 0))
    late = [faiss_id for faiss_id, _ in rows[: len(rows) // 2]]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve = [*cli, "serve", "--port", str(port), "--index", "cuhk", "--token", TOKEN]
    server = subprocess.Popen(serve, env=env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    result: dict = {}
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(
                    urllib.request.Request(f"{url}/api/health", headers={"X-Token": TOKEN}), timeout=1
                )
                break
            except OSError:
                time.sleep(0.2)
        abuses = {
            "slowloris": lambda: slowloris(port, args.seconds),
            "frame_flood": lambda: frame_flood(url, late, args.seconds),
            "multipart_flood": lambda: multipart_flood(port),
            "chunked_flood": lambda: chunked_flood(port),
        }
        for name, abuse in abuses.items():
            watch = Watch(url, server.pid, tmp)
            watch.start()
            outcome = abuse()
            time.sleep(1)
            watch.stop.set()
            watch.join()
            result[name] = {**outcome, **watch.summary()}
            print(name, json.dumps(result[name]), flush=True)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=20)
        shutil.rmtree(work, ignore_errors=True)
    result["server_log_bytes"] = len(stderr)
    result["required"] = {"health_p99_ms_below": 100, "chunked_flood_mb_read_below": 10}
    write_result("serve_abuse", result)


if __name__ == "__main__":
    main()
