"""The Ray engine on a local Ray (2 CPUs, no dashboard): the same gallery as the local engine,
a worker killed mid-run is replaced, a driver killed mid-run resumes to the exact set.

Marked ``ray`` (``pytest -m "not ray"`` skips them; CI runs them)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from reid_search.cli import app
from tests.conftest import REPO, index_with_cli, rows_committed

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="needs the [ray] extra")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def stored(gallery_dir: Path) -> dict[str, tuple]:
    """unit key -> (person, camera, sha256, vector) as SQLite holds them, plus the skipped files."""
    with sqlite3.connect(gallery_dir / "meta.sqlite") as con:
        rows = con.execute("select unit_key, person, camera, sha256, vector from vectors").fetchall()
        skipped = sorted(con.execute("select path, reason from skipped").fetchall())
    return {"skipped": skipped, **{r[0]: (r[1], r[2], r[3], np.frombuffer(r[4], np.float32)) for r in rows}}


def assert_same_gallery(a: dict, b: dict) -> None:
    only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    assert not only_a and not only_b, (len(a), len(b), only_a[:3], only_b[:3])
    assert a["skipped"] == b["skipped"]
    entries = [k for k in a if k != "skipped"]
    assert all(a[k][:3] == b[k][:3] for k in entries)
    cosines = [float(a[k][3] @ b[k][3]) for k in entries]
    assert min(cosines) >= 0.9999


@pytest.fixture(scope="module")
def data_with_bad_files(cuhk_test, tmp_path_factory) -> Path:
    """cuhk03-mars bbox_test plus two bad files (an empty JPEG, a text file named .jpg)."""
    import shutil

    root = tmp_path_factory.mktemp("data") / "bbox_test"
    shutil.copytree(cuhk_test, root)
    (root / "0744" / "0744C1T0001F999.jpg").write_bytes(b"")
    (root / "0745" / "0745C1T0001F999.jpg").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def local_build(data_with_bad_files, tmp_path_factory):
    built = stored(index_with_cli(data_with_bad_files, tmp_path_factory.mktemp("local-indexes"), "g"))
    assert len(built["skipped"]) == 2 and len(built) == 1 + 938
    return built


# first: it stops the Ray the killed driver left, which must not be the one the others share
def test_a_driver_killed_mid_run_resumes_to_the_exact_set(data_with_bad_files, local_build, tmp_path):
    env = {**os.environ, "REID_SEARCH_INDEXES": str(tmp_path)}
    command = [sys.executable, str(REPO / "cli.py"), "index", str(data_with_bad_files), "--name", "g", "-q"]
    command += ["--engine", "ray", "--ray-actors", "2", "--batch-size", "16"]
    first = subprocess.Popen(command, env=env, start_new_session=True)
    database = tmp_path / "g" / "meta.sqlite"
    deadline = time.monotonic() + 240
    count = 0
    while time.monotonic() < deadline and first.poll() is None:
        count = max(count, rows_committed(database))
        if count >= 100:
            break
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the driver (and the Ray it started) dies mid-run
    first.wait()
    assert 100 <= count < 938
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert_same_gallery(stored(tmp_path / "g"), local_build)
    # any Ray the killed driver left; this test runs before the others start theirs
    subprocess.run(["ray", "stop", "--force"], capture_output=True)


def test_a_ray_build_holds_the_same_rows_and_vectors_as_a_local_build(
    local_ray, data_with_bad_files, local_build, tmp_path
):
    built = index_with_cli(data_with_bad_files, tmp_path, "g", "--engine", "ray", "--ray-actors", "2")
    assert_same_gallery(stored(built), local_build)


def test_a_worker_killed_mid_run_is_replaced_and_its_batch_redone(local_ray, cuhk_test, tmp_path):
    from reid_search.embedding.embedder import Embedder
    from reid_search.embedding.ray_engine import RayEmbedder

    paths = sorted(cuhk_test.rglob("*.jpg"))[:320]
    pids = tmp_path / "pids"
    pids.mkdir()
    embedder = RayEmbedder(actors=2, batch_size=16, pid_dir=str(pids))
    seen, vectors, killed = [], {}, None
    for batch in embedder.iter_batches(paths):
        seen.extend(batch.indices)
        vectors.update(zip(batch.indices, batch.vectors, strict=True))
        if killed is None:
            killed = int(sorted(pids.iterdir())[0].stem)
            os.kill(killed, signal.SIGKILL)
    assert killed is not None and len(list(pids.iterdir())) >= 3  # a new actor was started
    assert seen == list(range(len(paths)))  # every image once, in order
    expected, _, _ = Embedder(batch_size=16).embed_files(paths)
    assert min(float(vectors[i] @ expected[i]) for i in range(len(paths))) >= 0.9999


def test_engine_ray_without_the_extra_names_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    result = CliRunner().invoke(
        app, ["embed", str(tmp_path), "--out", str(tmp_path / "v.npz"), "--engine", "ray"]
    )
    assert result.exit_code == 2 and "pip install 'reid-search[ray]'" in result.stderr


def test_the_local_engine_does_not_import_ray(tmp_path):
    modules = "reid_search.cli, reid_search.embedding.engines, reid_search.gallery"
    code = f"import sys, {modules}; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_cluster_address_where_nothing_answers_is_one_error_line_and_no_gallery(cuhk_test, tmp_path):
    env = {**os.environ, "REID_SEARCH_INDEXES": str(tmp_path)}
    command = [sys.executable, str(REPO / "cli.py"), "index", str(cuhk_test), "--name", "g", "-q"]
    command += ["--engine", "ray", "--ray-address", "127.0.0.1:9"]  # the discard port: nobody listens
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr
    assert "--ray-address 127.0.0.1:9: nothing answers there" in result.stderr
    assert time.monotonic() - started < 120  # Ray alone retries a dead address for many minutes
    assert not (tmp_path / "g").exists()
