"""Losses that pull the same person together and push different people apart.

All take a batch of embeddings and integer identity labels (a P x K batch from
:mod:`reid_search.training.sampler`), so every pair in the batch is used:

* :func:`pair_loss`          the original project's: sigmoid cross-entropy of a dense layer
  over ``|f1 - f2|`` (same = 1), both pair classes weighted equally
* :func:`contrastive_loss`   ``y d^2 + (1 - y) max(0, m - d)^2`` on Euclidean distances
* :func:`batch_hard_triplet_loss` hardest positive vs hardest negative per anchor, with a
  margin (``max(0, d_ap - d_an + m)``) or soft (``log(1 + exp(d_ap - d_an))``)
* :func:`id_loss`            softmax cross-entropy over training identities, label smoothing
* :func:`cosface_loss`       the same over cosines to L2-normalised class weights, the true
  class's cosine lowered by a margin (CosFace, Wang et al. 2018): identities become compact
  cones, so one cosine threshold separates people better (open-set answers)
* :func:`distillation_loss`  match the student's cosine-similarity matrix to a teacher's
* :func:`teacher_regression_loss` a linear head maps the student's features onto the
  teacher's vectors (1 - cosine)

Usage::

    >>> import tensorflow as tf
    >>> f = tf.math.l2_normalize(tf.random.normal((8, 16)), axis=1)
    >>> y = tf.constant([0, 0, 1, 1, 2, 2, 3, 3])
    >>> float(batch_hard_triplet_loss(f, y, margin=0.3)) >= 0
    True
"""

from __future__ import annotations

import tensorflow as tf


def pairwise_distances(embeddings: tf.Tensor) -> tf.Tensor:
    """Euclidean distance matrix (N, N), numerically safe at zero."""
    dot = tf.matmul(embeddings, embeddings, transpose_b=True)
    sq = tf.linalg.diag_part(dot)
    d2 = tf.maximum(sq[:, None] - 2.0 * dot + sq[None, :], 0.0)
    zero = tf.cast(tf.equal(d2, 0.0), d2.dtype)
    return tf.sqrt(d2 + zero * 1e-16) * (1.0 - zero)


def _pair_masks(labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(same identity, i != j) and (different identity) boolean matrices."""
    labels = tf.reshape(labels, (-1,))
    same = tf.equal(labels[:, None], labels[None, :])
    not_self = tf.logical_not(tf.eye(tf.shape(labels)[0], dtype=tf.bool))
    return tf.logical_and(same, not_self), tf.logical_not(same)


def batch_hard_triplet_loss(
    embeddings: tf.Tensor, labels: tf.Tensor, margin: float | None = 0.3
) -> tf.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017); ``margin=None`` is the soft-margin form."""
    d = pairwise_distances(embeddings)
    positive, negative = _pair_masks(labels)
    hardest_pos = tf.reduce_max(tf.where(positive, d, tf.zeros_like(d)), axis=1)
    big = tf.reduce_max(d) + 1.0
    hardest_neg = tf.reduce_min(tf.where(negative, d, tf.fill(tf.shape(d), big)), axis=1)
    gap = hardest_pos - hardest_neg
    per_anchor = tf.nn.softplus(gap) if margin is None else tf.nn.relu(gap + margin)
    has_both = tf.logical_and(tf.reduce_any(positive, 1), tf.reduce_any(negative, 1))
    return _masked_mean(per_anchor, has_both)


def contrastive_loss(embeddings: tf.Tensor, labels: tf.Tensor, margin: float = 0.5) -> tf.Tensor:
    """Contrastive loss over all pairs of the batch, positives and negatives weighted equally."""
    d = pairwise_distances(embeddings)
    positive, negative = _pair_masks(labels)
    pos_term = _masked_mean(tf.square(d), positive)
    neg_term = _masked_mean(tf.square(tf.nn.relu(margin - d)), negative)
    return pos_term + neg_term


def pair_loss(embeddings: tf.Tensor, labels: tf.Tensor, head: tf.keras.layers.Layer) -> tf.Tensor:
    """The seed's siamese loss: ``head(|f_i - f_j|)`` is the logit of "same person", for all pairs i < j."""
    n = tf.shape(embeddings)[0]
    diff = tf.abs(embeddings[:, None, :] - embeddings[None, :, :])
    logits = tf.reshape(head(tf.reshape(diff, (n * n, -1))), (n, n))
    positive, negative = _pair_masks(labels)
    upper = tf.linalg.band_part(tf.ones((n, n), tf.bool), 0, -1)
    upper = tf.logical_and(upper, tf.logical_not(tf.eye(n, dtype=tf.bool)))
    targets = tf.cast(positive, tf.float32)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    return _masked_mean(ce, tf.logical_and(positive, upper)) + _masked_mean(
        ce, tf.logical_and(negative, upper)
    )


def id_loss(logits: tf.Tensor, labels: tf.Tensor, smoothing: float = 0.1) -> tf.Tensor:
    """Softmax cross-entropy with label smoothing (Szegedy et al.), as in BoT re-ID baselines."""
    n_classes = tf.shape(logits)[-1]
    onehot = tf.one_hot(tf.reshape(labels, (-1,)), n_classes)
    k = tf.cast(n_classes, logits.dtype)
    targets = onehot * (1.0 - smoothing) + smoothing / k
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits))


