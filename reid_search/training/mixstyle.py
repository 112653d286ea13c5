"""MixStyle (Zhou et al., ICLR 2021): mix the feature statistics of random pairs of images.

A camera's "style" (colour cast, contrast, illumination) lives largely in the per-channel
mean and standard deviation of early feature maps. Re-normalising each image's features
with a random convex mix of its own and another image's statistics makes the tower see
styles between the cameras it has, and so rely less on them. Applied during training only,
to the frozen early blocks' output (the cached views), with probability ``p`` per batch.

Usage::

    >>> import tensorflow as tf
    >>> x = tf.random.normal((8, 4, 2, 3))
    >>> mixed = mix_styles(x, tf.constant([1, 2]), p=1.0)
    >>> tuple(mixed.shape)
    (8, 4, 2, 3)
"""

from __future__ import annotations

import tensorflow as tf


def mix_styles(
    x: tf.Tensor, seed: tf.Tensor, p: float = 0.5, alpha: float = 0.1, eps: float = 1e-6
) -> tf.Tensor:
    """``x`` (N, H, W, C) with each image's channel statistics mixed with another's (Beta(alpha,
    alpha) weights, a random partner), with probability ``p`` for the whole batch; ``seed`` is
    a stateless seed pair (e.g. the step), so a resumed run mixes the same way."""
    n = tf.shape(x)[0]
    apply = tf.random.stateless_uniform((), seed) < p
    mu = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    sig = tf.sqrt(tf.math.reduce_variance(x, axis=[1, 2], keepdims=True) + eps)
    normed = (x - tf.stop_gradient(mu)) / tf.stop_gradient(sig)
    g1 = tf.random.stateless_gamma((n, 1, 1, 1), seed + 1, alpha)
    g2 = tf.random.stateless_gamma((n, 1, 1, 1), seed + 2, alpha)
    lam = g1 / (g1 + g2 + 1e-12)  # Beta(alpha, alpha)
    partner = tf.argsort(tf.random.stateless_uniform((n,), seed + 3))
    mu_mix = lam * mu + (1 - lam) * tf.gather(mu, partner)
    sig_mix = lam * sig + (1 - lam) * tf.gather(sig, partner)
    mixed = normed * tf.stop_gradient(sig_mix) + tf.stop_gradient(mu_mix)
    return tf.cond(apply, lambda: mixed, lambda: x)
