"""Records round trip and short training runs on tiny synthetic data (mini tower, 64x32)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from reid_search.cli import app
from reid_search.data.layouts import scan_dataset
from reid_search.data.records import read_records
from reid_search.data.synthetic import generate_dataset
from reid_search.embedding.backends import load_model
from tests.conftest import REPO

runner = CliRunner()


@pytest.fixture(scope="module")
def train_root(tmp_path_factory):
    return generate_dataset(
        tmp_path_factory.mktemp("train"),
        n_people=20,
        n_cameras=2,
        frames_per_tracklet=4,
        seed=21,
        split="bbox_train",
    )


def test_records_round_trip_is_identity_disjoint(train_root, tmp_path):
    out = tmp_path / "rec"
    result = runner.invoke(
        app,
        [
            "records",
            str(train_root),
            "--out",
            str(out),
            "--val-fraction",
            "0.25",
            "--shards",
            "3",
            "--seed",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    train, val = read_records(out, "train"), read_records(out, "val")
    files = {r.path: r for r in scan_dataset(train_root).records}
    got = train + val
    assert sorted(e.path for e in got) == sorted(files)
    for e in got:
        r = files[e.path]
        assert (e.person, e.camera, e.tracklet, e.frame) == (r.person, r.camera, r.tracklet, r.frame)
        assert e.image == Path(e.path).read_bytes()
    assert not {e.person for e in train} & {e.person for e in val}
    label_map = json.loads((out / "label_map.json").read_text())
    assert sorted({e.label for e in train}) == list(range(15))
    assert all(label_map[e.person] == e.label for e in got)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train"]["identities"] == 15 and summary["val"]["identities"] == 5
    assert len(summary["train"]["files"]) == 3


def train_args(data, out, *extra):
    return [
        "train",
        str(data),
        "--out",
        str(out),
        "--architecture",
        "mini",
        "--input-size",
        "64x32",
        "--embedding-dim",
        "32",
        "--p",
        "4",
        "--k",
        "4",
        "--val-fraction",
        "0.25",
        "--warmup-epochs",
        "0",
        "--lr",
        "0.003",
        *extra,
    ]


def test_training_lowers_the_loss_and_exports_a_usable_model(train_root, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(
        app, train_args(train_root, out, "--epochs", "4", "--loss", "triplet=1,id=1,contrastive=0.5,pair=0.5")
    )
    assert result.exit_code == 0, result.output
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == 4
    assert history[-1]["loss"] < history[0]["loss"]
    model = load_model(out / "model.keras")
    card = model.card
    assert (
        card.trained
        and card.training["epochs"] == 4
        and card.training["command"].startswith("reid-search train")
    )
    assert card.threshold is not None and "equal error rate" in card.threshold_rule
    assert set(card.metrics["validation"]) >= {"rank1", "mAP"}
    assert json.loads((out / "config.json").read_text())["losses"]["pair"] == 0.5
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert model.keras_model.output_shape == (None, 32)


def test_resume_continues_from_the_last_checkpoint(train_root, tmp_path):
    out = tmp_path / "run"
    assert (
        runner.invoke(app, train_args(train_root, out, "--epochs", "2", "--steps-per-epoch", "3")).exit_code
        == 0
    )
    refused = runner.invoke(app, ["train", "--out", str(out), "--resume", "--epochs", "3", "--lr", "0.1"])
    assert refused.exit_code == 2 and "--lr cannot be given with --resume" in refused.output
    result = runner.invoke(app, ["train", "--out", str(out), "--resume", "--epochs", "3"])
    assert result.exit_code == 0, result.output
    assert "resumed from" in result.output
    epochs = [json.loads(line)["epoch"] for line in (out / "history.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    assert load_model(out / "model.keras").card.training["steps"] == 9
    assert json.loads((out / "config.json").read_text())["epochs"] == 3  # the run's record says so


def test_config_reruns_a_run_into_a_new_folder(train_root, tmp_path):
    first = tmp_path / "first"
    assert (
        runner.invoke(app, train_args(train_root, first, "--epochs", "1", "--steps-per-epoch", "2")).exit_code
        == 0
    )
    again = tmp_path / "again"
    result = runner.invoke(app, ["train", "--config", str(first / "config.json"), "--out", str(again)])
    assert result.exit_code == 0, result.output
    a, b = (json.loads((d / "config.json").read_text()) for d in (first, again))
    assert {k: v for k, v in a.items() if k not in ("out", "command")} == {
        k: v for k, v in b.items() if k not in ("out", "command")
    }


def test_same_seed_same_model(train_root, tmp_path):
    vectors = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert (
            runner.invoke(
                app, train_args(train_root, out, "--epochs", "1", "--steps-per-epoch", "2")
            ).exit_code
            == 0
        )
        weights = load_model(out / "model.keras").keras_model.get_weights()
        vectors.append(np.concatenate([w.ravel() for w in weights]))
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)


def test_distill_without_teacher_and_existing_run_are_clear_errors(train_root, tmp_path):
    bad = runner.invoke(app, train_args(train_root, tmp_path / "x", "--loss", "distill"))
    assert bad.exit_code == 2 and "teacher-targets" in bad.stderr
    out = tmp_path / "run"
    assert (
        runner.invoke(app, train_args(train_root, out, "--epochs", "1", "--steps-per-epoch", "1")).exit_code
        == 0
    )
    again = runner.invoke(app, train_args(train_root, out, "--epochs", "1"))
    assert again.exit_code == 2 and "--resume" in again.stderr


def test_cosface_training_separates_people_and_refuses_a_second_classifier(train_root, tmp_path):
    out = tmp_path / "run"
    losses = ("--loss", "triplet=1,cosface=1", "--cosface-margin", "0.2")
    result = runner.invoke(app, train_args(train_root, out, "--epochs", "3", *losses))
    assert result.exit_code == 0, result.output
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history[-1]["cosface"] < history[0]["cosface"]
    assert "--cosface-margin 0.2" in load_model(out / "model.keras").card.training["command"]
    both = runner.invoke(app, train_args(train_root, tmp_path / "x", "--loss", "id=1,cosface=1"))
    assert both.exit_code == 2 and "choose one" in both.stderr
    assert not (tmp_path / "x").exists()


def test_distillation_toward_teacher_targets(train_root, tmp_path):
    paths = sorted(str(p.relative_to(train_root)) for p in train_root.rglob("*.jpg"))
    rng = np.random.default_rng(0)
    teacher = tmp_path / "teacher.npz"
    np.savez(teacher, paths=np.array(paths), embeddings=rng.normal(size=(len(paths), 8)).astype(np.float16))
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        train_args(
            train_root,
            out,
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--loss",
            "triplet=1,distill=1",
            "--teacher-targets",
            str(teacher),
        ),
    )
    assert result.exit_code == 0, result.output
    card = load_model(out / "model.keras").card
    assert card.training["teacher_targets"] == [str(teacher)] and "distilled" in card.notes


def cached_config(train_root, tmp_path, steps: int):
    """A tiny MobileNetV2 run with blocks 1-9 frozen and 2 cached views."""
    from reid_search.embedding.tower import TowerConfig
    from reid_search.training import TrainConfig

    return TrainConfig(
        data=str(train_root),
        out=str(tmp_path / "run"),
        p=4,
        k=4,
        epochs=1,
        steps_per_epoch=steps,
        tower=TowerConfig("mobilenetv2", 64, 32, 16),
        freeze_blocks=9,
        cached_views=2,
        val_fraction=0.25,
    )


def test_cached_frozen_blocks_train_only_the_top(train_root, tmp_path):
    from reid_search.training.data import load_training_data
    from reid_search.training.loop import Trainer

    config = cached_config(train_root, tmp_path, steps=2)
    trainer = Trainer(config, load_training_data(config), log=lambda _: None)
    assert trainer.cache.shape[:2] == (2, len(trainer.data.train_labels))
    stem = trainer.tower.layers[3].get_layer("block_1_expand")
    top = trainer.tower.layers[3].get_layer("block_15_expand")
    stem_before, top_before = stem.get_weights()[0].copy(), top.get_weights()[0].copy()
    result = trainer.run()
    assert np.array_equal(stem.get_weights()[0], stem_before)
    assert not np.array_equal(top.get_weights()[0], top_before)
    assert result.model_path.is_file()
    assert load_model(result.model_path).keras_model.output_shape == (None, 16)


def test_caching_views_reports_progress_towards_the_total(train_root, tmp_path, monkeypatch):
    from reid_search.training.data import load_training_data
    from reid_search.training.loop import Trainer

    monkeypatch.setattr(Trainer, "progress_seconds", 0.0)  # a line after every chunk
    config = cached_config(train_root, tmp_path, steps=1)
    lines: list[str] = []
    trainer = Trainer(config, load_training_data(config), log=lines.append)
    total = 2 * len(trainer.data.train_labels)
    progress = [line for line in lines if "caching views:" in line]
    done = [int(line.split("caching views: ")[1].split("/")[0]) for line in progress]
    assert done and done == sorted(done) and done[-1] == total
    assert all(f"/{total} images" in line and "ETA" in line for line in progress)


def test_card_command_reproduces_the_config(monkeypatch, tmp_path):
    import shlex

    import reid_search.training.loop as training
    from reid_search.embedding.tower import TowerConfig
    from reid_search.training import TrainConfig, train_command
    from reid_search.training.augment import AugmentConfig

    config = TrainConfig(
        data="some/data",
        out=str(tmp_path / "o"),
        tower=TowerConfig("mobilenetv2", 96, 48, 64, "w.h5", 3, ibn_blocks=4, pooling="gem"),
        augment=AugmentConfig(False, 0.05, 0.1, 0.25, True, grey=0.1, downscale=0.3),
        losses={"triplet": 2.0, "cosface": 1.0, "distill": 5.0},
        triplet_margin=None,
        contrastive_margin=0.7,
        label_smoothing=0.2,
        cosface_scale=16.0,
        cosface_margin=0.3,
        teacher_targets="t.npz",
        unlabelled=["crops"],
        named_crops=["named"],
        unlabelled_per_batch=5,
        p=8,
        k=2,
        epochs=7,
        lr=1e-3,
        warmup_epochs=1.5,
        weight_decay=1e-4,
        freeze_blocks=6,
        cached_views=3,
        val_fraction=0.2,
        seed=3,
        steps_per_epoch=11,
    )
    captured = {}

    def fake_train(cfg, resume=False, log=print, epochs=None):
        captured["config"] = cfg
        raise ValueError("stop here")

    monkeypatch.setattr(training, "train", fake_train)
    args = shlex.split(train_command(config))[1:]
    runner.invoke(app, args)
    got = captured["config"].to_dict()
    want = config.to_dict()
    got.pop("command"), want.pop("command")
    assert got == want


def test_resume_reads_the_cached_views_instead_of_computing_them(train_root, tmp_path):
    from reid_search.training.loop import train

    config = cached_config(train_root, tmp_path, steps=1)
    first: list[str] = []
    train(config, log=first.append)
    assert any(line.startswith("cached 2 augmented views") for line in first)
    card = json.loads((tmp_path / "run" / "model.card.json").read_text())
    assert card["training"]["setup_seconds"] > 0  # the card counts the caching, not only the epochs
    config_file = tmp_path / "run" / "config.json"
    saved = json.loads(config_file.read_text())
    saved["epochs"] = 2
    config_file.write_text(json.dumps(saved))
    second: list[str] = []
    result = train(config, resume=True, log=second.append)
    assert any(line.startswith("cached views read from") for line in second)
    assert not any(line.startswith("cached 2 augmented views") for line in second)
    assert result.epochs_done == 2


def test_train_option_defaults_are_the_config_defaults(monkeypatch, tmp_path):
    """One source per setting: `train DATA --out X` with no option is TrainConfig's defaults."""
    import reid_search.training.loop as training
    from reid_search.training import TrainConfig

    captured = {}

    def fake_train(cfg, resume=False, log=print, epochs=None):
        captured["config"] = cfg
        raise ValueError("stop here")

    monkeypatch.setattr(training, "train", fake_train)
    runner.invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "run")])
    got = captured["config"].to_dict()
    want = TrainConfig(data=[str(tmp_path)], out=str(tmp_path / "run")).to_dict()
    assert got == want


