"""Image loading: every bad file is one clear ImageError, good files come out resized."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from reid_search.data.images import ImageError, load_image


@pytest.fixture()
def good_jpeg(tmp_path):
    path = tmp_path / "ok.jpg"
    Image.fromarray(np.full((90, 40, 3), 200, np.uint8)).save(path)
    return path


def test_good_image_is_resized_and_hashed(good_jpeg):
    img = load_image(good_jpeg, (128, 64))
    assert img.pixels.shape == (128, 64, 3) and img.pixels.dtype == np.float32
    assert (img.width, img.height) == (40, 90)
    assert len(img.sha256) == 64
    assert 190 < img.pixels.mean() < 210


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty file"), (b"this is not an image", "not an image"), (None, "corrupt or truncated")],
)
def test_bad_files_raise_one_clear_error(tmp_path, good_jpeg, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(good_jpeg.read_bytes()[:300] if content is None else content)
    with pytest.raises(ImageError, match=reason) as info:
        load_image(path, (128, 64))
    assert str(info.value).startswith(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg", (128, 64))


def test_training_records_and_serving_decode_alike(tmp_path):
    """A big JPEG (draft-mode territory) decodes to the same pixels from a file (galleries,
    queries, dataset training) and from the bytes stored in TFRecords (records training)."""
    from PIL import Image

    from reid_search.data.images import load_image
    from reid_search.training.data import decode_all

    rng = np.random.default_rng(0)
    path = tmp_path / "big.jpg"
    Image.fromarray(rng.integers(0, 255, (800, 400, 3), dtype=np.uint8)).save(path, quality=90)
    size = (192, 96)
    from_files, _, _ = decode_all([str(path)], size)
    from_bytes, _, _ = decode_all([str(path)], size, [path.read_bytes()])
    np.testing.assert_array_equal(from_files, from_bytes)
    np.testing.assert_array_equal(from_files[0], load_image(path, size).pixels.astype(np.uint8))
