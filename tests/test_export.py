"""Fast runtime: the shipped default's LiteRT file gives Keras' vectors and is used automatically;
a stale or unrunnable export falls back to Keras."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from reid_search.cli import app
from reid_search.embedding.backends import KerasBackend, LiteRtBackend, open_model
from reid_search.embedding.embedder import Embedder
from reid_search.embedding.model_store import DEFAULT_MODEL, read_card

runner = CliRunner()


def test_default_model_embeds_through_its_fast_runtime_with_kerass_vectors(cuhk_test):
    fast, keras = open_model(), open_model(fast=False)
    assert isinstance(fast, LiteRtBackend) and isinstance(keras, KerasBackend)
    assert fast.sha256 == keras.sha256  # one model identity for galleries
    paths = sorted(cuhk_test.rglob("*.jpg"))[:160]
    a, _, _ = Embedder(fast).embed_files(paths)
    b, _, _ = Embedder(keras).embed_files(paths)
    assert np.sum(a * b, axis=1).min() >= 0.9999


@pytest.fixture()
def tiny_model(tmp_path, synth_root):
    args = ["train", str(synth_root), "--out", str(tmp_path / "run"), "--architecture", "mini"]
    args += ["--input-size", "64x32", "--embedding-dim", "8", "--p", "4", "--k", "2", "--epochs", "1"]
    args += ["--steps-per-epoch", "1", "--val-fraction", "0.25"]
    assert runner.invoke(app, args).exit_code == 0
    return tmp_path / "run" / "model.keras"


def test_export_links_the_fast_file_and_stale_exports_are_ignored(tiny_model):
    result = runner.invoke(app, ["export", str(tiny_model), "--format", "litert"])
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("exported ")  # no converter trace
    target = tiny_model.with_name("model-litert.tflite")
    assert read_card(tiny_model).fast_runtime == target.name
    assert json.loads(target.with_name("model-litert.card.json").read_text())["model_format"] == "litert"
    assert isinstance(open_model(tiny_model), LiteRtBackend)
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 64, 32, 3)).astype(np.float32)
    a, b = Embedder(open_model(tiny_model)), Embedder(open_model(tiny_model, fast=False))
    assert np.sum(a.embed_pixels(pixels) * b.embed_pixels(pixels), axis=1).min() >= 0.9999
    # the .keras file changes (retrained): its old export no longer matches and is not used
    shutil.copyfile(tiny_model, tiny_model.with_name("backup.keras"))
    with open(tiny_model, "ab") as fh:
        fh.write(b"\0")
    assert isinstance(open_model(tiny_model), KerasBackend)


def test_the_slow_fallback_is_said_once_and_a_stale_keras_is_not_exported(tiny_model, capsys):
    from reid_search.embedding import backends

    assert runner.invoke(app, ["export", str(tiny_model), "--format", "litert"]).exit_code == 0
    tiny_model.with_name("model-litert.tflite").unlink()  # the fast file is gone
    backends._warned_slow.clear()
    open_model(tiny_model)
    open_model(tiny_model)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "runs through Keras" in line]
    assert len(warnings) == 1 and "model-litert.tflite is missing" in warnings[0]
    with open(tiny_model, "ab") as fh:  # the file no longer is the one its card describes
        fh.write(b"\0")
    result = runner.invoke(app, ["export", str(tiny_model), "--format", "litert"])
    assert result.exit_code == 2 and "stale" in result.output
    assert not tiny_model.with_name("model-litert.tflite").exists()  # nothing written


def test_default_card_names_its_fast_runtime():
    card = read_card(DEFAULT_MODEL)
    assert card.fast_runtime and (DEFAULT_MODEL.parent / card.fast_runtime).is_file()


def test_adapt_sets_batchnorm_statistics_to_the_new_cameras_images(tiny_model, synth_root, tmp_path):
    import keras

    from reid_search.data.images import load_image
    from reid_search.embedding.adapt import batchnorm_layers, reestimate
    from reid_search.embedding.backends import load_model

    out = tmp_path / "adapted.keras"
    args = ["adapt", str(synth_root), "--out", str(out), "--model", str(tiny_model), "--method", "batchnorm"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    before, after = load_model(tiny_model), load_model(out)
    assert "AdaBN" in after.card.notes and after.card.fast_runtime is None
    necks = [next(b for b in batchnorm_layers(m.keras_model) if b.name == "bnneck") for m in (before, after)]
    assert not np.allclose(necks[0].moving_mean.numpy(), necks[1].moving_mean.numpy())
    # in one batch, every layer's statistics are exactly those of its inputs over the images
    pixels = np.stack([load_image(p, (64, 32)).pixels for p in sorted(synth_root.rglob("*.jpg"))])
    model = before.keras_model
    reestimate(model, pixels, batch_size=len(pixels))
    neck = next(b for b in batchnorm_layers(model) if b.name == "bnneck")
    inputs = keras.Model(model.input, neck.input)(pixels).numpy()
    assert np.allclose(neck.moving_mean.numpy(), inputs.mean(axis=0), atol=1e-3)
    assert np.allclose(neck.moving_variance.numpy(), inputs.var(axis=0), rtol=1e-2, atol=1e-3)


def test_adapt_uses_at_most_max_images_spread_over_the_folder_and_passes_over_other_files(
    tiny_model, synth_root, tmp_path
):
    from reid_search.embedding.embedder import sample_frames

    folder = tmp_path / "cams"
    shutil.copytree(synth_root, folder)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "adapted.keras"
    args = ["adapt", str(folder), "--out", str(out), "--model", str(tiny_model), "--max-images", "40"]
    args += ["--method", "batchnorm"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "on 40 unlabelled images" in result.output
    people = {p.parent.name for p in sample_frames(sorted(synth_root.rglob("*.jpg")), 40)}
    assert len(people) == 12  # every person of the sorted folder, not the first 40 images' 5


def test_adapt_on_too_few_images_names_the_folder_and_writes_nothing(tiny_model, mars_samples, tmp_path):
    out = tmp_path / "adapted.keras"
    args = [
        "adapt",
        str(mars_samples),
        "--out",
        str(out),
        "--model",
        str(tiny_model),
        "--method",
        "batchnorm",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert f"error: {mars_samples}: 7 readable images; at least 32 are needed" in result.output
    assert not out.exists()
