"""The Ray engine: decode and embed on a Ray cluster, everything else unchanged on the driver.

:class:`RayEmbedder` is an :class:`~reid_search.embedding.embedder.Embedder` whose batches come from
Ray Data: ``map_batches`` over a pool of actors, each loading the model once. The model's
files travel through Ray's object store (workers need no copy of the model); the images
are read by the workers from their paths, so those must be visible to every node (a
shared file system on a real cluster). Order is preserved, so the driver receives batches
in input order and the gallery, the vectors file or the evaluation are written exactly as
with the local engine: SQLite commits per batch, a killed driver resumes by running the
same command again, and a lost worker's batch is retried on a new actor.

Needs the ``[ray]`` extra. Usage::

    embedder = RayEmbedder(actors=2)              # ray.init() here, or address="ray://..."
    vectors, used, failed = embedder.embed_files(paths)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.images import ImageError
from ..errors import UnavailableError
from .embedder import EmbeddedBatch, Embedder, ImageFacts
from .model_store import write_card


def require_ray():
    """Import Ray, or a :class:`~reid_search.errors.MissingExtra` naming ``[ray]``."""
    from ..errors import require_extra

    require_extra("ray.data", "ray", "--engine ray")
    return require_extra("ray", "ray", "--engine ray")


def model_bundle(embedder: Embedder) -> dict[str, bytes]:
    """The files of the embedder's model plus its card, as ``name -> bytes``."""
    from .model_store import card_path

    backend = embedder.model
    bundle = {path.name: path.read_bytes() for path in backend.files()}
    with tempfile.TemporaryDirectory() as tmp:
        model_file = Path(tmp) / backend.path.name
        model_file.write_bytes(bundle[backend.path.name])
        write_card(model_file, replace(backend.card, model_file=None))
        bundle["card"] = card_path(model_file).read_bytes()
    bundle["model_name"] = backend.path.name.encode()
    return bundle


def quiet_ray_logs() -> None:
    """Ray's INFO lines and its C++ warnings stay off stderr unless ``--verbose``."""
    import logging

    if os.environ.get("REID_SEARCH_VERBOSE"):
        return
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


