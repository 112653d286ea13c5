"""Every setting of an adaptation run in one dataclass; ``config.json`` in the run folder is its copy.

Usage::

    >>> config = AdaptConfig(target=["crops/"], out="lobby.keras")
    >>> config.rounds, config.cluster.eps
    (12, 0.45)
    >>> adapt_command(config).split()[:4]
    ['reid-search', 'adapt', 'crops/', '--out']
"""

from __future__ import annotations

import math
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from .clustering import ClusterSettings
from .target import AdaptError

INGREDIENTS = ("tracklets", "cameras", "recluster", "distill")  # what --without can remove


@dataclass
class AdaptConfig:
    """One adaptation run: the crops (``target``: folders or one gallery name), the starting
    ``model`` (None: the gallery's, else the default), the adapted model ``out`` and its run
    folder ``work`` (checkpoints, pseudo-labels per round; default ``OUT.adapt/``)."""

    target: list[str]
    out: str
    model: str | None = None
    metadata: str | None = None  # CSV sidecar of the target folders (camera, tracklet, time, frame)
    source: list[str] = field(default_factory=list)  # labelled datasets mixed in (their people fixed)
    source_images: int = 4000  # at most this many source crops (evenly over people)
    work: str | None = None
    rounds: int = 12
    steps_per_round: int | None = None  # None: two passes over the crops, 50 to 200 steps
    p: int = 16  # pseudo-identities per batch
    k: int = 4  # crops per pseudo-identity
    lr: float = 1e-4
    weight_decay: float = 5e-4
    temperature: float = 0.05  # of the cluster-memory softmax
    memory_momentum: float = 0.2  # a centroid keeps this share of itself per update
    camera_weight: float = 0.5  # the camera-proxy term (pull to the cluster in every camera)
    distill_weight: float = 10.0  # keep the starting model's similarity structure on the target
    ignore_partners: int = 3  # a one-camera cluster's 3 nearest one-camera clusters elsewhere: not negatives
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    without: list[str] = field(default_factory=list)  # ingredients removed (the levers table)
    freeze_blocks: int = 5
    cached_views: int = 4
    max_crops: int = 20000  # at most this many target crops (evenly spread): bounds memory
    augment: dict[str, Any] = field(
        default_factory=lambda: {"erase": 0.5, "colour": 0.2, "pad": 0.1}
    )  # AugmentConfig
    seed: int = 0
    command: str = ""

    def steps_for(self, crops: int) -> int:
        """Steps per round: as set, else two passes over ``crops`` in P x K batches, 50 to 200.

        >>> config = AdaptConfig(target=[], out="a.keras")
        >>> config.steps_for(7239), config.steps_for(2500), config.steps_for(500)
        (200, 78, 50)
        """
        if self.steps_per_round:
            return self.steps_per_round
        return int(min(200, max(50, round(2 * crops / (self.p * self.k)))))

    def uses(self, ingredient: str) -> bool:
        return ingredient not in self.without

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaptConfig:
        data = dict(data)
        data["cluster"] = ClusterSettings(**data.get("cluster", {}))
        return cls(**data)

    def validate(self) -> None:
        """Refuse settings no run can use (one :class:`AdaptError` naming the option)."""
        unknown = set(self.without) - set(INGREDIENTS)
        if unknown:
            raise AdaptError(f"--without {', '.join(sorted(unknown))}: known: {', '.join(INGREDIENTS)}")
        rules = [
            ("--rounds", self.rounds, self.rounds >= 1, "must be at least 1"),
            (
                "--steps-per-round",
                self.steps_per_round or 1,
                (self.steps_per_round or 1) >= 1,
                "must be at least 1",
            ),
            ("--p", self.p, self.p >= 2, "must be at least 2"),
            ("--k", self.k, self.k >= 2, "must be at least 2"),
            ("--lr", self.lr, 0 < self.lr < 1, "must be above 0 and below 1"),
            ("--temperature", self.temperature, 0 < self.temperature <= 1, "must be above 0, at most 1"),
            ("--memory-momentum", self.memory_momentum, 0 <= self.memory_momentum < 1, "must be in [0, 1)"),
            ("--camera-weight", self.camera_weight, self.camera_weight >= 0, "must be at least 0"),
            ("--distill-weight", self.distill_weight, self.distill_weight >= 0, "must be at least 0"),
            ("--ignore-partners", self.ignore_partners, self.ignore_partners >= 0, "must be at least 0"),
            ("--eps", self.cluster.eps, 0 < self.cluster.eps < 1, "must be above 0 and below 1"),
            ("--min-samples", self.cluster.min_samples, self.cluster.min_samples >= 2, "must be at least 2"),
            ("--k1", self.cluster.k1, self.cluster.k1 >= 2, "must be at least 2"),
            ("--cached-views", self.cached_views, 1 <= self.cached_views <= 16, "must be 1 to 16"),
            ("--max-crops", self.max_crops, self.max_crops >= 1, "must be at least 1"),
        ]
        for option, value, allowed, rule in rules:
            if not (allowed and math.isfinite(float(value))):
                raise AdaptError(f"{option} {value:g}: {rule}")


def adapt_command(config: AdaptConfig) -> str:
    """The ``reid-search adapt`` command line that reproduces ``config`` (every setting explicit)."""
    c = config.cluster
    parts = [
        "reid-search", "adapt", *config.target, "--out", config.out,
        *(["--model", config.model] if config.model else []),
        *(["--metadata", config.metadata] if config.metadata else []),
        *[x for s in config.source for x in ("--source", s)],
        "--rounds", str(config.rounds),
        *(["--steps-per-round", str(config.steps_per_round)] if config.steps_per_round else []),
        "--p", str(config.p), "--k", str(config.k), "--lr", f"{config.lr:g}",
        "--temperature", f"{config.temperature:g}", "--camera-weight", f"{config.camera_weight:g}",
        "--distill-weight", f"{config.distill_weight:g}", "--ignore-partners", str(config.ignore_partners),
        "--eps", f"{c.eps:g}",
        "--min-samples", str(c.min_samples), "--k1", str(c.k1),
        *[x for w in config.without for x in ("--without", w)],
        "--max-crops", str(config.max_crops), "--seed", str(config.seed),
    ]  # fmt: skip
    return " ".join(shlex.quote(p) for p in parts)
