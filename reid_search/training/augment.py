"""Training augmentation, vectorised over the batch (cheap on CPU).

* flip           horizontal flip with probability 0.5
* pad-and-crop   a random crop of the image zero-padded by ``pad`` (a fraction of each side)
* colour jitter  random brightness, contrast and saturation per image
* grey           grey-scale with probability ``grey`` (cameras disagree on colour)
* downscale      with probability ``downscale``, the image shrunk to 30-80% of its side and enlarged
                 back (a low-resolution camera: soft edges, lost texture)
* random erasing a random rectangle filled with noise (Zhong et al. 2020), probability ``erase``
* ``randaugment`` adds random grey-scale, equalise-like contrast stretch and sharpness blur

Images are float32 0-255 (B, H, W, 3), as the tower takes them.

Usage::

    >>> import tensorflow as tf
    >>> aug = Augmenter(AugmentConfig(), seed=0)
    >>> aug(tf.zeros((4, 128, 64, 3))).shape
    TensorShape([4, 128, 64, 3])
"""

from __future__ import annotations

import tensorflow as tf

from .augment_config import AugmentConfig


class Augmenter:
    """Applies an :class:`AugmentConfig` to batches with its own random generator."""

    def __init__(self, config: AugmentConfig, seed: int = 0):
        self.config = config
        self.rng = tf.random.Generator.from_seed(seed)

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        c = self.config
        x = tf.convert_to_tensor(images, tf.float32)
        if c.flip:
            x = self._flip(x)
        if c.pad > 0:
            x = self._pad_crop(x, c.pad)
        if c.colour > 0:
            x = self._colour(x, c.colour)
        if c.grey > 0:
            x = self._grey(x, c.grey)
        if c.downscale > 0:
            x = self._downscale(x, c.downscale)
        if c.randaugment:
            x = self._randaugment(x)
        if c.erase > 0:
            x = self._erase(x, c.erase)
        return tf.clip_by_value(x, 0.0, 255.0)

    def _uniform(self, shape, lo=0.0, hi=1.0) -> tf.Tensor:
        return self.rng.uniform(shape, lo, hi)

    def _flip(self, x: tf.Tensor) -> tf.Tensor:
        mask = self._uniform((tf.shape(x)[0], 1, 1, 1)) < 0.5
        return tf.where(mask, tf.reverse(x, axis=[2]), x)

    def _pad_crop(self, x: tf.Tensor, pad: float) -> tf.Tensor:
        """Crop a window of the original size from the zero-padded image (crop_and_resize, no resize)."""
        b = tf.shape(x)[0]
        dy = self._uniform((b,), -pad, pad)
        dx = self._uniform((b,), -pad, pad)
        boxes = tf.stack([dy, dx, dy + 1.0, dx + 1.0], axis=1)
        size = tf.shape(x)[1:3]
        return tf.image.crop_and_resize(x, boxes, tf.range(b), size, extrapolation_value=0.0)

    def _colour(self, x: tf.Tensor, strength: float) -> tf.Tensor:
        b = tf.shape(x)[0]
        brightness = self._uniform((b, 1, 1, 1), 1 - strength, 1 + strength)
        contrast = self._uniform((b, 1, 1, 1), 1 - strength, 1 + strength)
        saturation = self._uniform((b, 1, 1, 1), 1 - strength, 1 + strength)
        x = x * brightness
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * contrast + mean
        grey = tf.reduce_mean(x, axis=3, keepdims=True)
        return (x - grey) * saturation + grey

    def _grey(self, x: tf.Tensor, probability: float) -> tf.Tensor:
        mask = self._uniform((tf.shape(x)[0], 1, 1, 1)) < probability
        return tf.where(mask, _to_grey(x), x)

    def _downscale(self, x: tf.Tensor, probability: float) -> tf.Tensor:
        """Shrink to one random scale (30-80% of each side, per call) and enlarge back, per image."""
        size = tf.shape(x)[1:3]
        scale = self._uniform((), 0.3, 0.8)
        small = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) * scale), tf.int32), 4)
        blurred = tf.image.resize(tf.image.resize(x, small, antialias=True), size)
        mask = self._uniform((tf.shape(x)[0], 1, 1, 1)) < probability
        return tf.where(mask, blurred, x)

    def _randaugment(self, x: tf.Tensor) -> tf.Tensor:
        """Light RandAugment: each image gets one of identity, grey-scale, contrast stretch, blur."""
        b = tf.shape(x)[0]
        op = tf.cast(tf.floor(self._uniform((b, 1, 1, 1), 0, 4)), tf.int32)
        grey = _to_grey(x)
        lo = tf.reduce_min(x, axis=[1, 2], keepdims=True)
        hi = tf.reduce_max(x, axis=[1, 2], keepdims=True)
        stretched = (x - lo) / tf.maximum(hi - lo, 1.0) * 255.0
        blurred = tf.nn.avg_pool2d(x, 3, 1, "SAME")
        out = tf.where(op == 1, grey, x)
        out = tf.where(op == 2, stretched, out)
        return tf.where(op == 3, blurred, out)

    def _erase(self, x: tf.Tensor, probability: float) -> tf.Tensor:
        """Random erasing: area 2-40% of the image, aspect 0.3-3.3, filled with uniform noise."""
        shape = tf.shape(x)
        b, h, w = shape[0], tf.cast(shape[1], tf.float32), shape[2]
        w = tf.cast(w, tf.float32)
        area = self._uniform((b,), 0.02, 0.4) * h * w
        log_aspect = self._uniform((b,), tf.math.log(0.3), tf.math.log(3.3))
        eh = tf.minimum(tf.sqrt(area * tf.exp(log_aspect)), h)
        ew = tf.minimum(tf.sqrt(area / tf.exp(log_aspect)), w)
        y0 = self._uniform((b,)) * (h - eh)
        x0 = self._uniform((b,)) * (w - ew)
        ys = tf.range(h)[None, :, None]
        xs = tf.range(w)[None, None, :]
        inside = (
            (ys >= y0[:, None, None])
            & (ys < (y0 + eh)[:, None, None])
            & (xs >= x0[:, None, None])
            & (xs < (x0 + ew)[:, None, None])
        )
        apply = self._uniform((b, 1, 1)) < probability
        mask = tf.logical_and(inside, apply)[..., None]
        noise = self._uniform(tf.shape(x), 0.0, 255.0)
        return tf.where(mask, noise, x)


def _to_grey(x: tf.Tensor) -> tf.Tensor:
    """The channel mean repeated over RGB."""
    return tf.repeat(tf.reduce_mean(x, axis=3, keepdims=True), 3, axis=3)