class EmbedActor:
    """A Ray Data actor: opens the model once, then embeds the batches it is given."""

    def __init__(self, bundle, batch_size: int, flip: bool, threads: int, pid_dir: str | None = None):
        import ray

        from .model_store import card_path

        if isinstance(bundle, ray.ObjectRef):
            bundle = ray.get(bundle)  # the model's bytes, from the object store
        folder = Path(tempfile.mkdtemp(prefix="reid-ray-model-"))
        name = bundle["model_name"].decode()
        for file_name, data in bundle.items():
            if file_name not in ("card", "model_name"):
                (folder / file_name).write_bytes(data)
        card_path(folder / name).write_bytes(bundle["card"])
        try:
            self.embedder = Embedder(folder / name, batch_size=batch_size, threads=threads, flip=flip)
        finally:  # the runtimes hold the model in memory now: no temp folder is left per actor
            shutil.rmtree(folder, ignore_errors=True)
        self.dim = self.embedder.dim
        if pid_dir:  # tests: lets them find (and kill) this worker
            Path(pid_dir, f"{os.getpid()}.pid").write_text(str(os.getpid()))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        position = {p: i for i, p in enumerate(paths)}
        n = len(paths)
        vectors = np.zeros((n, self.dim), np.float32)
        ok = np.zeros(n, bool)
        width, height = np.zeros(n, np.int64), np.zeros(n, np.int64)
        sha, error = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
        for done in self.embedder.iter_batches(paths):
            for i, vector, facts in zip(done.indices, done.vectors, done.images, strict=True):
                vectors[i], ok[i], sha[i] = vector, True, facts.sha256
                width[i], height[i] = facts.width, facts.height
            for failure in done.failures:
                error[position[str(failure.path)]] = failure.reason
        return {
            "i": batch["i"], "path": np.array(paths, dtype=object), "vector": vectors, "ok": ok,
            "width": width, "height": height, "sha256": sha, "error": error,
        }  # fmt: skip


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail at once, in one line, when nothing listens at a ``host:port`` or ``ray://host:port``
    address (Ray itself retries a dead address for many minutes); ``None`` and ``auto`` are
    left to Ray.

    >>> check_reachable("auto"), check_reachable(None)
    (None, None)
    """
    if not address or address == "auto":
        return
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit():
        raise UnavailableError(f"--ray-address {address}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UnavailableError(
            f"--ray-address {address}: nothing answers there ({exc.strerror or exc}); start the "
            "cluster (ray start --head) or check the address"
        ) from None


def start_ray(ray, address: str | None) -> None:
    """Join the cluster at ``address`` (or start a local Ray); failing that, an
    :class:`~reid_search.errors.UnavailableError` saying which and why, in one line."""
    from .backends import quiet_native_stderr

    check_reachable(address)
    quiet_ray_logs()
    try:
        with quiet_native_stderr():
            ray.init(
                address=address, include_dashboard=False, log_to_driver=False,
                logging_level="ERROR", configure_logging=True,
            )  # fmt: skip
    except Exception as exc:
        if not isinstance(exc, (ConnectionError, TimeoutError)) and type(exc) is not Exception:
            raise  # Ray's own failures are these (a bare Exception on a start-up time-out); others are bugs
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UnavailableError(f"--engine ray: could not start or reach {where}: {reason}") from exc


class RayEmbedder(Embedder):
    """An :class:`Embedder` whose decoding and embedding run as Ray Data ``map_batches``.

    ``actors``: size of the actor pool (default: the cluster's CPUs, each actor one CPU);
    ``address``: a running cluster (``ray://host:10001`` or ``auto``), else a local Ray.
    """

    def __init__(
        self,
        model=None,
        batch_size: int = 64,
        actors: int | None = None,
        address: str | None = None,
        flip: bool = False,
        pid_dir: str | None = None,
    ):
        ray = require_ray()
        super().__init__(model, batch_size=batch_size, flip=flip)
        if not ray.is_initialized():
            start_ray(ray, address)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # batches reach the driver in input order
        context.enable_progress_bars = False
        self.actors = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.bundle = ray.put(model_bundle(self))
        self.pid_dir = pid_dir

    def iter_batches(self, paths: Sequence[str | Path]) -> Iterator[EmbeddedBatch]:
        """Embed ``paths`` on the cluster; batches come back in input order."""
        import ray

        if not paths:
            return
        items = ray.data.from_items([{"i": i, "path": str(p)} for i, p in enumerate(paths)])
        embedded = items.map_batches(
            EmbedActor,
            fn_constructor_kwargs={
                "bundle": self.bundle, "batch_size": self.batch_size, "flip": self.flip, "threads": 1,
                "pid_dir": self.pid_dir,
            },
            batch_size=self.batch_size,
            compute=ray.data.ActorPoolStrategy(size=self.actors),
            num_cpus=1,  # Ray Data's default: a lost actor is replaced and its batch retried
        )  # fmt: skip
        for rows in embedded.iter_batches(batch_size=self.batch_size, batch_format="numpy"):
            yield _embedded_batch(rows)


def _embedded_batch(rows: dict[str, np.ndarray]) -> EmbeddedBatch:
    """One batch of actor output rows (in input order) as the local engine's batch."""
    index = rows["i"].astype(int)
    ok = rows["ok"].astype(bool)
    vectors = np.asarray(np.stack(list(rows["vector"])), np.float32)[ok]
    sizes = zip(rows["width"][ok], rows["height"][ok], rows["sha256"][ok], strict=True)
    facts = [ImageFacts(int(w), int(h), str(s)) for w, h, s in sizes]
    failures = [
        ImageError(str(p), str(e)) for p, e in zip(rows["path"][~ok], rows["error"][~ok], strict=True)
    ]
    return EmbeddedBatch(int(index[0]), int(index[-1]) + 1, index[ok].tolist(), vectors, facts, failures)
