"""IBN-a: the instance-normalised half ignores an image's contrast and brightness, the
batch-normalised half keeps the pretrained behaviour, and an IBN tower saves and loads."""

from __future__ import annotations

import numpy as np
import pytest

from reid_search.embedding.layers import InstanceBatchNorm


def trained_batch_norm(channels: int):
    import keras

    bn = keras.layers.BatchNormalization(name="block_1_expand_BN")
    bn.build((None, 4, 4, channels))
    rng = np.random.default_rng(0)
    scale, shift = rng.uniform(0.5, 2, channels), rng.normal(size=channels)
    bn.set_weights([scale, shift, rng.normal(size=channels), rng.uniform(0.5, 2, channels)])
    return bn


def test_instance_half_ignores_a_per_image_contrast_and_brightness_change():
    layer = InstanceBatchNorm.from_batch_norm(trained_batch_norm(8))
    x = np.random.default_rng(1).normal(size=(2, 6, 5, 8)).astype("float32")
    changed = x.copy()
    changed[0] = changed[0] * 3.0 + 2.0  # one image brighter and with more contrast
    a, b = layer(x).numpy(), layer(changed).numpy()
    np.testing.assert_allclose(a[1], b[1], atol=1e-5)  # the other image is untouched
    np.testing.assert_allclose(a[0, ..., :4], b[0, ..., :4], atol=5e-3)  # IN half: same (up to epsilon)
    assert np.abs(a[0, ..., 4:] - b[0, ..., 4:]).max() > 0.5  # BN half: follows the input


def test_batch_norm_half_keeps_the_replaced_layers_inference_output():
    bn = trained_batch_norm(8)
    layer = InstanceBatchNorm.from_batch_norm(bn)
    x = np.random.default_rng(2).normal(size=(3, 4, 4, 8)).astype("float32")
    np.testing.assert_allclose(layer(x).numpy()[..., 4:], bn(x, training=False).numpy()[..., 4:], atol=1e-5)


def test_ibn_tower_saves_loads_and_embeds_identically(tmp_path):
    from reid_search.embedding.backends import load_model
    from reid_search.embedding.model_store import ModelCard, save_model
    from reid_search.embedding.tower import TowerConfig, build_tower

    config = TowerConfig("mobilenetv2", 64, 32, 16, None, 0, ibn_blocks=3)
    tower = build_tower(config)
    backbone = next(layer for layer in tower.layers if hasattr(layer, "layers"))
    assert isinstance(backbone.get_layer("block_3_expand_BN"), InstanceBatchNorm)
    assert not isinstance(backbone.get_layer("block_4_expand_BN"), InstanceBatchNorm)
    card = ModelCard("ibn", "mobilenetv2", 64, 32, 16, tower_config=config.to_dict())
    path = save_model(tower, card, tmp_path / "ibn.keras")
    pixels = np.random.default_rng(3).uniform(0, 255, (2, 64, 32, 3)).astype("float32")
    loaded = load_model(path)
    np.testing.assert_allclose(loaded.embed(pixels), tower(pixels, training=False).numpy(), atol=1e-5)


def test_ibn_on_a_tower_without_blocks_is_a_clear_error():
    from reid_search.embedding.tower import TowerConfig, build_tower

    with pytest.raises(ValueError, match="mobilenetv2 only"):
        build_tower(TowerConfig("mini", 64, 32, 16, ibn_blocks=2))


def test_ibn_tower_splits_at_a_frozen_block_like_any_tower():
    """--ibn-blocks with --freeze-blocks / --cached-views: the frozen part then the
    trainable view give the whole tower's embedding (IBN layers below and above the cut)."""
    from reid_search.embedding.tower import TowerConfig, build_tower
    from reid_search.training.build import split_at_block

    tower = build_tower(TowerConfig("mobilenetv2", 64, 32, 16, None, 0, ibn_blocks=6))
    frozen, view = split_at_block(tower, 3)
    pixels = np.random.default_rng(4).uniform(0, 255, (2, 64, 32, 3)).astype("float32")
    _, embedding = view(frozen(pixels, training=False), training=False)
    np.testing.assert_allclose(embedding.numpy(), tower(pixels, training=False).numpy(), atol=1e-4)


