"""Shared fixtures: the real data beside the repo, a loaded embedder, synthetic datasets."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data() -> Path:
    """``../shared/data`` beside the repo; a hard failure (never a skip) when it is missing."""
    if not (SHARED_DATA / "cuhk03-mars" / "bbox_test").is_dir():
        pytest.fail(f"real test data missing: expected {SHARED_DATA}/cuhk03-mars (see README, Tests)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cuhk_test() -> Path:
    return shared_data() / "cuhk03-mars" / "bbox_test"


@pytest.fixture(scope="session")
def mars_samples() -> Path:
    return shared_data() / "mars-samples"


@pytest.fixture(scope="session")
def embedder():
    from reid_search import Embedder

    return Embedder(batch_size=32)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """12 people x 3 cameras x 1 tracklet x 3 frames, MARS-named (108 images)."""
    from reid_search.data.synthetic import generate_dataset

    return generate_dataset(
        tmp_path_factory.mktemp("synth"), n_people=12, n_cameras=3, frames_per_tracklet=3, seed=7
    )


@pytest.fixture()
def indexes_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "indexes"
    monkeypatch.setenv("REID_SEARCH_INDEXES", str(path))
    return path


def pytest_configure(config):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def index_with_cli(data: Path, indexes: Path, name: str, *options: str) -> Path:
    """``reid-search index DATA --name NAME`` into ``indexes``; the gallery folder."""
    from typer.testing import CliRunner

    from reid_search.cli import app

    args = ["index", str(data), "--name", name, "--indexes-dir", str(indexes), "--quiet", *options]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return indexes / name


def rows_committed(database: Path) -> int:
    """Rows a running build has committed to its ``meta.sqlite`` so far (read-only; 0 before its
    file or its schema exists, or while it is busy)."""
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=0.2) as con:
            return con.execute("select count(*) from vectors").fetchone()[0]
    except sqlite3.Error:
        return 0