def cosface_loss(
    features: tf.Tensor,
    class_weights: tf.Tensor,
    labels: tf.Tensor,
    scale: float = 30.0,
    margin: float = 0.25,
    smoothing: float = 0.1,
) -> tf.Tensor:
    """Large-margin cosine loss: softmax cross-entropy of ``scale * (cos - margin * [true class])``.

    ``class_weights`` is the (features, classes) kernel of a bias-free classifier; features and
    class weights are L2-normalised, so the logits are cosines and only directions learn.

    >>> w = tf.eye(2)  # two classes along the axes
    >>> near = cosface_loss(tf.constant([[1.0, 0.0]]), w, tf.constant([0]), smoothing=0.0)
    >>> far = cosface_loss(tf.constant([[0.0, 1.0]]), w, tf.constant([0]), smoothing=0.0)
    >>> bool(near < far)
    True
    """
    cosine = tf.matmul(tf.math.l2_normalize(features, axis=1), tf.math.l2_normalize(class_weights, axis=0))
    onehot = tf.one_hot(tf.reshape(labels, (-1,)), tf.shape(cosine)[-1], dtype=cosine.dtype)
    return id_loss(scale * (cosine - margin * onehot), labels, smoothing)


def distillation_loss(student: tf.Tensor, teacher: tf.Tensor) -> tf.Tensor:
    """Mean squared difference of the student's and teacher's cosine-similarity matrices."""
    s = tf.math.l2_normalize(student, axis=1)
    t = tf.math.l2_normalize(teacher, axis=1)
    return tf.reduce_mean(tf.square(tf.matmul(s, s, transpose_b=True) - tf.matmul(t, t, transpose_b=True)))


def teacher_regression_loss(projected: tf.Tensor, teacher: tf.Tensor) -> tf.Tensor:
    """1 - cosine between the student's projected features and the teacher's vectors, averaged."""
    p = tf.math.l2_normalize(projected, axis=1)
    t = tf.math.l2_normalize(teacher, axis=1)
    return 1.0 - tf.reduce_mean(tf.reduce_sum(p * t, axis=1))


def _masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    mask = tf.cast(mask, values.dtype)
    return tf.reduce_sum(values * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def attribute_loss(logits: tf.Tensor, targets: tf.Tensor, prior: tf.Tensor) -> tf.Tensor:
    """Class-balanced binary cross-entropy of attribute ``logits`` against 0/1 ``targets``; a
    target below 0 (a crop without attribute labels) counts for nothing. ``prior``: each
    attribute's positive rate, so positives and negatives weigh half each."""
    known = tf.cast(targets >= 0, logits.dtype)
    y = tf.clip_by_value(targets, 0.0, 1.0)
    weight = known * (y * 0.5 / prior + (1.0 - y) * 0.5 / (1.0 - prior))
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits)
    return tf.reduce_sum(weight * bce) / tf.maximum(tf.reduce_sum(known), 1.0)
