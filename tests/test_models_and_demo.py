"""Model files with their cards, the synthetic generator and the demo."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from reid_search.data.synthetic import generate_dataset
from reid_search.embedding.backends import load_model
from reid_search.embedding.model_store import DEFAULT_MODEL, ModelError, card_path, read_card


def test_default_model_has_a_complete_card():
    card = read_card(DEFAULT_MODEL)
    assert card.input_height > 0 and card.input_width > 0 and card.embedding_dim > 0
    assert card.threshold is not None and card.threshold_rule
    assert card.preprocessing and card.training.get("command")
    data = json.loads(card_path(DEFAULT_MODEL).read_text())
    model = load_model()
    assert data["file_sha256"] == model.sha256
    assert model.keras_model.output_shape == (None, card.embedding_dim)


def test_model_without_card_is_refused(tmp_path):
    lonely = tmp_path / "m.keras"
    lonely.write_bytes(DEFAULT_MODEL.read_bytes())
    with pytest.raises(ModelError, match="model card missing"):
        load_model(lonely)


def test_model_archive_holds_no_pickle():
    with zipfile.ZipFile(DEFAULT_MODEL) as archive:
        names = archive.namelist()
    assert not [n for n in names if n.endswith((".pkl", ".pickle"))]


def test_embeddings_are_unit_length_and_deterministic(embedder, synth_root):
    paths = sorted(synth_root.glob("bbox_test/0001/*.jpg"))[:4]
    a, _, _ = embedder.embed_files(paths)
    b, _, _ = embedder.embed_files(paths)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_generator_is_reproducible_and_mars_named(tmp_path):
    a = generate_dataset(tmp_path / "a", n_people=3, n_cameras=2, frames_per_tracklet=2, seed=5)
    b = generate_dataset(tmp_path / "b", n_people=3, n_cameras=2, frames_per_tracklet=2, seed=5)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.jpg"))
    assert len(files_a) == 12 and str(files_a[0]) == "bbox_test/0001/0001C1T0001F001.jpg"
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)
    with Image.open(a / files_a[0]) as img:
        assert img.size == (64, 128)


def test_demo_runs_end_to_end(tmp_path):
    from reid_search.demo import run_demo

    lines = []
    result = run_demo(tmp_path, n_people=10, n_cameras=2, echo=lines.append, progress=False)
    assert result.report.summary.n_scored == 10 * 2 * 4
    assert result.report_paths["cmc_png"].is_file()
    assert any("rank-1" in line for line in lines)
    assert len(result.queries) == 3 and all(q.identities for q in result.queries)
