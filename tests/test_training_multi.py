"""Training on several datasets at once: namespaced identities, mixed batches, per-dataset
validation and threshold rates, teacher targets matched by path."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from reid_search.cli import app
from reid_search.data.synthetic import generate_dataset
from reid_search.embedding.backends import load_model
from reid_search.embedding.tower import TowerConfig
from reid_search.training import TrainConfig
from reid_search.training.data import load_teacher_targets, load_training_data
from reid_search.training.sampler import PKSampler

runner = CliRunner()


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    """Two datasets whose person numbers and file names are the same (0001, 0002, ...)."""
    base = tmp_path_factory.mktemp("multi")
    a = generate_dataset(
        base / "alpha", n_people=10, n_cameras=2, frames_per_tracklet=3, seed=1, split="bbox_train"
    )
    b = generate_dataset(
        base / "beta", n_people=8, n_cameras=3, frames_per_tracklet=3, seed=2, split="bbox_train"
    )
    return a, b


def config_for(two_sets, tmp_path, **kw) -> TrainConfig:
    return TrainConfig(
        data=[str(p) for p in two_sets],
        out=str(tmp_path / "run"),
        tower=TowerConfig("mini", 64, 32, 16),
        p=4,
        k=2,
        val_fraction=0.25,
        **kw,
    )


def test_identities_are_namespaced_per_dataset(two_sets, tmp_path):
    data = load_training_data(config_for(two_sets, tmp_path))
    n_train = [round(10 * 0.75), round(8 * 0.75)]
    assert data.n_classes == sum(n_train)  # the same person numbers never merge across datasets
    for index, n in enumerate(n_train):
        assert len(set(data.train_labels[data.train_dataset == index].tolist())) == n
    labels_a = set(data.train_labels[data.train_dataset == 0].tolist())
    labels_b = set(data.train_labels[data.train_dataset == 1].tolist())
    assert not labels_a & labels_b
    assert [v.name for v in data.validation] == ["alpha", "beta"]
    assert all(p.startswith("beta/") for p in data.validation[1].persons)
    assert sorted(set(data.validation[1].cameras.tolist())) == [1, 2, 3]  # cameras kept per dataset


def test_pk_batches_draw_from_every_dataset(two_sets, tmp_path):
    data = load_training_data(config_for(two_sets, tmp_path))
    sampler = PKSampler(data.train_labels, 4, 2, seed=0)
    batches = list(sampler.epoch())
    mixed = sum(len(set(data.train_dataset[b].tolist())) == 2 for b in batches)
    assert {int(d) for b in batches for d in data.train_dataset[b]} == {0, 1}
    assert mixed > 0


def test_teacher_files_pair_with_datasets_of_the_same_file_names(two_sets, tmp_path):
    files = []
    for i, root in enumerate(two_sets):
        paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
        vectors = np.full((len(paths), 4), float(i + 1), np.float32)
        np.savez(tmp_path / f"t{i}.npz", paths=np.array(paths), embeddings=vectors)
        files.append(str(tmp_path / f"t{i}.npz"))
    data = load_training_data(config_for(two_sets, tmp_path))
    teacher = load_teacher_targets(files, data)
    assert np.all(teacher[data.train_dataset == 0] == 1.0)
    assert np.all(teacher[data.train_dataset == 1] == 2.0)
    with pytest.raises(ValueError, match="no teacher vector"):
        load_teacher_targets(files[:1] + [files[0]], data)  # the second dataset has no file of its own


def test_card_reports_each_dataset(two_sets, tmp_path):
    args = ["train", *map(str, two_sets), "--out", str(tmp_path / "run"), "--architecture", "mini"]
    args += ["--input-size", "64x32", "--embedding-dim", "16", "--p", "4", "--k", "2", "--epochs", "1"]
    args += ["--steps-per-epoch", "2", "--val-fraction", "0.25"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    card = load_model(tmp_path / "run" / "model.keras").card
    assert set(card.metrics["validation"]["per_dataset"]) == {"alpha", "beta"}
    rates = card.metrics["threshold_rates"]
    assert set(rates) == {"alpha", "beta"} and all(0 <= r["false_accept"] <= 1 for r in rates.values())
    assert all(r["lookalike_pairs"] > 0 for r in rates.values())
    assert "alpha, beta pooled" in card.threshold_rule
    assert card.training["data"] == [str(p) for p in two_sets]
    history = (tmp_path / "run" / "history.jsonl").read_text()
    assert '"rank1/alpha"' in history and '"mAP/beta"' in history


def test_long_epochs_print_progress_with_rate_and_eta(two_sets, tmp_path):
    from reid_search.training.loop import Trainer

    config = config_for(two_sets, tmp_path, epochs=1, steps_per_epoch=3)
    lines: list[str] = []
    trainer = Trainer(config, load_training_data(config), log=lines.append)
    trainer.progress_seconds = 0.0
    trainer.run()
    progress = [line for line in lines if "step " in line]
    assert [line.split("step ")[1].split()[0] for line in progress] == ["1/3", "2/3"]
    assert all("img/s" in line and "ETA" in line for line in progress)


@pytest.fixture(scope="module")
def crops_folder(two_sets, tmp_path_factory):
    """A folder of unlabelled crops (nested, no identities) and a teacher file covering them."""
    base = tmp_path_factory.mktemp("crops")
    source = sorted(two_sets[1].rglob("*.jpg"))[:30]
    for i, path in enumerate(source):
        target = base / "scene" / f"{i:03d}.jpg"
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(path.read_bytes())
    paths = sorted(p.relative_to(base).as_posix() for p in base.rglob("*.jpg"))
    np.savez(
        base / "teacher.npz", paths=np.array(paths), embeddings=np.full((len(paths), 4), 3.0, np.float32)
    )
    return base


def teacher_files(two_sets, tmp_path) -> list[str]:
    files = []
    for i, root in enumerate(two_sets):
        paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
        np.savez(
            tmp_path / f"t{i}.npz", paths=np.array(paths), embeddings=np.ones((len(paths), 4), np.float32)
        )
        files.append(str(tmp_path / f"t{i}.npz"))
    return files


def test_unlabelled_crops_join_every_batch_and_learn_from_the_teacher_only(two_sets, crops_folder, tmp_path):
    from reid_search.training.data import UNLABELLED

    config = config_for(
        two_sets, tmp_path, unlabelled=[str(crops_folder)], unlabelled_per_batch=6,
        teacher_targets=[*teacher_files(two_sets, tmp_path), str(crops_folder / "teacher.npz")],
        losses={"triplet": 1.0, "id": 1.0, "distill": 1.0},
    )  # fmt: skip
    data = load_training_data(config)
    crops = data.train_labels == UNLABELLED
    assert crops.sum() == 30 and data.n_classes == round(10 * 0.75) + round(8 * 0.75)
    assert len(data.validation) == 2  # the crops hold no people to validate on
    teacher = load_teacher_targets(config.teacher_targets, data)
    assert np.all(teacher[crops] == 3.0)
    sampler = PKSampler(data.train_labels, 4, 2, seed=0, extra=6)
    labelled = int((~crops).sum())
    assert sampler.batches_per_epoch() == labelled // 8  # an epoch counts labelled images
    for batch in sampler.epoch():
        assert len(batch) == 14
        assert (data.train_labels[batch[:8]] >= 0).all() and (
            data.train_labels[batch[8:]] == UNLABELLED
        ).all()


def test_named_crops_give_people_per_scene_and_single_crops_to_the_teacher(two_sets, tmp_path):
    from reid_search.training.data import UNLABELLED

    source = sorted(two_sets[1].rglob("*.jpg"))
    crops = tmp_path / "named"
    names = ["a/0001_1.jpg", "a/0001_2.jpg", "a/0002_1.jpg", "b/0001_1.jpg", "b/0001_2.jpg", "b/solo.jpg"]
    for name, path in zip(names, source, strict=False):
        (crops / name).parent.mkdir(parents=True, exist_ok=True)
        (crops / name).write_bytes(path.read_bytes())
    np.savez(crops / "teacher.npz", paths=np.array(sorted(names)), embeddings=np.ones((6, 4), np.float32))
    config = config_for(
        two_sets, tmp_path, named_crops=[str(crops)], losses={"triplet": 1.0, "distill": 1.0},
        teacher_targets=[*teacher_files(two_sets, tmp_path), str(crops / "teacher.npz")],
    )  # fmt: skip
    data = load_training_data(config)
    mine = data.train_dataset == len(data.sources) - 1
    labels = dict(zip(np.array(data.train_keys)[mine], data.train_labels[mine], strict=True))
    assert labels["a/0001_1.jpg"] == labels["a/0001_2.jpg"] >= 0
    assert labels["b/0001_1.jpg"] == labels["b/0001_2.jpg"] != labels["a/0001_1.jpg"]  # scenes apart
    assert labels["a/0002_1.jpg"] == labels["b/solo.jpg"] == UNLABELLED  # one crop: teacher only
    assert len(data.validation) == 2  # cameras unknown: no validation people from named crops
    assert data.n_classes == round(10 * 0.75) + round(8 * 0.75) + 2
    no_teacher = load_training_data(replace(config, losses={"triplet": 1.0}, teacher_targets=[]))
    assert no_teacher.n_unlabelled == 0  # without a teacher loss, lone crops have nothing to learn
    assert no_teacher.n_classes == data.n_classes


def test_training_with_unlabelled_crops_runs_and_says_so_in_the_card(two_sets, crops_folder, tmp_path):
    files = teacher_files(two_sets, tmp_path)
    args = ["train", *map(str, two_sets), "--out", str(tmp_path / "run"), "--architecture", "mini"]
    args += ["--input-size", "64x32", "--embedding-dim", "16", "--p", "4", "--k", "2", "--epochs", "1"]
    args += ["--steps-per-epoch", "2", "--val-fraction", "0.25", "--loss", "triplet,id,distill,regress"]
    args += ["--unlabelled", str(crops_folder), "--unlabelled-per-batch", "4"]
    for file in [*files, str(crops_folder / "teacher.npz")]:
        args += ["--teacher-targets", file]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "30 unlabelled crops (teacher only)" in result.output
    card = load_model(tmp_path / "run" / "model.keras").card
    assert card.training["unlabelled_images"] == 30
    assert f"--unlabelled {crops_folder}" in card.training["command"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--unlabelled", "{crops}"], "teacher only"),  # no distill/regress loss
        (["{alpha}"], "given twice"),
        (["--named-crops", "{crops}", "--unlabelled", "{crops}", "--loss", "triplet,distill",
          "--teacher-targets", "{t0}"], "given twice"),
        (["--loss", "triplet,distill", "--unlabelled", "{crops}", "--teacher-targets", "{t0}",
          "--teacher-targets", "{t1}"], "no teacher vector"),  # the crops' file is missing
        (["--architecture", "mobilenetv2", "--input-size", "24x12"], "needs at least 32x32"),
        (["--pooling", "gem"], "mobilenetv2 only"),  # the mini tower pools its own way
        (["--ibn-blocks", "2"], "mobilenetv2 only"),
        (["{flat}"], "names a person"),  # a DATA folder of crops nobody is named in
        (["--epochs", "0"], "--epochs 0: must be at least 1"),
        (["--k", "1"], "--k 1: must be at least 2 with the pair/contrastive/triplet"),  # no positive pair
        (["--val-fraction", "1"], "--val-fraction 1: must be at least 0 and below 1"),
        (["--p", "40"], "--p 40 identities per batch, but the data has only"),  # found once data is read
        (["--architecture", "onnx", "--backbone-weights", "{onnx}", "--input-size", "1x1"],
         "window does not fit"),  # the imported network's 2x2 max pooling, on a 1x1 map
    ],
)  # fmt: skip
def test_bad_training_input_is_one_error_line_and_writes_nothing(
    two_sets, crops_folder, tmp_path, extra, message
):
    from tests.test_backends import tiny_onnx

    files = teacher_files(two_sets, tmp_path)
    tiny_onnx(tmp_path / "tiny.onnx")
    names = {"crops": str(crops_folder), "alpha": str(two_sets[0]), "t0": files[0], "t1": files[1]}
    names["onnx"] = str(tmp_path / "tiny.onnx")
    names["flat"] = str(tmp_path / "flat")
    (tmp_path / "flat").mkdir()
    for path in sorted(crops_folder.rglob("*.jpg"))[:3]:
        (tmp_path / "flat" / path.name).write_bytes(path.read_bytes())
    args = ["train", *map(str, two_sets), "--out", str(tmp_path / "run"), "--architecture", "mini"]
    args += ["--input-size", "64x32", "--embedding-dim", "16", "--p", "4", "--k", "2", "--epochs", "1"]
    args += [e.format(**names) for e in extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.output.count("error:") == 1
    assert not (tmp_path / "run").exists()
