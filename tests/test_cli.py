"""The command line: every command end to end on synthetic data, JSON schema, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from reid_search.cli import app
from tests.conftest import REPO

runner = CliRunner()


def run(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


@pytest.fixture()
def built(synth_root, indexes_dir):
    result = run("index", synth_root, "--name", "synth", "--quiet")
    assert result.exit_code == 0, result.output
    return indexes_dir / "synth"


def test_index_reports_counts(built):
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["counts"]["vectors"] == 108


def test_query_table_and_json(built, synth_root):
    probe = synth_root / "bbox_test" / "0005" / "0005C2T0001F002.jpg"
    table = run("query", probe, "--top-k", "3")
    assert table.exit_code == 0, table.output
    assert "0005" in table.output.splitlines()[2]  # rank 1 is the person itself (same image in gallery)
    out = run("query", probe, "--index", "synth", "--top-k", "4", "--json", "--exclude-camera", "2")
    data = json.loads(out.stdout)
    assert data["schema"] == "reid-search/query/v2"
    assert [r["rank"] for r in data["results"]] == [1, 2, 3, 4]
    assert all(r["key"] == f"person:{r['person']}" and r["cluster"] is None for r in data["results"])
    match = data["results"][0]["matches"][0]
    fields = {
        "faiss_id",
        "path",
        "person",
        "camera",
        "tracklet",
        "frame",
        "similarity",
        "time",
        "extra",
        "cluster",
    }
    assert set(match) == fields
    assert all(m["camera"] != 2 for r in data["results"] for m in r["matches"])
    assert data["query"]["filter"] == {"exclude_cameras": [2]} and data["query"]["excluded"] == {}


def test_query_folder_is_one_tracklet_query(built, synth_root, tmp_path):
    folder = tmp_path / "q"
    folder.mkdir()
    for f in sorted((synth_root / "bbox_test" / "0007").glob("0007C1*"))[:3]:
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "broken.jpg").write_bytes(b"")
    out = run("query", folder, "--json", "--same-camera-rule")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert len(data["query"]["images"]) == 3
    assert data["query"]["skipped"] and "empty file" in data["query"]["skipped"][0]


def test_compare_with_plot(synth_root, tmp_path):
    a = synth_root / "bbox_test" / "0001" / "0001C1T0001F001.jpg"
    b = synth_root / "bbox_test" / "0001" / "0001C2T0001F001.jpg"
    png = tmp_path / "cmp.png"
    out = run("compare", a, b, "--plot", png, "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["same"] == (data["similarity"] >= data["threshold"])
    assert data["verdict"] == ("same person" if data["same"] else "different people")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    other = json.loads(
        run("compare", a, synth_root / "bbox_test" / "0002" / "0002C2T0001F001.jpg", "--json").stdout
    )
    assert data["similarity"] > other["similarity"]  # the same person is closer than another one


def test_evaluate_writes_report(built, tmp_path):
    out_dir = tmp_path / "eval"
    out = run("evaluate", "synth", "--out", out_dir, "--quiet")
    assert out.exit_code == 0, out.output
    assert "rank-1" in out.output and "mAP" in out.output
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["protocol"] == "cross-camera" and metrics["n_queries"] == 108
    assert "non-interpolated" in metrics["ap_definition"]
    cmc_rows = (out_dir / "cmc.csv").read_text().splitlines()
    assert cmc_rows[0] == "rank,cmc" and len(cmc_rows) == 51
    assert float(cmc_rows[1].split(",")[1]) == pytest.approx(metrics["rank1"])
    assert len((out_dir / "per_query.csv").read_text().splitlines()) == 109
    assert (out_dir / "cmc.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["index", "/no/such/folder"], "not a folder"),
        (["query", "x.jpg", "--index", "nope"], "not a gallery"),
        (["compare", "a.jpg", "b.jpg"], "no such file"),
        (["index", ".", "--layout", "duke"], "unknown layout 'duke'; known: mars"),
        (["evaluate", ".", "--protocol", "x"], "unknown protocol 'x'; known: mars-official"),
        (["index", ".", "--model", "/no/model.keras"], "no such model file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, indexes_dir):
    result = run(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_query_with_another_model_is_refused(built, synth_root, tmp_path):
    import shutil

    from reid_search.embedding.model_store import DEFAULT_MODEL, ModelCard, card_path, read_card, save_model
    from reid_search.embedding.tower import TowerConfig, build_tower

    other = tmp_path / "other.keras"
    card: ModelCard = read_card(DEFAULT_MODEL)
    card.name = "other"
    save_model(
        build_tower(TowerConfig(input_height=card.input_height, input_width=card.input_width, seed=1)),
        card,
        other,
    )
    assert card_path(other).is_file()
    probe = synth_root / "bbox_test" / "0001" / "0001C1T0001F001.jpg"
    result = run("query", probe, "--model", other)
    assert result.exit_code == 2 and "built with model" in result.stderr
    shutil.rmtree(tmp_path / "indexes", ignore_errors=True)


def test_top_level_cli_py_is_the_same_program():
    via_file = subprocess.run([sys.executable, "cli.py", "--help"], cwd=REPO, capture_output=True, text=True)
    via_script = subprocess.run(["reid-search", "--help"], cwd=REPO, capture_output=True, text=True)
    assert via_file.returncode == 0 and via_file.stdout == via_script.stdout
    for command in ("index", "query", "compare", "evaluate", "demo"):
        assert command in via_file.stdout


def test_evaluate_without_out_never_overwrites(built, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = run("evaluate", "synth", "--quiet", "--single-shot-draws", "0")
    second = run("evaluate", "synth", "--quiet", "--single-shot-draws", "0")
    assert first.exit_code == second.exit_code == 0
    assert (tmp_path / "runs" / "eval-synth" / "metrics.json").is_file()
    assert (tmp_path / "runs" / "eval-synth-2" / "metrics.json").is_file()
    assert "eval-synth-2" in second.output


def test_index_and_galleries_speak_json_and_reindex_changes_the_type(built, synth_root):
    again = run("index", synth_root, "--name", "synth", "--quiet", "--json")
    report = json.loads(again.output)
    assert report["added"] == 0 and report["already_present"] == 108 and report["index"]["factory"] == "Flat"
    changed = run("reindex", "synth", "--index-type", "HNSW16", "--ef-search", "40")
    assert changed.exit_code == 0, changed.output
    listed = json.loads(run("galleries", "--json").output)
    assert listed[0]["index_type"] == "HNSW16" and listed[0]["index"]["params"]["efSearch"] == 40
    probe = synth_root / "bbox_test" / "0005" / "0005C2T0001F002.jpg"
    top = json.loads(run("query", probe, "--top-k", "1", "--json").output)["results"][0]
    assert top["person"] == "0005" and top["score"] > 0.999
    bad = run("reindex", "synth", "--index-type", "IVF4096,PQ32")
    assert bad.exit_code == 2 and "needs at least" in bad.stderr


def test_progress_off_a_terminal_is_plain_lines(synth_root, tmp_path):
    result = subprocess.run(
        ["reid-search", "index", str(synth_root), "--name", "p", "--indexes-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "\r" not in result.stderr
    assert "index p: 108/108 img" in result.stderr


def test_embed_then_index_precomputed_vectors(synth_root, tmp_path, indexes_dir):
    vectors = tmp_path / "v.npz"
    assert run("embed", synth_root, "--out", vectors, "-q").exit_code == 0
    result = run("index", synth_root, "--name", "pre", "--vectors", vectors, "--quiet", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["added"] == 108


def test_query_stderr_is_quiet_unless_verbose(mars_samples, tmp_path):
    """No TensorFlow / LiteRT start-up lines on stderr for a normal query (real process)."""
    import os
    import shutil

    crops = tmp_path / "crops"
    shutil.copytree(mars_samples, crops)
    env = {**os.environ, "REID_SEARCH_INDEXES": str(tmp_path / "indexes")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as in a user's shell

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(REPO / "cli.py"), *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)

    built = cli("index", str(crops), "--quiet")
    assert built.returncode == 0 and built.stderr == "", built.stderr
    quiet = cli("query", str(crops / "1.jpg"), "-k", "2")
    assert quiet.returncode == 0 and "entry 0" in quiet.stdout
    assert quiet.stderr == ""
    loud = cli("--verbose", "query", str(crops / "1.jpg"), "-k", "2")
    assert loud.returncode == 0 and "TensorFlow Lite" in loud.stderr
    # calibrate ran the fast runtime but imported TensorFlow on the way (its start-up lines)
    from reid_search.data.synthetic import generate_dataset

    people = generate_dataset(
        tmp_path / "people", n_people=12, n_cameras=2, frames_per_tracklet=2, split="bbox_train"
    )
    default = REPO / "reid_search" / "models" / "default.keras"  # without --write: read only
    calibrated = cli("calibrate", str(default), str(people), "--far", "0.05", "--val-fraction", "0.5")
    assert calibrated.returncode == 0 and "threshold" in calibrated.stdout
    assert calibrated.stderr == ""
    # a Keras model (no fast export) imports TensorFlow itself: its start-up lines stay off too
    keras_only = tmp_path / "k.keras"
    shutil.copyfile(default, keras_only)
    card = json.loads(default.with_name("default.card.json").read_text())
    (tmp_path / "k.card.json").write_text(json.dumps({**card, "fast_runtime": None}))
    embedded = cli(
        "embed", str(crops), "--model", str(keras_only), "--out", str(tmp_path / "v.npz"), "--quiet"
    )
    assert embedded.returncode == 0, embedded.stderr
    assert embedded.stderr == ""


@pytest.mark.parametrize(
    ("data", "option", "named"),
    [
        ("video", ["--engine", "ray"], "--engine"),
        ("video", ["--metadata", "crops.csv"], "--metadata"),
        ("video", ["--name-pattern", "cam(?P<cam>\\d)"], "--name-pattern"),
        ("folder", ["--detect-every", "3"], "--detect-every"),
        ("folder", ["--start-time", "2026-11-25T14:00:00"], "--start-time"),
    ],
)
def test_an_index_option_the_input_does_not_use_is_refused_by_name(
    data, option, named, tmp_path, mars_samples
):
    """Video and folders take different options: one that would be ignored is an error naming it,
    before anything is read or written."""
    source = tmp_path / "lobby_cam3.mp4" if data == "video" else mars_samples
    if data == "video":
        source.write_bytes(b"not read")
    indexes = tmp_path / "indexes"
    result = run("index", str(source), "--indexes-dir", str(indexes), "-q", *option)
    assert result.exit_code == 2
    assert (
        result.stderr.startswith(f"error: {named}: not used when indexing")
        and "leave it out" in result.stderr
    )
    assert not indexes.exists()
