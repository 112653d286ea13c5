"""`reid-search adapt`: self-training on a user's unlabelled crops (synthetic people, a tiny model)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from reid_search.adaptation import AdaptConfig, AdaptError, ClusterSettings, adapt, cluster, from_folders
from reid_search.adaptation.clustering import associate
from reid_search.cli import app
from reid_search.embedding.model_store import read_card

runner = CliRunner()
FAST = {"rounds": 2, "steps_per_round": 3, "p": 4, "k": 2, "cached_views": 1}


@pytest.fixture(scope="module")
def people(tmp_path_factory) -> Path:
    """30 people x 3 cameras x 1 tracklet x 3 frames, MARS-named (270 crops)."""
    from reid_search.data.synthetic import generate_dataset

    return generate_dataset(
        tmp_path_factory.mktemp("adapt") / "people", n_people=30, frames_per_tracklet=3, seed=4
    )


@pytest.fixture(scope="module")
def start_model(tmp_path_factory, people) -> Path:
    out = tmp_path_factory.mktemp("start") / "run"
    args = ["train", str(people), "--out", str(out), "--architecture", "mini", "--input-size", "64x32"]
    args += ["--embedding-dim", "8", "--p", "4", "--k", "2", "--epochs", "1", "--steps-per-epoch", "1"]
    result = runner.invoke(app, [*args, "--val-fraction", "0.2"])
    assert result.exit_code == 0, result.output
    return out / "model.keras"


def user_view(people: Path, out: Path, tracklets: bool = True) -> tuple[Path, Path]:
    """The crops under meaningless names and a CSV of camera and tracklet (no person anywhere)."""
    folder = out / "crops"
    folder.mkdir(parents=True)
    rows = []
    for path in sorted(people.rglob("*.jpg")):
        name = hashlib.sha256(path.name.encode()).hexdigest()[:12] + ".jpg"
        os.symlink(path, folder / name)
        tracklet = hashlib.sha256(path.name[:11].encode()).hexdigest()[:8] if tracklets else ""
        rows.append((name, int(path.name[5]), tracklet))
    table = out / "crops.csv"
    with open(table, "w", newline="") as handle:
        csv.writer(handle).writerows([("path", "camera", "tracklet"), *rows])
    return folder, table


def test_adapted_model_is_written_with_a_card_that_says_how_it_was_made(people, start_model, tmp_path):
    folder, table = user_view(people, tmp_path)
    out = tmp_path / "adapted.keras"
    result = adapt(
        AdaptConfig(target=[str(folder)], metadata=str(table), out=str(out), model=str(start_model), **FAST)
    )
    card = read_card(out)
    made = card.training["adaptation"]
    assert made["start_model_sha256"] == hashlib.sha256(start_model.read_bytes()).hexdigest()
    assert made["target_crops"] == 270 and made["rounds_done"] == 2 and len(made["clusters_per_round"]) == 2
    assert made["target_sha256"] == from_folders([folder], table).content_sha256()
    assert made["command"].startswith("reid-search adapt ") and "--rounds 2" in made["command"]
    assert card.fast_runtime and (tmp_path / card.fast_runtime).is_file()  # embeds at full speed
    assert "adaptation" in card.threshold_rule and "adaptation" in card.open_set["description"]
    before = read_card(start_model).training.get("adaptation")
    assert before is None  # the start model is left as it was
    assert result.rounds[-1]["clusters"] >= 4


def test_a_killed_adaptation_resumes_at_the_round_where_it_stopped(people, start_model, tmp_path):
    folder, table = user_view(people, tmp_path)
    out = tmp_path / "adapted.keras"
    config = AdaptConfig(
        target=[str(folder)], metadata=str(table), out=str(out), model=str(start_model), **FAST
    )

    def stop_in_round_two(line: str) -> None:
        if line.startswith("round 2/"):
            raise KeyboardInterrupt

    first = adapt(config, log=stop_in_round_two)
    assert first.interrupted and len(first.rounds) == 1
    assert read_card(out).training["adaptation"]["interrupted"]  # a whole model, marked as such
    resumed = adapt(AdaptConfig(target=[], out=str(out)), resume=True, log=lambda line: None)
    assert not resumed.interrupted
    assert [r["round"] for r in resumed.rounds] == [1, 2]
    assert read_card(out).training["adaptation"]["rounds_done"] == 2


def test_names_are_never_read_for_a_person_and_one_camera_without_tracklets_is_refused(people, tmp_path):
    target = from_folders([people])  # MARS names carry person and camera: neither is read
    assert (target.cameras == -1).all() and (target.tracklets == -1).all()
    with pytest.raises(AdaptError, match="no camera known and no tracklets"):
        target.check()


def test_bad_inputs_are_one_error_line_and_nothing_is_written(people, start_model, mars_samples, tmp_path):
    out = tmp_path / "adapted.keras"
    few = runner.invoke(app, ["adapt", str(mars_samples), "--out", str(out), "--model", str(start_model)])
    assert few.exit_code == 2 and few.output.startswith("error: ") and "at least 200" in few.output
    assert not out.exists() and not out.with_name("adapted.keras.adapt").exists()
    folder, table = user_view(people, tmp_path)
    args = ["adapt", str(folder), "--metadata", str(table), "--model", str(start_model), "--rounds", "1"]
    args += ["--steps-per-round", "2", "--p", "4", "--k", "2"]
    done = runner.invoke(app, [*args, "--out", str(out)])
    assert done.exit_code == 0, done.output
    again = runner.invoke(
        app,
        [
            "adapt",
            str(folder),
            "--metadata",
            str(table),
            "--model",
            str(out),
            "--out",
            str(tmp_path / "b.keras"),
        ],
    )
    assert again.exit_code == 2 and "already adapted" in again.output
    bad = runner.invoke(app, [*args, "--out", str(tmp_path / "c.keras"), "--lr", "nan"])
    assert bad.exit_code == 2 and "--lr nan" in bad.output


def test_a_gallery_of_vectors_without_images_is_refused(tmp_path, indexes_dir, people):
    from reid_search.adaptation.target import from_gallery
    from reid_search.gallery import Gallery

    from .conftest import index_with_cli

    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(people, copy)
    gallery = index_with_cli(copy, indexes_dir, "moved")
    shutil.rmtree(copy)  # the images are gone: only vectors are left
    with Gallery.open(gallery) as g, pytest.raises(AdaptError, match="none of its 270 entries is an image"):
        from_gallery(g)


def test_association_keeps_tracklets_whole_and_never_joins_two_crops_of_one_frame():
    rng = np.random.default_rng(0)
    person = rng.normal(size=(2, 16))
    # two tracklets on camera 1, two on camera 2; camera 2's second tracklet looks like person 0 too
    vectors = np.concatenate([np.repeat(person[[0]], 3, 0), np.repeat(person[[1]], 3, 0),
                              np.repeat(person[[0]], 3, 0), np.repeat(person[[0]], 3, 0)])  # fmt: skip
    vectors += 0.01 * rng.normal(size=vectors.shape)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cameras = np.repeat([1, 1, 2, 2], 3)
    tracklets = np.repeat([0, 1, 2, 3], 3)
    frames = np.full(12, -1)
    frames[[6, 9]] = 7  # tracklets 2 and 3 share a frame: two people
    labels = associate(vectors, cameras, tracklets, frames)
    assert all(len(set(labels[tracklets == t])) == 1 for t in range(4))  # a tracklet is one person
    assert labels[6] != labels[9]  # one frame, two people
    assert labels[0] in (labels[6], labels[9])  # person 0 found across cameras


def test_density_clustering_leaves_stray_crops_unclustered():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(6, 32))
    crowd = np.repeat(centres, 10, axis=0) + 0.05 * rng.normal(size=(60, 32))
    strays = rng.normal(size=(5, 32))
    vectors = np.concatenate([crowd, strays])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = cluster(vectors, ClusterSettings(k1=8, k2=3))  # neighbourhoods smaller than a person's crops
    assert len(set(labels[:60].tolist())) == 6 and (labels[60:] == -1).all()


def test_adapt_help_names_the_two_steps():
    result = runner.invoke(app, ["adapt", "--help"])
    assert result.exit_code == 0 and "--resume" in result.output and "--model" in result.output
    assert json.dumps  # the module's imports are used
