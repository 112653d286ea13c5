"""The training losses as a registry: what each needs (pairs of a person in a batch, teacher
targets, the identity classifier) and how its term is computed from one batch. Light: the
TensorFlow losses of :mod:`reid_search.training.losses` load when a term is first computed.

A new loss is one ``LOSSES.register(...)`` here (and its function in ``losses``)::

    >>> [name for name in LOSSES if LOSSES.get(name).pairs]
    ['pair', 'contrastive', 'triplet']
    >>> LOSSES.names()[-3:]
    ('distill', 'regress', 'attr')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import TrainingError
from ..registry import Registry


@dataclass
class Batch:
    """What a loss term may read: the tower's outputs, labels of the first ``n`` (labelled)
    rows, the teacher's targets, the heads and the run's config."""

    embedding: Any
    bn_features: Any
    labels: Any
    teacher: Any
    n: int
    heads: Any
    config: Any
    attributes: Any = None  # attribute targets of every row (-1: unknown), for the attr loss


@dataclass(frozen=True)
class LossKind:
    """One loss: its name, what it needs, and its term on a :class:`Batch`."""

    name: str
    term: Callable[[Batch], Any]
    pairs: bool = False  # needs two images of a person in a batch (--k >= 2)
    teacher: bool = False  # learns from teacher targets (a crop without a person can take part)
    head: str | None = None  # the :class:`~reid_search.training.build.Heads` field it trains
    classifier: bool = False  # trains the identity classifier (one such loss at a time)


def _losses():
    from . import losses

    return losses


LOSSES: Registry[LossKind] = Registry("loss", TrainingError)
for _kind in (
    LossKind("pair", lambda b: _losses().pair_loss(b.embedding[: b.n], b.labels[: b.n], b.heads.pair_head),
             pairs=True, head="pair_head"),
    LossKind("contrastive", lambda b: _losses().contrastive_loss(
        b.embedding[: b.n], b.labels[: b.n], b.config.contrastive_margin), pairs=True),
    LossKind("triplet", lambda b: _losses().batch_hard_triplet_loss(
        b.embedding[: b.n], b.labels[: b.n], b.config.triplet_margin), pairs=True),
    LossKind("id", lambda b: _losses().id_loss(
        b.heads.classifier(b.bn_features[: b.n]), b.labels[: b.n], b.config.label_smoothing),
             head="classifier", classifier=True),
    LossKind("cosface", lambda b: _losses().cosface_loss(
        b.bn_features[: b.n], b.heads.classifier.kernel, b.labels[: b.n], b.config.cosface_scale,
        b.config.cosface_margin, b.config.label_smoothing), head="classifier", classifier=True),
    LossKind("distill", lambda b: _losses().distillation_loss(b.embedding, b.teacher), teacher=True),
    LossKind("regress", lambda b: _losses().teacher_regression_loss(
        b.heads.teacher_head(b.bn_features), b.teacher), teacher=True, head="teacher_head"),
    LossKind("attr", lambda b: _losses().attribute_loss(
        b.heads.attribute_head(b.embedding), b.attributes, b.heads.attribute_prior), head="attribute_head"),
):  # fmt: skip
    LOSSES.register(_kind.name, _kind)


def losses_where(flag: str) -> tuple[str, ...]:
    """Names of the losses with ``flag`` set (``pairs``, ``teacher``, ``classifier``).

    >>> losses_where("teacher")
    ('distill', 'regress')
    """
    return tuple(name for name, kind in LOSSES.items() if getattr(kind, flag))