@pytest.mark.parametrize(
    ("recipe", "card"),
    [
        ("default", "reid_search/models/default.card.json"),
        ("lodo-no-cuhk03", "benchmarks/models/lodo-no-cuhk03.card.json"),
        ("lodo-no-market", "benchmarks/models/lodo-no-market.card.json"),
    ],
)
def test_a_recipe_trains_the_settings_its_model_was_made_with(recipe, card, monkeypatch, tmp_path):
    """`train --config recipes/NAME.json --out X` runs exactly the config in the model's card
    (but for the run folder), and the command it records is the card's, but for --out."""
    import json

    import reid_search.training.loop as training
    from reid_search.training import TrainConfig, train_command

    captured = {}

    def fake_train(cfg, resume=False, log=print, epochs=None):
        captured["config"] = cfg
        raise ValueError("stop here")

    monkeypatch.setattr(training, "train", fake_train)
    out = tmp_path / "run"
    runner.invoke(app, ["train", "--config", str(REPO / "recipes" / f"{recipe}.json"), "--out", str(out)])
    made = json.loads((REPO / card).read_text())["training"]
    got = captured["config"].to_dict()
    newer = {k for k in got if k not in made["config"]}  # settings added after the card: their defaults
    fresh = TrainConfig(data=got["data"], out="").to_dict()
    assert {k: got[k] for k in newer} == {k: fresh[k] for k in newer}
    assert {**got, "out": "", "command": ""} == {
        **made["config"],
        **{k: got[k] for k in newer},
        "out": "",
        "command": "",
    }
    assert train_command(captured["config"]) == made["command"].replace(made["config"]["out"], str(out))


