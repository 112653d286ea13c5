"""``adapt()``: from a gallery or folders of unlabelled crops to an adapted model with its card,
fast export and re-fitted decision rules.

Usage::

    from reid_search.adaptation import AdaptConfig, adapt
    result = adapt(AdaptConfig(target=["lobby"], out="lobby-adapted.keras"))
    # then: reid-search index --rebuild ... --model lobby-adapted.keras
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .._files import file_sha256
from .config import AdaptConfig, adapt_command
from .loop import Adapter, AdaptResult, work_folder, write_config
from .target import AdaptError, TargetCrops, from_folders, from_gallery


def read_target(config: AdaptConfig) -> tuple[TargetCrops, str | None]:
    """The crops to adapt to and the model their gallery was built with (None for folders).

    One name that is not a folder is read as a gallery (its rows' camera, tracklet, time)."""
    from ..gallery import Gallery
    from ..gallery.folder import MANIFEST_FILE, resolve_gallery_path

    targets = config.target
    if not targets:
        raise AdaptError("give a gallery name or folders of crops to adapt to")
    is_gallery_folder = (Path(targets[0]) / MANIFEST_FILE).is_file()
    if len(targets) == 1 and (is_gallery_folder or not Path(targets[0]).is_dir()):
        path = resolve_gallery_path(targets[0])
        if not (path / MANIFEST_FILE).is_file():
            raise AdaptError(f"{targets[0]}: neither a folder of crops nor a gallery")
        with Gallery.open(path) as gallery:
            return from_gallery(gallery), gallery.manifest.get("model", {}).get("path")
    return from_folders(targets, config.metadata), None


def _spread(n: int, cap: int) -> np.ndarray:
    """``cap`` rows evenly over ``n`` (all of them when ``n <= cap``)."""
    return np.arange(n) if n <= cap else np.linspace(0, n - 1, cap).round().astype(np.int64)


def _source_crops(config: AdaptConfig, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Decoded labelled crops of ``config.source`` (training identities), at most ``source_images``."""
    from ..data.layouts import scan_dataset
    from ..training.data import decode_all

    paths, persons = [], []
    for data in config.source:
        scan = scan_dataset(data)
        records = scan.people_records(scan.train_records(), purpose="adaptation")
        paths += [r.path for r in records]
        persons += [f"{Path(data).name}/{r.person}" for r in records]
    if not paths:
        return np.zeros((0, *size, 3), np.uint8), np.zeros(0, np.int64)
    rows = _spread(len(paths), config.source_images)
    pixels, kept, _ = decode_all([paths[i] for i in rows], size)
    _, labels = np.unique([persons[rows[i]] for i in kept], return_inverse=True)
    return pixels, labels.astype(np.int64)


def _refuse_adapted(card, path: Path) -> None:
    adapted = (card.training or {}).get("adaptation")
    if adapted:
        raise AdaptError(
            f"{path}: already adapted (to {adapted.get('target', '?')}); adapt the model it started from "
            f"({adapted.get('start_model', '?')}) on all the crops instead: self-training on its own "
            "pseudo-labels twice only confirms its mistakes"
        )


def adapt(config: AdaptConfig, resume: bool = False, log=print) -> AdaptResult:
    """Adapt ``config.model`` (or the gallery's model, else the default) to ``config.target``.

    Everything that can be refused is checked before the run folder is written; the output
    model is written (atomically) only at the end or on Ctrl-C, and no gallery is touched."""
    from ..embedding.backends import open_model
    from ..training.data import decode_all

    started = time.perf_counter()
    work = work_folder(config)
    if resume:
        saved = work / "config.json"
        if not saved.is_file():
            raise AdaptError(f"{work}: nothing to resume (no config.json)")
        config = AdaptConfig.from_dict(json.loads(saved.read_text()))
    elif (work / "checkpoints").exists():
        raise AdaptError(f"{work}: an adaptation run is already there; use --resume or another --out")
    config.validate()
    if Path(config.out).suffix != ".keras":
        raise AdaptError(f"{config.out}: the adapted model is a .keras file")
    target, gallery_model = read_target(config)
    target.check()
    backend = open_model(config.model or gallery_model, fast=False)
    if not hasattr(backend, "keras_model"):
        raise AdaptError(
            f"{backend.path}: only .keras models can be adapted (this one is {backend.card.model_format})"
        )
    _refuse_adapted(backend.card, backend.path)
    rows = _spread(len(target), config.max_crops)
    if len(rows) < len(target):
        log(f"using {len(rows)} of {len(target)} crops, evenly spread (--max-crops)")
        target = target.subset(rows)
    size = backend.card.input_size
    pixels, kept, failures = decode_all(target.paths, size)
    for line in failures[:3]:
        log(f"skipped: {line}")
    target = target.subset(kept)
    target.check()
    source_pixels, source_labels = _source_crops(config, size)
    if not resume:
        config.model = str(backend.path)
        config.command = config.command or adapt_command(config)
        write_config(config)
    log(
        f"adapting {backend.path.name} to {target.describe()}"
        + (f" + {len(source_labels)} labelled source crops" if len(source_labels) else "")
    )
    adapter = Adapter(config, target, backend.keras_model, backend.card, log)
    if resume and adapter.manager.latest_checkpoint:
        adapter.checkpoint.restore(adapter.manager.latest_checkpoint)
        log(f"resumed at round {int(adapter.round.numpy()) + 1}, step {int(adapter.step.numpy())}")
        adapter.history = _read_history(work)
    adapter.prepare(pixels, source_pixels, source_labels)
    interrupted, labels = adapter.run()
    vectors = adapter.embed_target()
    seconds = time.perf_counter() - started + _previous_seconds(work, resume)
    _write_seconds(work, seconds)
    model_path = _write_model(config, adapter, backend, target, seconds, interrupted)
    extra = finish_model(
        model_path, config, backend.card, vectors, adapter.pseudo_labels(vectors), target, log
    )
    return AdaptResult(model_path, adapter.history, seconds, interrupted, labels, vectors, target, extra)


def finish_model(
    model_path: Path, config: AdaptConfig, start_card, vectors, labels, target, log=print
) -> dict:
    """Export the fast runtime and re-fit the decision rules from the target's own evidence (and the
    start model's held-out source people when their folders are here)."""
    from ..embedding.embedder import Embedder
    from ..embedding.export import export_model
    from .rules import refit_rules, source_evidence, target_evidence

    try:
        fast = export_model(model_path, "litert")
        log(f"fast runtime: {fast.name}")
    except ImportError as exc:  # LiteRT missing on this platform: the .keras model still works
        log(f"no fast export ({exc})")
    trained = (start_card.training or {}).get("config") or {}
    datasets = [*trained.get("data", []), *config.source]
    evidence = [e for e in [target_evidence(vectors, labels, target)] if e is not None]
    evidence += source_evidence(
        Embedder(model_path),
        list(dict.fromkeys(datasets)),
        trained.get("val_fraction", 0.1),
        trained.get("seed", 0),
    )
    fitted = refit_rules(model_path, evidence)
    if fitted:
        log(f"decision rules re-fitted (threshold {fitted['threshold']:.4f}) on: {fitted['evidence']}")
    else:
        log(
            "warning: too little evidence to re-fit the decision rules; "
            "the card has none (query accepts by rank)"
        )
    return fitted


def _read_history(work: Path) -> list[dict]:
    file = work / "history.jsonl"
    return (
        [json.loads(line) for line in file.read_text().splitlines() if line.strip()] if file.is_file() else []
    )


def _previous_seconds(work: Path, resume: bool) -> float:
    file = work / "seconds.json"
    return float(json.loads(file.read_text())["seconds"]) if resume and file.is_file() else 0.0


def _write_seconds(work: Path, seconds: float) -> None:
    from .._files import write_json_atomic

    write_json_atomic(work / "seconds.json", {"seconds": round(seconds, 1)})


def _write_model(
    config: AdaptConfig, adapter: Adapter, backend, target: TargetCrops, seconds: float, interrupted: bool
) -> Path:
    """The adapted tower as ``config.out`` with a card saying how it was made."""
    from ..embedding.model_store import save_model

    card = backend.card
    rounds = adapter.history
    adaptation = {
        "method": "cluster-memory self-training (k-reciprocal Jaccard + DBSCAN pseudo-identities, "
        "tracklet must-links, same-frame cannot-links, camera proxies, distillation from the start model)",
        "command": config.command,
        "start_model": str(backend.path),
        "start_model_sha256": file_sha256(backend.path),
        "target": target.source,
        "target_sha256": target.content_sha256(),
        "target_crops": len(target),
        "target_described": target.describe(),
        "source": config.source,
        "rounds_done": int(adapter.round.numpy()),
        "rounds_planned": config.rounds,
        "clusters_per_round": [r.get("clusters") for r in rounds],
        "wall_seconds": round(seconds, 1),
        "interrupted": interrupted,
        "config": config.to_dict(),
    }
    adapted = replace(
        card,
        name=f"{card.name}-adapted",
        fast_runtime=None,
        open_set={},
        training={**(card.training or {}), "adaptation": adaptation},
        notes=(card.notes + "; " if card.notes else "")
        + f"adapted without labels to {target.describe()} ({len(rounds)} rounds)",
    )
    return save_model(adapter.tower, adapted, config.out)
