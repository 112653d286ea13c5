"""The other attribute route, measured for ``benchmarks/attributes.py --tower``: a head on the tower.

A copy of the default model's backbone (its re-ID weights, so the shipped embedding is left
as it is) is fine-tuned with a global-average-pooled sigmoid head on the same training people
as the shipped head (class-balanced cross-entropy, horizontal flips, Adam 1e-4), then scored on
the same held-out people with the same metrics. Its cost: a second backbone pass per image,
timed here against the embedding model's own pass on the same batch.
"""

from __future__ import annotations

import time

import numpy as np
from _common import DEFAULT_MODEL

from reid_search.attributes.metrics import instance_f1, label_accuracy
from reid_search.data.images import load_image

EPOCHS = 8
BATCH = 32


def tower_route(labels, test: np.ndarray, epochs: int = EPOCHS) -> dict:
    import keras
    from keras import ops

    import reid_search.embedding.layers  # noqa: F401  (registers the tower's layers)

    reid = keras.saving.load_model(DEFAULT_MODEL, compile=False)
    height, width = reid.input_shape[1:3]
    pixels = np.stack([load_image(p, (height, width)).pixels for p in labels.paths]).astype(np.uint8)
    train = ~test
    prior = np.clip(labels.matrix[train].mean(0), 1e-3, 1 - 1e-3).astype(np.float32)

    def balanced_bce(y, p):
        weight = y * (0.5 / prior) + (1 - y) * (0.5 / (1 - prior))
        p = ops.clip(p, 1e-6, 1 - 1e-6)
        return -ops.mean(weight * (y * ops.log(p) + (1 - y) * ops.log(1 - p)))

    keras.utils.set_random_seed(0)
    backbone = next(layer for layer in reid.layers if isinstance(layer, keras.Model))
    copy = keras.models.clone_model(backbone)
    copy.set_weights(backbone.get_weights())
    inputs = keras.Input((height, width, 3))
    x = reid.get_layer("imagenet_norm")(reid.get_layer("to_unit")(inputs))
    x = keras.layers.Dropout(0.3)(keras.layers.GlobalAveragePooling2D()(copy(x)))
    model = keras.Model(inputs, keras.layers.Dense(len(labels.names), activation="sigmoid")(x))
    model.compile(keras.optimizers.Adam(1e-4), balanced_bce)
    rng = np.random.default_rng(0)
    rows = np.flatnonzero(train)
    started = time.perf_counter()
    for epoch in range(epochs):
        rng.shuffle(rows)
        for start in range(0, len(rows) - BATCH + 1, BATCH):
            batch = rows[start : start + BATCH]
            images = pixels[batch].astype(np.float32)
            flip = rng.random(len(batch)) < 0.5
            images[flip] = images[flip, :, ::-1]
            model.train_on_batch(images, labels.matrix[batch])
        print(f"tower route: epoch {epoch + 1}/{epochs}", flush=True)
    train_seconds = time.perf_counter() - started
    said = model.predict(pixels[test].astype(np.float32), batch_size=128, verbose=0) > 0.5
    truth = labels.matrix[test]
    accuracy = label_accuracy(truth, said)
    batch = pixels[np.flatnonzero(test)[:256]].astype(np.float32)
    timed: dict[int, list[float]] = {0: [], 1: []}
    for repeat in range(4):  # the first round warms both up (graph tracing) and is not kept
        for which, net in enumerate((reid, model)):
            began = time.perf_counter()
            net.predict(batch, batch_size=64, verbose=0)
            if repeat:
                timed[which].append(time.perf_counter() - began)
    return {
        "route": "tower (fine-tuned copy of the default backbone + head)",
        "model": "default",
        "mA": round(float(np.nanmean(accuracy)), 4),
        "instance": {k: round(v, 4) for k, v in instance_f1(truth, said).items()},
        "per_attribute": {n: round(float(a), 4) for n, a in zip(labels.names, accuracy, strict=True)},
        "epochs": epochs,
        "train_minutes": round(train_seconds / 60, 1),
        # its own pass per image over the embedding model's (same batch, Keras both, medians)
        "extra_cost_per_image": round(float(np.median(timed[1]) / np.median(timed[0])), 2),
    }
