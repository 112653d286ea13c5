"""The training loop: P x K batches, weighted losses, warm-up + cosine learning rate, checkpoints.

A run folder holds ``config.json`` (every hyper-parameter, the command), ``checkpoints/``
(one per epoch and one on Ctrl-C, TensorFlow's format, numbered by step: ``--resume``
continues at that very step, sampler state included), ``history.jsonl``, ``tensorboard/``
(losses, learning rate, validation rank-1/mAP per dataset each epoch) and, at the end or on
Ctrl-C, the exported tower ``model.keras`` with its card (:mod:`.card`). Long epochs print
one progress line (loss, images/s, ETA) every ``progress_seconds``.

Usage::

    from reid_search.training import TrainConfig
    from reid_search.training.loop import train
    config = TrainConfig(data=["../shared/data/cuhk03-mars"], out="runs/t", epochs=2)
    result = train(config)
    result.model_path, result.metrics["rank1"]
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import write_json_atomic
from .build import build_heads, cosine_schedule, freeze_backbone_blocks, split_at_block
from .card import build_card, calibrate_threshold, validate_sets
from .config import TrainConfig, TrainingError
from .data import TrainingData, load_teacher_targets, load_training_data
from .options import train_command


@dataclass
class TrainResult:
    out: Path
    model_path: Path
    epochs_done: int
    metrics: dict[str, Any]
    seconds: float
    interrupted: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Holds the model, heads, optimizer and checkpoint of one run (of a ``config`` that passed
    :meth:`TrainConfig.validate`, as :func:`train` sees to before anything is written)."""

    progress_seconds = 60.0  # one progress line per this many seconds within an epoch
    setup_seconds = 0.0  # set by train(): reading the images and caching views before epoch 1

    def __init__(self, config: TrainConfig, data: TrainingData, log=print, teacher: np.ndarray | None = None):
        import keras
        import tensorflow as tf

        from ..embedding.tower import build_tower
        from .augment import Augmenter
        from .sampler import PKSampler

        self.config, self.data, self.log = config, data, log
        self.out = Path(config.out)
        keras.utils.set_random_seed(config.seed)
        self.tower = build_tower(config.tower)
        self.frozen = freeze_backbone_blocks(self.tower, config.freeze_blocks)
        if teacher is None and config.teacher_targets:
            teacher = load_teacher_targets(config.teacher_targets, data)
        self.teacher = teacher
        self.augmenter = Augmenter(config.augment, config.seed)
        self.cache = None
        if config.cached_views:
            frozen_part, self.view = split_at_block(self.tower, config.freeze_blocks)
            self.cache = self._build_cache(frozen_part)
        else:
            self.view = keras.Model(
                self.tower.input, [self.tower.get_layer("bnneck").output, self.tower.output]
            )
        teacher_dim = self.teacher.shape[1] if self.teacher is not None else 1
        self.attributes, prior = self._attribute_targets()
        self.heads = build_heads(config.tower.embedding_dim, data.n_classes, teacher_dim, len(prior))
        self.heads.attribute_prior = tf.constant(prior)
        self.optimizer = keras.optimizers.AdamW(config.lr, weight_decay=config.weight_decay)
        self.sampler = PKSampler(
            data.train_labels, config.p, config.k, config.seed, extra=config.unlabelled_per_batch
        )
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.variables = list(self.view.trainable_variables) + self.heads.for_losses(config.losses)
        self.optimizer.build(self.variables)
        self.checkpoint = tf.train.Checkpoint(
            tower=self.tower,
            classifier=self.heads.classifier,
            pair_head=self.heads.pair_head,
            teacher_head=self.heads.teacher_head,
            **({"attribute_head": self.heads.attribute_head} if "attr" in config.losses else {}),
            optimizer=self.optimizer,
            augmenter=self.augmenter.rng,
            epoch=self.epoch,
            step=self.step,
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.out / "checkpoints", max_to_keep=2)
        self.steps_per_epoch = config.steps_per_epoch or self.sampler.batches_per_epoch()
        self._sampler_state = self.sampler.get_state()  # the sampler's state at ``self.step``
        self.step_log: list[tuple[int, float, int]] = []  # (step, learning rate, batch CRC) run here
        self._train_step = self._make_train_step()

    def _attribute_targets(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-image attribute targets (-1: none) and positive rates for the attr loss."""
        c = self.config
        if not c.attribute_labels:
            return np.full((len(self.data.train_labels), 1), -1.0, np.float32), np.full(1, 0.5, np.float32)
        from .attribute_targets import load_attribute_targets

        targets, prior = load_attribute_targets(c.attribute_labels, self.data)  # train-attributes' split
        self.log(f"attribute targets: {int((targets[:, 0] >= 0).sum())} training images")
        return targets, prior

    def _build_cache(self, frozen_part) -> np.ndarray:
        """Frozen-part outputs of ``cached_views`` augmented views of every training image (float16).

        Kept in ``RUN/cache/`` so that ``--resume`` (another session) does not compute it again.
        """
        folder = self.out / "cache"
        key = {
            "images": len(self.data.train_pixels),
            "paths_sha1": hashlib.sha1("\n".join(self.data.train_paths).encode()).hexdigest(),
            **cached_views_recipe(self.config),
        }
        if (folder / "views.json").is_file() and json.loads((folder / "views.json").read_text()) == key:
            self.log(f"cached views read from {folder}")
            return np.load(folder / "views.npy", mmap_mode="r")
        cache = self._compute_cache(frozen_part)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".views.tmp.npy"
        np.save(tmp, cache)
        tmp.replace(folder / "views.npy")
        write_json_atomic(folder / "views.json", key)
        return cache

    def _compute_cache(self, frozen_part) -> np.ndarray:
        import tensorflow as tf

        started = time.perf_counter()
        infer = tf.function(lambda x: frozen_part(self.augmenter(x), training=False), autograph=False)
        n, views = len(self.data.train_pixels), self.config.cached_views
        cache = None
        last_report = started
        for v in range(views):
            for i in range(0, n, 128):
                out = infer(tf.cast(self.data.train_pixels[i : i + 128], tf.float32)).numpy()
                if cache is None:
                    cache = np.zeros((views, n, *out.shape[1:]), np.float16)
                cache[v, i : i + len(out)] = out
                now = time.perf_counter()
                if now - last_report >= self.progress_seconds:
                    last_report = now
                    self.log(_cache_progress_line(v * n + i + len(out), views * n, now - started))
        self.log(
            f"cached {views} augmented views of {n} images after block {self.config.freeze_blocks} "
            f"{cache.shape[2:]} in {time.perf_counter() - started:.0f} s"
        )
        return cache

    def _inputs(self, batch: np.ndarray, step: int) -> np.ndarray:
        """Pixels of the batch, or in cached mode one random cached view per image."""
        if self.cache is None:
            return self.data.train_pixels[batch]
        views = np.random.default_rng([self.config.seed, step]).integers(0, len(self.cache), len(batch))
        return self.cache[views, batch]

    # ------------------------------------------------------------------ step
    def _make_train_step(self):
        import tensorflow as tf

        from .loss_kinds import LOSSES, Batch
        from .mixstyle import mix_styles

        c = self.config
        weights = c.losses

        cached = self.cache is not None
        n = self.sampler.labelled_size  # rows with identities; the rest learn from the teacher only

        @tf.function(reduce_retracing=True, autograph=False)  # static Python branches only
        def train_step(inputs, labels, teacher, attributes, lr, step):
            self.optimizer.learning_rate.assign(lr)
            x = tf.cast(inputs, tf.float32) if cached else self.augmenter(tf.cast(inputs, tf.float32))
            if c.mixstyle:
                x = mix_styles(x, tf.stack([tf.constant(c.seed, tf.int64), step]), c.mixstyle)
            with tf.GradientTape() as tape:
                bn_features, embedding = self.view(x, training=True)
                batch = Batch(embedding, bn_features, labels, teacher, n, self.heads, c, attributes)
                terms = {name: LOSSES.get(name).term(batch) for name in weights}
                total = tf.add_n([weights[k] * v for k, v in terms.items()])
            grads = tape.gradient(total, self.variables)
            self.optimizer.apply_gradients(zip(grads, self.variables, strict=True))
            return total, terms

        return train_step

    # ------------------------------------------------------------------ loop
    def restore(self) -> bool:
        """Resume from the latest checkpoint (and the sampler's saved state); False if none."""
        latest = self.manager.latest_checkpoint
        if not latest:
            return False
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        state_file = self.out / "checkpoints" / "sampler_state.json"
        if state_file.is_file():
            self.sampler.set_state(json.loads(state_file.read_text()))
        self._sampler_state = self.sampler.get_state()
        step = int(self.step.numpy())
        self.log(f"resumed from {latest} (epoch {int(self.epoch.numpy())}, step {step}/{self.total_steps})")
        return True

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.steps_per_epoch

    def save_checkpoint(self) -> str:
        """Weights, optimizer, step and the sampler's state at exactly that step."""
        path = self.manager.save(checkpoint_number=int(self.step.numpy()))
        write_json_atomic(self.out / "checkpoints" / "sampler_state.json", self._sampler_state)
        return path

    def run(self) -> TrainResult:
        import tensorflow as tf

        writer = tf.summary.create_file_writer(str(self.out / "tensorboard"))
        history: list[dict[str, Any]] = []
        started = time.perf_counter()
        interrupted = False
        try:
            while int(self.step.numpy()) < self.total_steps:
                record = self._run_epoch(writer)
                self.epoch.assign(int(self.step.numpy()) // self.steps_per_epoch)
                record = {"epoch": int(self.epoch.numpy()), **record, **_flat_metrics(self.validate())}
                self._log_epoch(writer, record)
                history.append(record)
                self.save_checkpoint()
        except KeyboardInterrupt:
            interrupted = True
            self.save_checkpoint()
            self.log(
                f"interrupted at step {int(self.step.numpy())}/{self.total_steps}: checkpoint saved in "
                f"{self.out / 'checkpoints'}; --resume continues from that step"
            )
        seconds = time.perf_counter() - started
        model_path, metrics = self.export(seconds, interrupted)
        return TrainResult(
            self.out, model_path, int(self.epoch.numpy()), metrics, seconds, interrupted, history
        )

    def _run_epoch(self, writer) -> dict[str, float]:
        """The rest of the current epoch, from the current step (mid-epoch after a resume) to the
        epoch's last step: exactly ``steps_per_epoch`` steps in all. Returns mean losses, last
        learning rate and seconds."""
        c = self.config
        spe = self.steps_per_epoch
        warmup = int(c.warmup_epochs * spe)
        first = int(self.step.numpy())
        todo = (first // spe + 1) * spe - first
        started = last_report = time.perf_counter()
        sums: dict[str, float] = {}
        lr, n_steps = c.lr, 0
        for batch in self.sampler.epoch(todo):
            step = int(self.step.numpy())
            lr = cosine_schedule(step, self.total_steps, warmup, c.lr)
            teacher = self.teacher[batch] if self.teacher is not None else np.zeros((len(batch), 1), "f4")
            total, terms = self._train_step(
                self._inputs(batch, step),
                self.data.train_labels[batch],
                teacher,
                self.attributes[batch],
                np.float32(lr),
                np.int64(step),
            )
            self.step.assign_add(1)
            self._sampler_state = self.sampler.get_state()  # where the next batch starts
            self.step_log.append((step, lr, zlib.crc32(np.asarray(batch, np.int64).tobytes())))
            n_steps += 1
            for k, v in {"loss": total, **terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if step % 10 == 0:
                with writer.as_default(step=step):
                    for k, v in terms.items():
                        log_scalar(f"loss/{k}", v)
                    log_scalar("loss/total", total)
                    log_scalar("learning_rate", lr)
            now = time.perf_counter()
            if now - last_report >= self.progress_seconds and n_steps < todo:
                last_report = now
                self.log(self._progress_line(n_steps, sums["loss"] / n_steps, now - started, len(batch)))
        return {
            **{k: v / max(1, n_steps) for k, v in sums.items()},
            "lr": lr,
            "seconds": time.perf_counter() - started,
        }

    def _progress_line(self, n_steps: int, mean_loss: float, elapsed: float, batch_size: int) -> str:
        rate = n_steps * batch_size / elapsed
        eta = (self.steps_per_epoch - n_steps) * elapsed / n_steps
        return (
            f"  epoch {int(self.epoch.numpy()) + 1}/{self.config.epochs} "
            f"step {n_steps}/{self.steps_per_epoch} loss {mean_loss:.4f} "
            f"{rate:.0f} img/s, epoch ETA {eta:.0f} s"
        )

    def _log_epoch(self, writer, record: dict[str, Any]) -> None:
        with writer.as_default(step=record["epoch"]):
            for key, value in record.items():
                if key.startswith(("rank1", "mAP")):
                    log_scalar(f"val/{key}", value)
        writer.flush()
        with open(self.out / "history.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        self.log(_format_epoch(record, self.config.epochs))

    # ------------------------------------------------------------------ validation + export
    def validate(self) -> dict[str, Any]:
        """Validation rank-1/mAP per dataset (held-out identities) and their mean."""
        return validate_sets(self.tower, self.data.validation)

    def export(self, seconds: float, interrupted: bool) -> tuple[Path, dict[str, Any]]:
        """Write the tower as ``model.keras`` with its card (validation metrics and threshold)."""
        from ..embedding.model_store import save_model

        metrics = self.validate()
        card = build_card(
            self.config,
            self.data,
            metrics=metrics,
            threshold=calibrate_threshold(self.tower, self.data.validation),
            epochs_done=int(self.epoch.numpy()),
            steps=int(self.step.numpy()),
            seconds=seconds,
            setup_seconds=self.setup_seconds,
            interrupted=interrupted,
            frozen_layers=self.frozen,
        )
        return save_model(self.tower, card, self.out / "model.keras"), metrics


def _flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """{"rank1", "mAP", "per_dataset": {name: {...}}} -> rank1, mAP, rank1/NAME, mAP/NAME keys."""
    flat = {k: v for k, v in metrics.items() if k in ("rank1", "mAP")}
    if len(metrics.get("per_dataset", {})) > 1:
        for name, m in metrics["per_dataset"].items():
            flat[f"rank1/{name}"], flat[f"mAP/{name}"] = m["rank1"], m["mAP"]
    return flat


def log_scalar(tag: str, value) -> None:
    """A TensorBoard scalar written with TensorFlow alone (the ``tensorboard`` package is
    only needed to view the logs: ``pip install tensorboard; tensorboard --logdir RUN``)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.cast(value, tf.float32), metadata=metadata)


def _format_epoch(record: dict[str, Any], epochs: int) -> str:
    terms = " ".join(
        f"{k} {v:.4f}"
        for k, v in record.items()
        if k not in ("epoch", "lr", "seconds") and not k.startswith(("rank1", "mAP"))
    )
    val = (
        f" | val rank-1 {100 * record['rank1']:.1f}% mAP {100 * record['mAP']:.1f}%"
        if "rank1" in record
        else ""
    )
    per = [k.split("/", 1)[1] for k in record if k.startswith("rank1/")]
    val += "".join(f" [{n} {100 * record[f'rank1/{n}']:.1f}/{100 * record[f'mAP/{n}']:.1f}]" for n in per)
    return f"epoch {record['epoch']}/{epochs} {terms} lr {record['lr']:.2e} ({record['seconds']:.0f} s){val}"


def train(config: TrainConfig, resume: bool = False, log=print, epochs: int | None = None) -> TrainResult:
    """Train (or resume) a run described by ``config``; returns where the model went and its metrics.

    On ``resume`` the run's own ``config.json`` holds every setting; ``epochs`` may lengthen
    or shorten it (the schedule is recomputed; recorded in ``config.json``). Everything that
    can be refused (data, teacher files) is checked before the run folder is written, so a
    bad input leaves nothing behind.
    """
    started = time.perf_counter()
    out = Path(config.out)
    config_file = out / "config.json"
    if resume:
        if not config_file.is_file():
            raise TrainingError(f"{out}: nothing to resume (no config.json)")
        config = TrainConfig.from_dict(json.loads(config_file.read_text()))
        if epochs is not None and epochs != config.epochs:
            config.epochs = epochs
            config.validate()
            write_json_atomic(config_file, config.to_dict())
    elif (out / "checkpoints").exists():
        raise TrainingError(f"{out}: a run is already there; use --resume or another --out")
    else:
        config.validate()
    data = load_training_data(config)
    if data.n_classes < config.p:
        raise TrainingError(f"--p {config.p} identities per batch, but the data has only {data.n_classes}")
    teacher = load_teacher_targets(config.teacher_targets, data) if config.teacher_targets else None
    if not resume:
        config.command = config.command or train_command(config)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(config_file, config.to_dict())
    log(data.describe())
    trainer = Trainer(config, data, log, teacher)
    trainer.setup_seconds = time.perf_counter() - started  # reading images, caching views
    if resume:
        trainer.restore()
    return trainer.run()


def cached_views_recipe(config: TrainConfig) -> dict[str, Any]:
    """What, besides the images, decides a run's cached views (part of the cache's key).

    Two runs with equal recipes on the same images cache the same views; the pooling after
    the last block is not part of it (the frozen blocks come before it).
    """
    tower = {k: v for k, v in config.tower.to_dict().items() if k != "pooling"}
    return {
        "views": config.cached_views,
        "freeze_blocks": config.freeze_blocks,
        "tower": tower,
        "augment": config.augment.to_dict(),
    }


def _cache_progress_line(done: int, total: int, elapsed: float) -> str:
    """One line while the frozen blocks run over the views: how far, how fast, how long still.

    >>> _cache_progress_line(2500, 10000, 50.0)
    '  caching views: 2500/10000 images (25%), 50 img/s, ETA 150 s'
    """
    rate = done / elapsed
    eta = (total - done) / rate
    share = 100 * done / total
    return f"  caching views: {done}/{total} images ({share:.0f}%), {rate:.0f} img/s, ETA {eta:.0f} s"
