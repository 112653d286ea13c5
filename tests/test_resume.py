"""A build killed midway (kill -9 or Ctrl-C) keeps its last good state and resumes exactly."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import time

import faiss
import pytest

from reid_search.data.synthetic import generate_dataset
from tests.conftest import rows_committed

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


def start_and_interrupt(root, indexes, sig) -> int:
    """Start a build, wait until some batches are committed, then send ``sig``."""
    proc = subprocess.Popen(index_command(root, indexes), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = indexes / "k" / "meta.sqlite"
    deadline = time.monotonic() + 120
    while rows_committed(db) < 48 and proc.poll() is None and time.monotonic() < deadline:
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
    partial = rows_committed(indexes / "k" / "meta.sqlite")
    assert 0 < partial < N_IMAGES, "the build was not interrupted midway"
    resumed = subprocess.run(index_command(big_root, indexes), capture_output=True, text=True, check=True)
    assert "already present" in resumed.stdout
    check_consistent(indexes, N_IMAGES)
    again = subprocess.run(index_command(big_root, indexes), capture_output=True, text=True, check=True)
    assert "0 added" in again.stdout
    check_consistent(indexes, N_IMAGES)


# ------------------------------------------------------------------ reindex and remove, killed
GALLERY_SCRIPT = """
import sys, numpy as np
from pathlib import Path
from reid_search.gallery import Gallery
path = Path(sys.argv[2])
if sys.argv[1] == "create":
    g = Gallery.create(path, {"sha256": "0" * 64, "name": "synthetic", "embedding_dim": 32}, "image", None)
    rng = np.random.default_rng(0)
    for start in range(0, 60000, 2000):
        v = rng.normal(size=(2000, 32)).astype("f4")
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        rows = [dict(faiss_id=i, unit_key=f"u{i}", signature="s", path=f"p{i}.jpg", sha256=None,
                     person=str(i % 500), kind="identity", camera=i % 6, tracklet=None, frame=None,
                     split="", width=None, height=None, n_frames=1, added_at="")
                for i in range(start, start + 2000)]
        g.add_units(rows, v, [], [])
    g.checkpoint()
elif sys.argv[1] == "remove":
    with Gallery.open(path) as g, g.writing():
        present = set(g.ids().tolist())
        for start in range(0, 3000, 30):
            ids = [i for i in range(start, start + 30, 3) if i in present]
            g.remove(ids)
        g.save_index()
"""


def gallery_script(tmp_path, *args):
    script = tmp_path / "g.py"
    script.write_text(GALLERY_SCRIPT)
    return ["python", str(script), *args]


def snapshot(path):
    with sqlite3.connect(path / "meta.sqlite") as con:
        return con.execute("select faiss_id, path, person, vector from vectors order by faiss_id").fetchall()


def kill_after(command, seconds: float) -> int:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.returncode


@pytest.mark.parametrize("delay", [0.8, 2.0, 3.5])
def test_reindex_killed_at_any_moment_then_rerun_equals_a_clean_reindex(tmp_path, delay):
    path = tmp_path / "indexes" / "big"
    subprocess.run(gallery_script(tmp_path, "create", str(path)), check=True)
    before = snapshot(path)
    reindex = ["reid-search", "reindex", str(path), "--index-type", "IVF64,Flat"]
    kill_after(reindex, delay)
    subprocess.run(reindex, check=True, capture_output=True)
    assert snapshot(path) == before  # reindex never touches rows or vectors
    state = json.loads((path / "index.json").read_text())
    index = faiss.read_index(str(path / "index.faiss"))
    assert state["factory"] == "IVF64,Flat" and index.ntotal == state["count"] == 60000
    assert json.loads((path / "manifest.json").read_text())["index_type"] == "IVF64,Flat"


@pytest.mark.parametrize("delay", [1.0, 2.0])
def test_remove_killed_at_any_moment_then_rerun_equals_a_clean_remove(tmp_path, delay):
    path = tmp_path / "indexes" / "big"
    subprocess.run(gallery_script(tmp_path, "create", str(path)), check=True)
    clean = tmp_path / "indexes" / "clean"
    shutil.copytree(path, clean)
    subprocess.run(gallery_script(tmp_path, "remove", str(clean)), check=True)
    kill_after(gallery_script(tmp_path, "remove", str(path)), delay)
    subprocess.run(gallery_script(tmp_path, "remove", str(path)), check=True)
    assert snapshot(path) == snapshot(clean)
    assert len(snapshot(path)) == 60000 - 1000
    index = faiss.read_index(str(path / "index.faiss"))
    assert index.ntotal == 59000
