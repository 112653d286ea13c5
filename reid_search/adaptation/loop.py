"""Self-training on unlabelled crops: cluster, learn the clusters, cluster again.

Each round (the Cluster Contrast recipe, with the gallery's own structure as constraints):

1. embed every target crop with the current tower and cluster the vectors into
   pseudo-identities (:mod:`.clustering`: tracklets must-link, same-frame crops cannot-link,
   camera-centred neighbours; unclustered crops sit the round out);
2. a **cluster memory** holds one unit centroid per pseudo-identity (and, camera-aware, one
   proxy per pseudo-identity and camera); each step draws P pseudo-identities x K crops and
   pulls each crop to its centroid against all others (softmax over cosines / temperature),
   to its proxies in every camera (so a cluster cannot be one camera's look), and keeps the
   starting model's similarity structure on the batch (distillation); the memory follows
   the crops (momentum update with each cluster's hardest crop of the batch);
3. labelled ``source`` crops, when given, join the memory as fixed identities.

The first ``freeze_blocks`` blocks stay as they are, so their output for a few augmented
views of every crop is computed once (``cache/``) and a step runs only the rest: a 10,000-crop
set adapts in minutes on two cores. A checkpoint is written after every round and on Ctrl-C;
``resume`` continues at the round and step where it stopped, with that round's pseudo-labels.

Usage::

    from reid_search.adaptation import AdaptConfig, adapt
    result = adapt(AdaptConfig(target=["crops/"], out="lobby.keras", metadata="crops.csv"))
    result.model_path, result.rounds[-1]["clusters"]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import write_json_atomic
from .clustering import cluster
from .config import AdaptConfig
from .target import AdaptError, TargetCrops


@dataclass
class AdaptResult:
    model_path: Path
    rounds: list[dict[str, Any]]
    seconds: float
    interrupted: bool = False
    labels: np.ndarray | None = None  # the last round's pseudo-identities of the target crops
    vectors: np.ndarray | None = None  # the adapted model's vectors of the target crops
    target: TargetCrops | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def work_folder(config: AdaptConfig) -> Path:
    """The run folder: ``config.work`` or ``OUT.adapt/`` beside the output model."""
    out = Path(config.out)
    return Path(config.work) if config.work else out.with_name(out.name + ".adapt")


MIN_IDENTITIES = 4  # pseudo-identities a round needs to learn anything


class Adapter:
    """One adaptation run over decoded target crops (and optional labelled source crops)."""

    progress_seconds = 60.0  # one progress line per this many seconds within a round

    def __init__(self, config: AdaptConfig, target: TargetCrops, tower, card, log=print):
        import keras
        import tensorflow as tf

        from ..training.augment import AugmentConfig, Augmenter
        from ..training.build import freeze_backbone_blocks, split_at_block
        from ..training.config import BLOCK_TOWERS

        self.config, self.target, self.tower, self.card, self.log = config, target, tower, card, log
        self.work = work_folder(config)
        keras.utils.set_random_seed(config.seed)
        blocks = config.freeze_blocks if card.architecture in BLOCK_TOWERS else 0
        if blocks:
            freeze_backbone_blocks(tower, blocks)
            self.frozen_part, self.view = split_at_block(tower, blocks)
        else:  # a tower without blocks to freeze: the cache holds augmented pixels, the view is the tower
            self.frozen_part = keras.Model(tower.input, tower.input)
            self.view = keras.Model(tower.input, [tower.get_layer("bnneck").output, tower.output])
        self.blocks = blocks
        self.augmenter = Augmenter(AugmentConfig(**config.augment), config.seed)
        self.optimizer = keras.optimizers.AdamW(config.lr, weight_decay=config.weight_decay)
        self.optimizer.build(self.view.trainable_variables)
        self.round = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)  # within the round
        self.checkpoint = tf.train.Checkpoint(
            tower=tower,
            optimizer=self.optimizer,
            augmenter=self.augmenter.rng,
            round=self.round,
            step=self.step,
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.work / "checkpoints", max_to_keep=2)
        self.source_labels = np.zeros(0, np.int64)
        self.pixels = np.zeros(0)
        self.views = np.zeros(0)
        self.teacher = np.zeros(0)
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ set-up
    def prepare(self, pixels: np.ndarray, source_pixels: np.ndarray, source_labels: np.ndarray) -> None:
        """Cache the frozen blocks' output for the clean crop and ``cached_views`` augmented views
        (float16, target rows then source rows), and the starting model's target vectors."""
        import tensorflow as tf

        self.source_labels = source_labels
        all_pixels = np.concatenate([pixels, source_pixels]) if len(source_pixels) else pixels
        started = time.perf_counter()
        clean = tf.function(lambda x: self.frozen_part(x, training=False), autograph=False)
        noisy = tf.function(lambda x: self.frozen_part(self.augmenter(x), training=False), autograph=False)
        views = None
        n = len(all_pixels)
        for v in range(self.config.cached_views + 1):
            fn = clean if v == 0 else noisy
            for i in range(0, n, 128):
                out = fn(tf.cast(all_pixels[i : i + 128], tf.float32)).numpy()
                if views is None:
                    views = np.zeros((self.config.cached_views + 1, n, *out.shape[1:]), np.float16)
                views[v, i : i + len(out)] = out
        self.views = views
        self.log(
            f"cached the first {self.blocks} blocks' output for {n} crops x "
            f"{self.config.cached_views + 1} views in {time.perf_counter() - started:.0f} s"
        )
        self.teacher = self.embed_target()

    def embed_target(self) -> np.ndarray:
        """Unit vectors of the target crops (clean view) by the current tower."""
        import tensorflow as tf

        n = len(self.target)
        out = []
        if getattr(self, "_embed_fn", None) is None:  # one traced function for every round
            self._embed_fn = tf.function(
                lambda x: self.view(x, training=False)[1], autograph=False, reduce_retracing=True
            )
        for i in range(0, n, 256):
            out.append(self._embed_fn(tf.cast(self.views[0, i : min(n, i + 256)], tf.float32)).numpy())
        return np.concatenate(out).astype(np.float32)

    # ------------------------------------------------------------------ pseudo-identities
    def pseudo_labels(self, vectors: np.ndarray) -> np.ndarray:
        c, t = self.config, self.target
        return cluster(
            vectors,
            c.cluster,
            cameras=t.cameras if c.uses("cameras") else None,
            tracklets=t.tracklets if c.uses("tracklets") else None,
            frames=t.frames if c.uses("tracklets") else None,
        )

    def labels_for_round(self, r: int, vectors: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """This round's pseudo-labels of the target ``vectors`` (saved, so a resumed round trains on
        the same ones)."""
        saved = self.work / f"labels-round{r}.npy"
        if saved.is_file():
            return np.load(saved), {"reused": True}
        started = time.perf_counter()
        if r > 0 and not self.config.uses("recluster"):
            labels = np.load(self.work / "labels-round0.npy")
        else:
            labels = self.pseudo_labels(vectors)
        tmp = saved.with_suffix(".tmp.npy")
        np.save(tmp, labels)
        tmp.replace(saved)
        clustered = labels >= 0
        sizes = np.bincount(labels[clustered]) if clustered.any() else np.zeros(0, int)
        facts = {
            "clusters": int(len(sizes)),
            "clustered_share": round(float(clustered.mean()), 4),
            "median_cluster_size": float(np.median(sizes)) if len(sizes) else 0.0,
            "cross_camera_clusters": _cross_camera_clusters(labels, self.target.cameras),
            "cluster_seconds": round(time.perf_counter() - started, 1),
        }
        return labels, facts

    # ------------------------------------------------------------------ training
    def _make_step(self):
        import tensorflow as tf

        from ..training.losses import distillation_loss

        c = self.config
        view, optimizer = self.view, self.optimizer
        variables = view.trainable_variables
        use_cameras, use_distill = (
            c.uses("cameras") and c.camera_weight > 0,
            c.uses("distill") and c.distill_weight > 0,
        )

        @tf.function(reduce_retracing=True, autograph=False)
        def step(x, labels, memory, proxies, proxy_owner, teacher, teacher_rows, lr, ignored):
            optimizer.learning_rate.assign(lr)
            with tf.GradientTape() as tape:
                _, f = view(x, training=True)
                logits = tf.matmul(f, memory, transpose_b=True) / c.temperature - 1e4 * ignored
                terms = {
                    "memory": tf.reduce_mean(
                        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
                    )
                }
                if use_cameras:
                    ignored_proxies = tf.gather(ignored, proxy_owner, axis=1)
                    log_p = tf.nn.log_softmax(
                        tf.matmul(f, proxies, transpose_b=True) / c.temperature - 1e4 * ignored_proxies
                    )
                    positive = tf.cast(tf.equal(labels[:, None], proxy_owner[None, :]), f.dtype)
                    per_crop = tf.reduce_sum(positive * log_p, 1) / tf.maximum(
                        tf.reduce_sum(positive, 1), 1.0
                    )
                    terms["camera"] = -tf.reduce_mean(per_crop)
                if use_distill:
                    rows = tf.cast(teacher_rows, tf.bool)
                    terms["distill"] = distillation_loss(
                        tf.boolean_mask(f, rows), tf.boolean_mask(teacher, rows)
                    )
                weights = {"memory": 1.0, "camera": c.camera_weight, "distill": c.distill_weight}
                total = tf.add_n([weights[k] * v for k, v in terms.items()])
            grads = tape.gradient(total, variables)
            optimizer.apply_gradients(zip(grads, variables, strict=True))
            return total, terms, f

        return step

    def run(self, start_seconds: float = 0.0) -> tuple[bool, np.ndarray]:
        """All rounds from the checkpoint's round and step; returns (interrupted, last labels)."""
        c = self.config
        step_fn = self._make_step()
        labels = np.zeros(0, np.int64)
        interrupted = False
        started = time.perf_counter()
        try:
            while int(self.round.numpy()) < c.rounds:
                r = int(self.round.numpy())
                round_started = time.perf_counter()
                vectors = self.embed_target()  # once a round: clustering and the memory both start here
                labels, facts = self.labels_for_round(r, vectors)
                if "clusters" in facts:
                    self.log(_round_line(r, c.rounds, facts, len(self.target)))
                losses = self._train_round(r, labels, vectors, step_fn)
                record = {
                    "round": r + 1,
                    **facts,
                    **losses,
                    "seconds": round(time.perf_counter() - round_started, 1),
                }
                self.history.append(record)
                with open(self.work / "history.jsonl", "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                self.round.assign(r + 1)
                self.step.assign(0)
                self.manager.save()
        except KeyboardInterrupt:
            interrupted = True
            self.manager.save()
            self.log(
                f"interrupted in round {int(self.round.numpy()) + 1}/{c.rounds} "
                f"at step {int(self.step.numpy())}: "
                f"checkpoint saved in {self.work / 'checkpoints'}; --resume continues from there"
            )
        self.log(f"adaptation: {time.perf_counter() - started + start_seconds:.0f} s")
        return interrupted, labels

    def _train_round(
        self, r: int, labels: np.ndarray, target_vectors: np.ndarray, step_fn
    ) -> dict[str, float]:
        c = self.config
        n_target = len(self.target)
        all_labels = np.concatenate([labels, self.source_labels + (labels.max() + 1 if len(labels) else 0)])
        clustered = np.flatnonzero(all_labels >= 0)
        found = len(np.unique(all_labels[clustered]))
        if found < MIN_IDENTITIES:
            raise AdaptError(
                f"{self.target.source}: round {r + 1} found {found} pseudo-identities; at least "
                f"{MIN_IDENTITIES} are needed: the crops do not form groups of one person (too few crops "
                "per person, or the model sees everyone alike); give more crops, tracklets, or a larger --eps"
            )
        p = min(c.p, found)
        vectors = np.concatenate([target_vectors, self._embed_source()])
        memory, proxies, proxy_owner, proxy_of = _memories(vectors, all_labels, self._all_cameras())
        by_label = _rows_by_label(all_labels)
        names = np.array(sorted(by_label))
        partners = _likely_partners(vectors, all_labels, self._all_cameras(), memory, c.ignore_partners)
        sums: dict[str, float] = {}
        steps = c.steps_for(len(self.target))
        first = int(self.step.numpy())
        started = last_report = time.perf_counter()
        for s in range(first, steps):
            step_rng = np.random.default_rng([c.seed, r, s])
            picked = step_rng.choice(names, p, replace=False)
            batch = np.concatenate(
                [step_rng.choice(by_label[p], c.k, replace=len(by_label[p]) < c.k) for p in picked]
            )
            views = step_rng.integers(1, len(self.views), len(batch))
            x = self.views[views, batch].astype(np.float32)
            lr = c.lr * (0.1 + 0.9 * min(1.0, (r * steps + s + 1) / max(1, steps)))
            teacher_rows = (batch < n_target).astype(np.float32)
            teacher = self.teacher[np.minimum(batch, n_target - 1)]
            ignored = np.zeros((len(batch), len(memory)), np.float32)
            for row, crop in enumerate(batch.tolist()):
                ignored[row, partners.get(crop, [])] = 1.0
            total, terms, f = step_fn(
                x,
                all_labels[batch],
                memory,
                proxies,
                proxy_owner,
                teacher,
                teacher_rows,
                np.float32(lr),
                ignored,
            )
            _update(memory, f.numpy(), all_labels[batch], c.memory_momentum)
            _update(proxies, f.numpy(), proxy_of[batch], c.memory_momentum)
            self.step.assign(s + 1)
            for k, v in {"loss": total, **terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            now = time.perf_counter()
            if now - last_report >= self.progress_seconds and s + 1 < steps:
                last_report = now
                rate = (s + 1 - first) * len(batch) / (now - started)
                eta = (steps - s - 1) * (now - started) / (s + 1 - first)
                self.log(
                    f"  round {r + 1} step {s + 1}/{steps} "
                    f"loss {sums['loss'] / (s + 1 - first):.4f} "
                    f"{rate:.0f} crops/s, round ETA {eta:.0f} s"
                )
        done = max(1, steps - first)
        return {k: round(v / done, 4) for k, v in sums.items()}

    def _embed_source(self) -> np.ndarray:
        import tensorflow as tf

        n = len(self.target)
        if not len(self.source_labels):
            return np.zeros((0, self.teacher.shape[1]), np.float32)
        out = [
            self.view(tf.cast(self.views[0, i : i + 256], tf.float32), training=False)[1].numpy()
            for i in range(n, self.views.shape[1], 256)
        ]
        return np.concatenate(out).astype(np.float32)

    def _all_cameras(self) -> np.ndarray:
        return np.concatenate([self.target.cameras, np.full(len(self.source_labels), -2)])


def _rows_by_label(labels: np.ndarray) -> dict[int, np.ndarray]:
    out: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        if label >= 0:
            out.setdefault(label, []).append(i)
    return {k: np.array(v) for k, v in out.items()}


def _memories(vectors: np.ndarray, labels: np.ndarray, cameras: np.ndarray):
    """Unit centroids per label, proxies per (label, camera), each proxy's label, each row's proxy."""
    n_labels = int(labels.max()) + 1
    memory = np.zeros((n_labels, vectors.shape[1]), np.float32)
    kept = labels >= 0
    np.add.at(memory, labels[kept], vectors[kept])
    memory /= np.maximum(np.linalg.norm(memory, axis=1, keepdims=True), 1e-12)
    keys = list(zip(labels.tolist(), cameras.tolist(), strict=True))
    table: dict[tuple[int, int], int] = {}
    proxy_of = np.array([table.setdefault(k, len(table)) if k[0] >= 0 else -1 for k in keys], np.int64)
    proxies = np.zeros((len(table), vectors.shape[1]), np.float32)
    np.add.at(proxies, proxy_of[kept], vectors[kept])
    proxies /= np.maximum(np.linalg.norm(proxies, axis=1, keepdims=True), 1e-12)
    owner = np.array([k[0] for k in table], np.int64)
    return memory, proxies, owner, proxy_of


def _likely_partners(
    vectors: np.ndarray, labels: np.ndarray, cameras: np.ndarray, memory: np.ndarray, top: int
) -> dict[int, list[int]]:
    """For each crop of a one-camera pseudo-identity: the ``top`` one-camera pseudo-identities of
    other cameras its vector is nearest. They are likely the same person not yet associated, so
    the memory loss does not push the crop away from them (they are left out of its negatives).

    >>> v = np.eye(3, dtype=np.float32)
    >>> _likely_partners(v, np.array([0, 1, 2]), np.array([1, 2, 2]), v + 0.1, 1)
    {0: [1], 1: [0], 2: [0]}
    """
    if top <= 0:
        return {}
    kept = labels >= 0
    n_labels = int(labels.max()) + 1 if kept.any() else 0
    label_cameras = [set() for _ in range(n_labels)]
    for label, camera in zip(labels[kept].tolist(), cameras[kept].tolist(), strict=True):
        label_cameras[label].add(camera)
    lone_camera = np.array([next(iter(s)) if len(s) == 1 else -(10**9) for s in label_cameras])
    lone = lone_camera > -(10**9)
    out: dict[int, list[int]] = {}
    for crop in np.flatnonzero(kept & lone[np.maximum(labels, 0)]).tolist():
        own_camera = lone_camera[labels[crop]]
        candidates = np.flatnonzero(lone & (lone_camera != own_camera))
        if len(candidates):
            sims = memory[candidates] @ vectors[crop]
            out[crop] = candidates[np.argsort(-sims)[:top]].tolist()
    return out


def _update(memory: np.ndarray, features: np.ndarray, rows: np.ndarray, momentum: float) -> None:
    """Move each row's memory slot toward its hardest (least similar) feature of the batch.

    >>> m = np.array([[1.0, 0.0]], np.float32)
    >>> _update(m, np.array([[0.0, 1.0], [1.0, 0.0]], np.float32), np.array([0, 0]), 0.5)
    >>> m.astype(float).round(3).tolist()
    [[0.707, 0.707]]
    """
    for slot in np.unique(rows[rows >= 0]):
        mine = features[rows == slot]
        hardest = mine[np.argmin(mine @ memory[slot])]
        moved = momentum * memory[slot] + (1 - momentum) * hardest
        memory[slot] = moved / max(float(np.linalg.norm(moved)), 1e-12)


def _cross_camera_clusters(labels: np.ndarray, cameras: np.ndarray) -> float:
    """Share of clusters whose crops span two or more cameras."""
    clusters = np.unique(labels[labels >= 0])
    if not len(clusters):
        return 0.0
    spanning = sum(len(np.unique(cameras[labels == c])) > 1 for c in clusters)
    return round(spanning / len(clusters), 4)


def _round_line(r: int, rounds: int, facts: dict[str, Any], n: int) -> str:
    return (
        f"round {r + 1}/{rounds}: {facts['clusters']} pseudo-identities over {facts['clustered_share']:.0%} "
        f"of {n} crops ({facts['cross_camera_clusters']:.0%} span cameras), clustered in "
        f"{facts['cluster_seconds']:.0f} s"
    )


def write_config(config: AdaptConfig) -> None:
    work = work_folder(config)
    work.mkdir(parents=True, exist_ok=True)
    write_json_atomic(work / "config.json", config.to_dict())
