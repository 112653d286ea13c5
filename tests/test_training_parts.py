"""Sampler, losses (checked against plain numpy) and augmentation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

import reid_search.training.losses as L
from reid_search.training import parse_losses
from reid_search.training.augment import AugmentConfig, Augmenter
from reid_search.training.build import cosine_schedule
from reid_search.training.sampler import PKSampler


def test_pk_sampler_batches_hold_p_identities_of_k_images():
    labels = np.repeat(np.arange(20), [2 if i % 5 == 0 else 6 for i in range(20)])
    sampler = PKSampler(labels, p=5, k=4, seed=0)
    batches = list(sampler.epoch())
    assert len(batches) == len(labels) // 20
    for batch in batches:
        ids, counts = np.unique(labels[batch], return_counts=True)
        assert len(ids) == 5 and set(counts) == {4}
    again = PKSampler(labels, p=5, k=4, seed=0)
    assert all((a == b).all() for a, b in zip(batches, again.epoch(), strict=True))


def test_pk_sampler_refuses_too_few_identities():
    with pytest.raises(ValueError, match="only 2"):
        PKSampler(np.array([0, 0, 1, 1]), p=4, k=2)


def numpy_batch_hard(f, y, margin):
    n = len(f)
    d = np.sqrt(np.maximum(((f[:, None, :] - f[None, :, :]) ** 2).sum(-1), 0))
    losses = []
    for a in range(n):
        pos = [d[a, j] for j in range(n) if y[j] == y[a] and j != a]
        neg = [d[a, j] for j in range(n) if y[j] != y[a]]
        gap = max(pos) - min(neg)
        losses.append(np.log1p(np.exp(gap)) if margin is None else max(0.0, gap + margin))
    return float(np.mean(losses))


@pytest.mark.parametrize("margin", [0.3, None])
def test_batch_hard_triplet_matches_numpy(margin):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(12, 5)).astype(np.float32)
    y = np.repeat(np.arange(4), 3)
    got = float(L.batch_hard_triplet_loss(tf.constant(f), tf.constant(y), margin))
    assert got == pytest.approx(numpy_batch_hard(f.astype(np.float64), y, margin), rel=1e-4)


def test_contrastive_matches_numpy():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(6, 3)).astype(np.float32)
    y = np.array([0, 0, 1, 1, 2, 2])
    d = np.sqrt(((f[:, None] - f[None]) ** 2).sum(-1))
    same = (y[:, None] == y[None]) & ~np.eye(6, dtype=bool)
    diff = y[:, None] != y[None]
    expect = (d[same] ** 2).mean() + (np.maximum(0, 1.0 - d[diff]) ** 2).mean()
    assert float(L.contrastive_loss(tf.constant(f), tf.constant(y), 1.0)) == pytest.approx(expect, rel=1e-4)


def test_id_loss_label_smoothing():
    logits = tf.constant([[2.0, 0.0, 0.0]])
    p = np.exp([2.0, 0, 0]) / np.exp([2.0, 0, 0]).sum()
    target = np.array([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3])
    assert float(L.id_loss(logits, tf.constant([0]), 0.1)) == pytest.approx(
        -(target * np.log(p)).sum(), rel=1e-5
    )


def test_cosface_matches_numpy_and_its_margin_asks_for_a_wider_gap():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(5, 4)).astype(np.float32)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1])
    cos = (f / np.linalg.norm(f, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=0, keepdims=True))
    logits = 16.0 * (cos - 0.3 * np.eye(3)[y])
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    target = np.eye(3)[y] * 0.9 + 0.1 / 3
    expect = -(target * logp).sum(1).mean()
    got = L.cosface_loss(tf.constant(f), tf.constant(w), tf.constant(y), 16.0, 0.3, 0.1)
    assert float(got) == pytest.approx(expect, rel=1e-4)
    # a feature nearer its own class than the other by a small angle: fine for softmax, not for cosface
    near = tf.constant([[np.cos(0.6), np.sin(0.6)]], tf.float32)
    plain = float(L.cosface_loss(near, tf.eye(2), tf.constant([0]), 30.0, 0.0, 0.0))
    margin = float(L.cosface_loss(near, tf.eye(2), tf.constant([0]), 30.0, 0.35, 0.0))
    assert plain < 0.05 < margin


def test_pair_loss_prefers_separated_identities():
    head = tf.keras.layers.Dense(
        1,
        kernel_initializer=tf.keras.initializers.Constant(-4.0),
        bias_initializer=tf.keras.initializers.Constant(2.0),
    )
    y = tf.constant([0, 0, 1, 1])
    close_pairs = tf.constant([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])
    mixed = tf.constant([[1.0, 0], [0, 1.0], [1.0, 0], [0, 1.0]])
    assert float(L.pair_loss(close_pairs, y, head)) < float(L.pair_loss(mixed, y, head))


def test_distillation_is_zero_for_the_teacher_itself_and_scale_free():
    t = tf.random.normal((8, 16))
    assert float(L.distillation_loss(3.0 * t, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(L.distillation_loss(tf.random.normal((8, 4)), t)) > 0.01


def test_augmentation_keeps_shape_range_and_changes_images():
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (8, 32, 16, 3)), tf.float32)
    out = Augmenter(AugmentConfig(randaugment=True), seed=0)(x)
    assert out.shape == x.shape
    assert float(tf.reduce_min(out)) >= 0 and float(tf.reduce_max(out)) <= 255
    assert float(tf.reduce_mean(tf.abs(out - x))) > 1.0
    off = Augmenter(AugmentConfig(flip=False, pad=0, colour=0, erase=0), seed=0)(x)
    np.testing.assert_allclose(off.numpy(), x.numpy())


def test_flip_alone_mirrors_or_keeps_each_image():
    x = tf.constant(np.random.default_rng(1).uniform(0, 255, (16, 8, 4, 3)), tf.float32)
    out = Augmenter(AugmentConfig(pad=0, colour=0, erase=0), seed=3)(x).numpy()
    flipped = [np.allclose(o, xi[:, ::-1]) for o, xi in zip(out, x.numpy(), strict=True)]
    kept = [np.allclose(o, xi) for o, xi in zip(out, x.numpy(), strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)


def test_downscale_blurs_some_images_and_keeps_the_others_exactly():
    """A low-resolution copy loses fine texture (a one-pixel checkerboard flattens to grey)."""
    board = (np.indices((32, 16)).sum(axis=0) % 2 * 255.0)[..., None].repeat(3, axis=2)
    x = tf.constant(np.stack([board] * 16), tf.float32)
    plain = AugmentConfig(flip=False, pad=0, colour=0, erase=0)
    out = Augmenter(replace(plain, downscale=0.5), seed=0)(x).numpy()
    contrast = out.std(axis=(1, 2, 3))
    kept = np.isclose(contrast, board.std())
    assert kept.any() and (~kept).any()
    assert (contrast[~kept] < 0.5 * board.std()).all()
    np.testing.assert_allclose(out[kept], x.numpy()[kept])


def test_schedule_and_loss_parsing():
    assert cosine_schedule(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert cosine_schedule(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert cosine_schedule(100, 100, 10, 1.0) == pytest.approx(0.01)
    assert parse_losses("triplet=2, id") == {"triplet": 2.0, "id": 1.0}


def test_teacher_regression_is_one_minus_cosine():
    p = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
    t = np.array([[1.0, 1.0], [0.0, 1.0]], np.float32)
    expect = 1 - np.mean([1 / np.sqrt(2), 1.0])
    assert float(L.teacher_regression_loss(tf.constant(p), tf.constant(t))) == pytest.approx(expect, rel=1e-5)


def test_seed_tower_is_the_original_architecture_at_its_native_size():
    from reid_search.embedding.tower import TowerConfig, build_tower, default_input_size

    h, w = default_input_size("seed")
    tower = build_tower(TowerConfig("seed", h, w, 64))
    assert tower.input_shape == (None, 256, 128, 3) and tower.output_shape == (None, 64)
    convs = [layer for layer in tower.layers if layer.name.startswith("seed_conv")]
    assert [c.filters for c in convs] == [256, 128, 64, 32]
    assert all(c.kernel_size == (3, 3) for c in convs)
    dense = tower.get_layer("seed_fc")
    assert dense.units == 4096 and dense.activation.__name__ == "sigmoid"
    assert default_input_size("mobilenetv2") == (128, 64)


def test_far_threshold_accepts_at_most_the_target_share_of_different_pairs():
    from reid_search.calibration.fit import far_threshold, rates_at

    rng = np.random.default_rng(0)
    same, diff = rng.normal(0.7, 0.1, 500), rng.normal(0.2, 0.15, 5000)
    choice = far_threshold(same, diff, 0.01)
    assert choice.false_accept <= 0.01 and (diff >= choice.threshold).sum() == 50
    assert rates_at(choice.threshold - 1e-3, same, diff)[1] > 0.01  # any lower threshold accepts more


def test_calibrate_command_writes_the_threshold_and_rates(tmp_path):
    import json
    import shutil

    from typer.testing import CliRunner

    from reid_search.cli import app
    from reid_search.data.synthetic import generate_dataset
    from reid_search.embedding.model_store import DEFAULT_MODEL, read_card

    data = generate_dataset(
        tmp_path / "d", n_people=20, n_cameras=2, frames_per_tracklet=2, seed=4, split="bbox_train"
    )
    model = tmp_path / "m.keras"
    shutil.copyfile(DEFAULT_MODEL, model)
    shutil.copyfile(DEFAULT_MODEL.with_name("default.card.json"), tmp_path / "m.card.json")
    card = json.loads((tmp_path / "m.card.json").read_text())
    card["fast_runtime"] = None
    (tmp_path / "m.card.json").write_text(json.dumps(card))
    args = ["calibrate", str(model), str(data), "--far", "0.05", "--val-fraction", "0.5", "--write",
            "--open-set-far", "0.1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    written = read_card(model)
    assert "false-accept rate 0.05" in written.threshold_rule
    rates = written.metrics["threshold_rates"]["d"]
    assert rates["false_accept"] <= 0.05 and rates["lookalike_pairs"] > 0
    assert f"threshold {written.threshold:.4f}" in result.output and "look-alike FAR" in result.output
    # the open-set rule, fitted on galleries of 30%, 60% and 90% of the held-out people
    open_set = written.metrics["open_set_rates"]["d"]
    assert set(open_set["FAR_by_gallery_share"]) == {"0.3", "0.6", "0.9"}
    assert 0 < written.open_set["accept"] < 1 and "gallery sizes" in written.open_set["description"]
    tracklets = written.open_set["tracklets"]  # the rule for galleries whose background counts visits
    assert 0 < tracklets["accept"] < 1 and "each visit" in tracklets["description"]
    assert "galleries of tracklets" in result.output
    assert "FAR by share of the people in the gallery" in result.output


def crop(upper: tuple[int, int, int], lower: tuple[int, int, int], brightness: float = 1.0) -> np.ndarray:
    pixels = np.zeros((64, 32, 3), np.float32)
    pixels[:32] = upper
    pixels[32:] = lower
    return np.clip(pixels * brightness, 0, 255)


def test_lookalike_is_another_person_on_another_camera_dressed_most_alike():
    from reid_search.calibration.lookalikes import clothing_descriptor, lookalike_pairs

    red, blue, green, yellow = (200, 30, 30), (30, 30, 200), (30, 200, 30), (220, 220, 40)
    images = np.stack(
        [
            crop(red, blue),  # 0: a, camera 1
            crop(red, blue, 0.8),  # 1: a again (same person: never a look-alike), camera 2
            crop(red, blue, 0.7),  # 2: b, camera 1 (same camera as 0: not a candidate for it)
            crop(red, blue, 0.6),  # 3: c, camera 2, dressed like a
            crop(green, yellow),  # 4: d, camera 2
        ]
    )
    persons, cameras = np.array(["a", "a", "b", "c", "d"]), np.array([1, 2, 1, 2, 2])
    pairs = dict(lookalike_pairs(clothing_descriptor(images), persons, cameras).tolist())
    assert pairs[0] == 3 and pairs[2] in (1, 3) and pairs[4] in (0, 2)


def test_mixstyle_moves_each_image_statistics_toward_a_partner_and_p0_is_identity():
    import tensorflow as tf

    from reid_search.training.mixstyle import mix_styles

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (4, 6, 3, 2)), rng.normal(10, 5, (4, 6, 3, 2))]).astype(np.float32)
    assert np.array_equal(mix_styles(tf.constant(x), tf.constant([0, 1], tf.int64), p=0.0).numpy(), x)
    mixed = mix_styles(tf.constant(x), tf.constant([0, 1], tf.int64), p=1.0, alpha=1.0).numpy()
    means_before, means_after = x.mean(axis=(1, 2)), mixed.mean(axis=(1, 2))
    assert not np.allclose(means_before, means_after)
    lo, hi = means_before.min(axis=0), means_before.max(axis=0)  # mixes stay between the batch's styles
    assert np.all(means_after >= lo - 1e-3) and np.all(means_after <= hi + 1e-3)
    normalised = lambda a: (a - a.mean(axis=(1, 2), keepdims=True)) / a.std(axis=(1, 2), keepdims=True)  # noqa: E731
    assert np.allclose(normalised(mixed), normalised(x), atol=1e-3)  # the content is kept


def test_mixstyle_needs_cached_views():
    from reid_search.training import TrainConfig
    from reid_search.training.config import TrainingError

    with pytest.raises(TrainingError, match="--cached-views"):
        TrainConfig(data=["x"], out="y", mixstyle=0.5).validate()


def test_open_set_rule_keeps_its_false_alarms_across_gallery_sizes():
    """A bigger gallery holds closer look-alikes: absent people's best cosine rises with it
    while their margin over the gallery's background does not. Fitted on galleries of three
    sizes, the rule must keep each one's false alarms near the target, not only their pool's
    (a likelihood fit on the pool let the smallest gallery through at 24%)."""
    from reid_search.calibration.open_set import OpenSetSamples, fit_rule

    rng = np.random.default_rng(1)

    def gallery(look_alike_rise: float, n: int = 300) -> OpenSetSamples:
        present = np.arange(2 * n) < n  # every present person's best answer is right
        margin = np.where(present, rng.normal(0.25, 0.06, 2 * n), rng.normal(0.12, 0.06, 2 * n))
        background = 0.35 + np.where(present, 0.0, look_alike_rise) + rng.normal(0, 0.03, 2 * n)
        return OpenSetSamples(background + margin, margin, np.ones(2 * n, bool), present)

    galleries = [gallery(rise) for rise in (0.0, 0.08, 0.16)]
    rule = fit_rule(galleries, false_alarm=0.10)
    rates = [g.rates(rule.confidences(g) >= rule.accept) for g in galleries]
    pooled = OpenSetSamples.concat(galleries)
    assert pooled.rates(rule.confidences(pooled) >= rule.accept)[1] <= 0.10
    assert max(far for _, far in rates) <= 0.15
    assert min(dir_ for dir_, _ in rates) >= 0.7  # and still finds most present people


def test_open_set_simulation_counting_visits_does_not_care_how_many_crops_a_visit_has():
    """A tracklet rule is calibrated on backgrounds that count each visit once: eight frames of
    a visit must leave the margins where one crop of it puts them (counting crops does not)."""
    from reid_search.calibration.open_set import simulate

    rng = np.random.default_rng(2)
    people, dim = 120, 24
    centres = rng.normal(size=(people, dim))

    visits = centres.repeat(2, axis=0) + 0.5 * rng.normal(
        size=(2 * people, dim)
    )  # each person on cameras 1, 2

    def gallery(frames: int):
        persons = np.repeat(np.arange(people), 2 * frames)
        cameras = np.tile(np.repeat([1, 2], frames), people)
        looks = visits.repeat(frames, axis=0) + 0.05 * rng.normal(
            size=(len(persons), dim)
        )  # frames of a visit
        return looks / np.linalg.norm(looks, axis=1, keepdims=True), persons, cameras

    margins = {}
    for frames in (1, 8):
        for counted in ("entries", "tracklets"):
            samples = simulate(*gallery(frames), repeats=3, query_camera=1, sightings=counted)
            margins[frames, counted] = samples.margin.mean()
    assert abs(margins[8, "tracklets"] - margins[1, "tracklets"]) < 0.03
    assert margins[1, "entries"] - margins[8, "entries"] > 0.05
    with pytest.raises(ValueError, match="sightings must be"):
        simulate(*gallery(1), sightings="frames")


def test_calibrate_refuses_a_split_other_than_the_one_the_model_trained_with(tmp_path):
    """A model trained with --seed 1 holds out other people than seed 0 would: calibrating it
    on seed 0's 'held-out' people counted people it learned (a 7% false-reject rate where the
    honest one is 34%). calibrate reads the split from the card and refuses another."""
    import json
    import shutil

    from typer.testing import CliRunner

    from reid_search.cli import app
    from reid_search.data.synthetic import generate_dataset
    from reid_search.embedding.model_store import DEFAULT_MODEL

    data = generate_dataset(  # a dataset of the name the default trained on (its card: seed 0)
        tmp_path / "cuhk03-mars", n_people=40, n_cameras=2, frames_per_tracklet=2, seed=4, split="bbox_train"
    )
    model = tmp_path / "m.keras"
    shutil.copyfile(DEFAULT_MODEL, model)
    card = json.loads(DEFAULT_MODEL.with_name("default.card.json").read_text())
    (tmp_path / "m.card.json").write_text(json.dumps({**card, "fast_runtime": None}))
    before = (tmp_path / "m.card.json").read_text()
    refused = CliRunner().invoke(app, ["calibrate", str(model), str(data), "--seed", "1", "--write"])
    assert refused.exit_code != 0 and "cuhk03-mars: the model trained on it" in refused.output
    assert "--seed 0" in refused.output and (tmp_path / "m.card.json").read_text() == before
    split = json.loads(before)["training"]["config"]
    assert (split["val_fraction"], split["seed"]) == (0.1, 0)
    assert CliRunner().invoke(app, ["calibrate", str(model), str(data), "--far", "0.1"]).exit_code == 0
