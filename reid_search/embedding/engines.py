"""Where embedding runs: ``local`` (this process, decoding in threads) or ``ray`` (a Ray cluster).

Both give an :class:`~reid_search.embedding.embedder.Embedder`; galleries, vectors files and
evaluations are written the same way by the driver whichever engine embeds. The local
engine never imports Ray.

Usage::

    embedder = make_embedder("local", batch_size=64)
    embedder = make_embedder("ray", actors=2, address="ray://head:10001")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..registry import Registry
from .embedder import Embedder


@dataclass(frozen=True)
class EngineOptions:
    """Options only a distributed engine reads (the local engine ignores them)."""

    actors: int | None = None  # actor pool size [default: the cluster's CPUs]
    address: str | None = None  # a running Ray cluster [default: start a local one]


def _local(model, batch_size: int, flip: bool, options: EngineOptions) -> Embedder:
    return Embedder(model, batch_size=batch_size, flip=flip)


def _ray(model, batch_size: int, flip: bool, options: EngineOptions) -> Embedder:
    from .ray_engine import RayEmbedder

    return RayEmbedder(
        model, batch_size=batch_size, actors=options.actors, address=options.address, flip=flip
    )


ENGINES: Registry[Callable[..., Embedder]] = Registry("engine", InputError)
ENGINES.register("local", _local)
ENGINES.register("ray", _ray)


def make_embedder(
    engine: str = "local",
    model: str | Path | None = None,
    batch_size: int = 64,
    flip: bool = False,
    options: EngineOptions | None = None,
) -> Embedder:
    """An embedder on the named engine; an unknown name is an InputError listing the known ones."""
    return ENGINES.get(engine)(model, batch_size, flip, options or EngineOptions())
