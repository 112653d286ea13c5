"""A build killed midway (kill -9 or Ctrl-C) keeps its last good state and resumes exactly."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time

import faiss
import pytest

from reid_search.synthetic import generate_dataset

N_IMAGES = 50 * 3 * 4


@pytest.fixture(scope="module")
def big_root(tmp_path_factory):
    return generate_dataset(
        tmp_path_factory.mktemp("resume"), n_people=50, n_cameras=3, frames_per_tracklet=4, seed=11
    )


def index_command(root, indexes):
    return [
        "reid-search",
        "index",
        str(root),
        "--name",
        "k",
        "--indexes-dir",
        str(indexes),
        "--batch-size",
        "8",
        "--checkpoint-seconds",
        "0",
        "--quiet",
    ]


def rows_in(db) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2) as con:
            return con.execute("select count(*) from vectors").fetchone()[0]
    except sqlite3.Error:
        return 0


def start_and_interrupt(root, indexes, sig) -> int:
    """Start a build, wait until some batches are committed, then send ``sig``."""
    proc = subprocess.Popen(index_command(root, indexes), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = indexes / "k" / "meta.sqlite"
    deadline = time.monotonic() + 120
    while rows_in(db) < 48 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc.returncode


def check_consistent(indexes, expected: int) -> None:
    gallery = indexes / "k"
    index = faiss.read_index(str(gallery / "index.faiss"))
    with sqlite3.connect(gallery / "meta.sqlite") as con:
        rows = con.execute("select faiss_id, path from vectors").fetchall()
    ids = sorted(faiss.vector_to_array(index.id_map).tolist())
    assert ids == sorted(r[0] for r in rows), "FAISS ids and SQLite rows disagree"
    paths = [r[1] for r in rows]
    assert len(paths) == len(set(paths)) == expected, "duplicate or missing entries"
    manifest = json.loads((gallery / "manifest.json").read_text())
    assert manifest["counts"]["vectors"] == expected


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_build_resumes_without_duplicates(big_root, tmp_path, sig):
    indexes = tmp_path / "indexes"
    code = start_and_interrupt(big_root, indexes, sig)
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    partial = rows_in(indexes / "k" / "meta.sqlite")
    assert 0 < partial < N_IMAGES, "the build was not interrupted midway"
    resumed = subprocess.run(index_command(big_root, indexes), capture_output=True, text=True, check=True)
    assert "already present" in resumed.stdout
    check_consistent(indexes, N_IMAGES)
    again = subprocess.run(index_command(big_root, indexes), capture_output=True, text=True, check=True)
    assert "0 added" in again.stdout
    check_consistent(indexes, N_IMAGES)