def write_attribute_labels(train_root: Path, folder: Path) -> Path:
    """attributes.csv for every training image (paths relative to ``folder``): even people are
    red-topped men."""
    import os

    folder.mkdir()
    lines = ["path,person,attributes"]
    for image in sorted(train_root.rglob("*.jpg")):
        person = image.parent.name
        names = "personalMale upperBodyRed" if int(person) % 2 == 0 else "personalFemale"
        lines.append(f"{os.path.relpath(image, folder)},{person},{names}")
    (folder / "attributes.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_the_attr_loss_teaches_attributes_and_never_gives_the_held_out_people(train_root, tmp_path):
    from reid_search.attributes.labels import read_labels
    from reid_search.training import TrainConfig
    from reid_search.training.attribute_targets import load_attribute_targets
    from reid_search.training.data import load_training_data

    labels_dir = write_attribute_labels(train_root, tmp_path / "labels")
    data = load_training_data(TrainConfig(data=str(train_root), out=str(tmp_path / "x"), val_fraction=0))
    targets, prior = load_attribute_targets([str(labels_dir)], data)
    held_out = read_labels(labels_dir).test_people(0.3, 0)
    given = targets[:, 0] >= 0
    persons = [f"labels/{Path(p).parent.name}" for p in data.train_paths]
    assert held_out and not any(given[i] for i, p in enumerate(persons) if p in held_out)
    assert given.sum() > 0 and 0 < prior[0] < 1
    out = tmp_path / "run"
    args = train_args(train_root, out, "--epochs", "1", "--steps-per-epoch", "3",
                      "--loss", "triplet=1,attr=1", "--attribute-labels", str(labels_dir))  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    card = load_model(out / "model.keras").card
    assert card.training["losses"]["attr"] == 1.0 and "--attribute-labels" in card.training["command"]
    refused = runner.invoke(app, train_args(train_root, tmp_path / "run2", "--loss", "triplet=1,attr=1"))
    assert refused.exit_code == 2 and "--attribute-labels" in refused.output


def test_the_attribute_loss_ignores_unlabelled_rows_and_weighs_classes_equally():
    import tensorflow as tf

    from reid_search.training.losses import attribute_loss

    logits = tf.constant([[2.0], [-1.0], [5.0]])
    targets = tf.constant([[1.0], [0.0], [-1.0]])  # the third row has no labels
    prior = tf.constant([0.5])
    alone = attribute_loss(logits[:2], targets[:2], prior)
    assert float(attribute_loss(logits, targets, prior)) == pytest.approx(float(alone) * 2 / 2)
    rare = attribute_loss(tf.constant([[0.0], [0.0]]), tf.constant([[1.0], [0.0]]), tf.constant([0.1]))
    assert float(rare) == pytest.approx(0.5 * (0.5 / 0.1 + 0.5 / 0.9) * np.log(2), rel=1e-5)