def test_gem_pooling_spans_average_to_max_pooling_with_its_power():
    from reid_search.embedding.layers import GeneralizedMeanPooling

    x = np.random.default_rng(5).uniform(0, 6, (2, 5, 3, 4)).astype("float32")
    np.testing.assert_allclose(GeneralizedMeanPooling(p=1.0)(x).numpy(), x.mean(axis=(1, 2)), rtol=1e-5)
    near_max = GeneralizedMeanPooling(p=20.0)(x).numpy()  # at most 15 ** (-1 / 20) = 0.87 of the max
    np.testing.assert_allclose(near_max, x.max(axis=(1, 2)), rtol=0.14)
    cubic = GeneralizedMeanPooling(p=3.0)(x).numpy()
    assert np.all(cubic > x.mean(axis=(1, 2))) and np.all(cubic < x.max(axis=(1, 2)))


def test_gem_power_is_learned():
    import tensorflow as tf

    from reid_search.embedding.layers import GeneralizedMeanPooling

    layer = GeneralizedMeanPooling(p=3.0)
    x = tf.constant(np.random.default_rng(6).uniform(0, 6, (2, 4, 4, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(layer(x))
    (grad,) = tape.gradient(out, layer.trainable_variables)
    assert float(grad) != 0.0


def test_gem_tower_saves_loads_splits_and_exports_like_an_average_pooled_one(tmp_path):
    from reid_search.embedding.backends import load_model
    from reid_search.embedding.model_store import ModelCard, save_model
    from reid_search.embedding.tower import TowerConfig, build_tower
    from reid_search.training.build import split_at_block

    config = TowerConfig("mobilenetv2", 64, 32, 16, None, 0, pooling="gem")
    tower = build_tower(config)
    pixels = np.random.default_rng(7).uniform(0, 255, (2, 64, 32, 3)).astype("float32")
    expected = tower(pixels, training=False).numpy()
    frozen, view = split_at_block(tower, 3)
    _, embedding = view(frozen(pixels, training=False), training=False)
    np.testing.assert_allclose(embedding.numpy(), expected, atol=1e-4)
    card = ModelCard("gem", "mobilenetv2", 64, 32, 16, tower_config=config.to_dict())
    path = save_model(tower, card, tmp_path / "gem.keras")
    np.testing.assert_allclose(load_model(path).embed(pixels), expected, atol=1e-5)


def test_pooling_on_a_tower_that_does_not_pool_there_or_an_unknown_one_is_a_clear_error():
    from reid_search.embedding.tower import TowerConfig, build_tower

    with pytest.raises(ValueError, match="mobilenetv2 only"):
        build_tower(TowerConfig("mini", 64, 32, 16, pooling="gem"))
    with pytest.raises(ValueError, match="unknown pooling 'max'; known: avg, gem"):
        build_tower(TowerConfig("mobilenetv2", 64, 32, 16, pooling="max"))


def test_a_run_that_changes_only_the_pooling_reuses_the_cached_views():
    """The frozen blocks come before the pooling: their cached output is the same."""
    from reid_search.embedding.tower import TowerConfig
    from reid_search.training import TrainConfig
    from reid_search.training.loop import cached_views_recipe

    def recipe(**tower):
        config = TrainConfig(data=["d"], out="o", freeze_blocks=5, cached_views=8)
        config.tower = TowerConfig("mobilenetv2", 160, 80, 256, "w.h5", 0, **tower)
        return cached_views_recipe(config)

    assert recipe(pooling="gem") == recipe(pooling="avg")
    assert recipe(ibn_blocks=2) != recipe()


def test_gem_tower_exports_to_litert_in_ops_xnnpack_runs(tmp_path):
    """LiteRT leaves POW to a slow reference kernel outside XNNPACK (it cost the GeM default
    9% of its speed): the export must carry the same numbers without it."""
    from ai_edge_litert.interpreter import Interpreter

    from reid_search.embedding.backends import load_model
    from reid_search.embedding.export import export_model
    from reid_search.embedding.model_store import ModelCard, save_model
    from reid_search.embedding.tower import TowerConfig, build_tower

    config = TowerConfig("mobilenetv2", 64, 32, 16, None, 0, pooling="gem")
    tower = build_tower(config)
    card = ModelCard("gem", "mobilenetv2", 64, 32, 16, tower_config=config.to_dict())
    fast = export_model(save_model(tower, card, tmp_path / "gem.keras"), "litert")
    ops = {op["op_name"] for op in Interpreter(model_path=str(fast))._get_ops_details()}
    assert "MEAN" in ops and "POW" not in ops
    pixels = np.random.default_rng(3).uniform(0, 255, (2, 64, 32, 3)).astype("float32")
    cosine = (load_model(fast).embed(pixels) * tower(pixels, training=False).numpy()).sum(axis=1)
    assert cosine.min() > 0.9999
