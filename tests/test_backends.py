"""Model formats behind one interface: a tiny ONNX network the test builds, its OpenVINO IR,
the ONNX-to-Keras import, the peers' cards, missing extras and the embed command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from reid_search.cli import app
from reid_search.embedding.backends import OnnxBackend, open_model
from reid_search.embedding.embedder import Embedder
from reid_search.embedding.model_store import ModelError

from .conftest import REPO, shared_data

runner = CliRunner()
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def tiny_onnx(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Conv 3x3 (pad 1) -> ReLU -> MaxPool 2 -> depthwise 3x3 -> ReLU -> GAP -> flatten -> Gemm(6)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = {
        "w1": rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32),
        "b1": rng.normal(0, 0.1, 4).astype(np.float32),
        "w2": rng.normal(0, 0.3, (4, 1, 3, 3)).astype(np.float32),
        "b2": rng.normal(0, 0.1, 4).astype(np.float32),
        "fc": rng.normal(0, 0.3, (6, 4)).astype(np.float32),
        "fcb": rng.normal(0, 0.1, 6).astype(np.float32),
        "shape": np.array([-1, 4], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Reshape", ["g", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["output"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 6])],
        [numpy_helper.from_array(v, k) for k, v in w.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return w


def reference(w: dict[str, np.ndarray], nchw: np.ndarray) -> np.ndarray:
    """The tiny network in plain numpy (what every backend must reproduce)."""

    def conv(x, k, b, groups=1):
        n, c, h, wd = x.shape
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        out = np.zeros((n, k.shape[0], h, wd), np.float64)
        per = k.shape[0] // groups
        for o in range(k.shape[0]):
            g = o // per
            ins = range(g * k.shape[1], (g + 1) * k.shape[1])
            for ci, i in enumerate(ins):
                for dy in range(3):
                    for dx in range(3):
                        out[:, o] += k[o, ci, dy, dx] * xp[:, i, dy : dy + h, dx : dx + wd]
            out[:, o] += b[o]
        return out

    x = np.maximum(conv(nchw, w["w1"], w["b1"]), 0)
    n, c, h, wd = x.shape
    x = x.reshape(n, c, h // 2, 2, wd // 2, 2).max(axis=(3, 5))
    x = np.maximum(conv(x, w["w2"], w["b2"], groups=4), 0)
    return x.mean(axis=(2, 3)) @ w["fc"].T + w["fcb"]


def write_card(path: Path, **fields) -> Path:
    card = {
        "format": "reid-search/model-card/v1",
        "name": "tiny",
        "architecture": "tiny",
        "input_height": 16,
        "input_width": 8,
        "embedding_dim": 6,
        "model_format": "onnx",
        "channel_order": "RGB",
        "pixel_scale": 1 / 255,
        "pixel_mean": MEAN,
        "pixel_std": STD,
        "layout": "NCHW",
        **fields,
    }
    path.write_text(json.dumps(card))
    return path


@pytest.fixture()
def tiny(tmp_path):
    weights = tiny_onnx(tmp_path / "tiny.onnx")
    write_card(tmp_path / "tiny.card.json")
    pixels = np.random.default_rng(1).uniform(0, 255, (5, 16, 8, 3)).astype(np.float32)
    nchw = ((pixels / 255 - np.array(MEAN)) / np.array(STD)).transpose(0, 3, 1, 2)
    return tmp_path, weights, pixels, reference(weights, nchw)


def test_onnx_backend_applies_the_cards_preprocessing(tiny):
    folder, _, pixels, expected = tiny
    model = open_model(folder / "tiny.onnx")
    assert isinstance(model, OnnxBackend) and model.card.embedding_dim == 6
    np.testing.assert_allclose(model.embed(pixels), expected, rtol=1e-4, atol=1e-4)


def test_bgr_card_swaps_channels_before_the_network(tiny):
    folder, _, pixels, expected = tiny
    write_card(folder / "tiny.card.json", channel_order="BGR")
    swapped = open_model(folder / "tiny.onnx").embed(pixels[..., ::-1])
    np.testing.assert_allclose(swapped, expected, rtol=1e-4, atol=1e-4)


def test_openvino_ir_gives_the_same_vectors(tiny):
    import openvino as ov

    folder, _, pixels, expected = tiny
    ov.save_model(
        ov.convert_model(str(folder / "tiny.onnx")), str(folder / "tiny.xml"), compress_to_fp16=False
    )
    write_card(folder / "tiny.card.json", model_format="openvino")
    model = open_model(folder / "tiny.xml")
    assert model.card.model_format == "openvino" and len(model.files()) == 2
    np.testing.assert_allclose(model.embed(pixels), expected, rtol=1e-4, atol=1e-4)


def test_card_with_model_file_points_elsewhere(tiny, tmp_path):
    folder, _, pixels, expected = tiny
    cards = tmp_path / "cards"
    cards.mkdir()
    write_card(cards / "peer.card.json", model_file="../tiny.onnx")
    embedder = Embedder(cards / "peer.card.json")
    vectors = embedder.embed_pixels(pixels)
    np.testing.assert_allclose(vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-4)


def test_card_format_must_match_the_file(tiny):
    folder = tiny[0]
    write_card(folder / "tiny.card.json", model_format="openvino")
    with pytest.raises(ModelError, match="card says 'openvino'"):
        open_model(folder / "tiny.onnx")


def test_missing_runtime_names_the_extra(tiny, monkeypatch):
    from reid_search.errors import MissingExtra

    folder = tiny[0]
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(
        MissingExtra, match=r"running onnx models needs onnxruntime: pip install 'reid-search\[onnx\]'"
    ):
        open_model(folder / "tiny.onnx")


def test_unknown_model_suffix_is_a_clear_error(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"x")
    result = runner.invoke(app, ["compare", "a.jpg", "b.jpg", "--model", str(tmp_path / "m.pt")])
    assert result.exit_code == 2 and "unknown model format" in result.stderr


def test_onnx_import_rebuilds_the_network_in_keras(tiny):
    from reid_search.embedding.onnx_import import keras_from_onnx

    folder, _, pixels, expected = tiny
    nhwc = (pixels / 255 - np.array(MEAN)) / np.array(STD)
    model = keras_from_onnx(folder / "tiny.onnx")
    np.testing.assert_allclose(model(nhwc.astype(np.float32)).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_onnx_tower_starts_as_the_pretrained_peer():
    """The re-ID-pretrained start: the OSNet tower's vectors equal OSNet's own under onnxruntime."""
    from reid_search.embedding.tower import TowerConfig, build_tower

    onnx_file = shared_data().parent / "peers" / "osnet_x0_25_msmt17.onnx"
    tower = build_tower(TowerConfig("onnx", 256, 128, 512, str(onnx_file)))
    peer = open_model(REPO / "benchmarks" / "peers" / "osnet_x0_25_msmt17.card.json")
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 256, 128, 3)).astype(np.float32)
    ours, theirs = tower(pixels, training=False).numpy(), peer.embed(pixels)
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    assert np.all(np.sum(ours * theirs, axis=1) > 0.9999)


def test_peer_cards_reach_the_shared_models():
    shared_data()
    for card in sorted((REPO / "benchmarks" / "peers").glob("*.card.json")):
        model = open_model(card)
        vector = model.embed(np.full((1, model.card.input_height, model.card.input_width, 3), 128, "f4"))
        assert vector.shape == (1, model.card.embedding_dim) and np.isfinite(vector).all()


def test_embed_command_writes_relative_paths_and_unit_vectors(mars_samples, tmp_path):
    from reid_search.embedding.vectors import read_vectors

    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    for i in (1, 2):
        (tmp_path / "imgs" / "sub" / f"{i}.jpg").write_bytes((mars_samples / f"{i}.jpg").read_bytes())
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "v.npz"
    result = runner.invoke(app, ["embed", str(tmp_path / "imgs"), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert "broken.jpg" in result.stderr
    vectors = read_vectors(out)
    assert vectors.paths == ["sub/1.jpg", "sub/2.jpg"] and len(vectors.skipped) == 1
    direct, _, _ = Embedder().embed_files([tmp_path / "imgs" / "sub" / "1.jpg"])
    np.testing.assert_allclose(vectors.embeddings[0], direct[0], atol=1e-5)


@pytest.mark.parametrize(
    "command, message",
    [
        (["embed", "{empty}", "--out", "{out}/v.npz"], "no images below it"),
        (["records", "{samples}", "--out", "{out}/shards"], "none of its 7 images names a person"),
        (["embed", "{samples}", "--out", "{out}/v.npz", "--batch-size", "0"],
         "Invalid value for '--batch-size'"),
        (["index", "{samples}", "--name", "g", "--indexes-dir", "{out}", "--batch-size", "0"],
         "Invalid value for '--batch-size'"),
    ],
)  # fmt: skip
def test_a_folder_without_images_or_people_is_one_error_line_and_writes_nothing(
    mars_samples, tmp_path, command, message
):
    """An empty folder (a mistyped path, most likely) or a folder of crops nobody is named in
    (MARS samples called 1.jpg..7.jpg) is refused, not written as an empty file."""
    (tmp_path / "empty").mkdir()
    names = {"empty": tmp_path / "empty", "out": tmp_path / "out", "samples": mars_samples}
    result = runner.invoke(app, [part.format(**names) for part in command])
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("error:") <= 1
    assert not (tmp_path / "out").exists()
