"""Image augmentation as the model's first layer: flip, shift, rotate, zoom, erase.

`Augment` runs on the 28x28 images inside the model, so it is compiled into the training step
and runs where the model runs (on the accelerator, when there is one), instead of in a Python
input pipeline that the model waits for. It transforms only when called with `training=True`
(Keras's `fit`); evaluation, prediction, streaming and export see the images unchanged, and the
saved model carries the settings.

Every transform draws from its own seed, derived from the run's seed, so no two transforms
repeat each other's random numbers.

Shifts and zoom are two small matrix products per image (`resample`), the same bilinear result
with black fill as Keras's `RandomTranslation` and `RandomZoom`, and rotation is three shears
(`rotate`): Keras's layers do these with a per-pixel gather that costs several times the whole
training step on JAX (`benchmarks/augment_speed.py`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from fashion_tcn.config import AugmentConfig

TRANSFORMS = ("flip", "translate", "rotate", "zoom", "erase")


def resample_matrices(scale, shift, size: int = 28):
    """(B,) scales and shifts -> (B, size, size) interpolation matrices: output pixel i reads the
    input at c + (i - c) * scale - shift (c the centre), linearly between its two nearest
    pixels, and 0 outside the image. Scale > 1 zooms out, shift > 0 moves the image on."""
    i = ops.arange(size, dtype="float32")[:, None]
    j = ops.arange(size, dtype="float32")[None, :]
    centre = (size - 1) / 2
    scale, shift = ops.reshape(scale, (-1, 1, 1)), ops.reshape(shift, (-1, 1, 1))
    return ops.relu(1.0 - ops.abs(j - (centre + (i - centre) * scale - shift)))


def resample(images, scale, shift):
    """(B, H, W) images zoomed by (B, 2) scales and moved by (B, 2) pixel shifts (down, right):
    bilinear, black fill, rows then columns, since zoom and translation are separable."""
    rows = resample_matrices(scale[:, 0], shift[:, 0], images.shape[1])
    columns = resample_matrices(scale[:, 1], shift[:, 1], images.shape[2])
    return ops.matmul(ops.matmul(rows, images), ops.transpose(columns, (0, 2, 1)))


def shear_rows(images, factor):
    """(B, H, W) images with row y moved right by factor * (y - centre) pixels, (B,) factors:
    one interpolation matrix per row, bilinear, black fill."""
    height, width = images.shape[1], images.shape[2]
    rows = ops.arange(height, dtype="float32") - (height - 1) / 2
    offsets = ops.reshape(ops.reshape(factor, (-1, 1)) * rows, (-1,))
    moved = ops.matmul(resample_matrices(1.0, offsets, width), ops.reshape(images, (-1, width, 1)))
    return ops.reshape(moved, (-1, height, width))


def rotate(images, angles):
    """(B, H, W) images rotated about their centre by (B,) angles in radians, as three shears
    (Paeth): rows, columns, rows. Within a pixel of Keras's one-step bilinear rotation, without
    its per-pixel gather."""
    rows, columns = -ops.tan(angles / 2), ops.sin(angles)
    x = shear_rows(images, rows)
    x = ops.transpose(shear_rows(ops.transpose(x, (0, 2, 1)), columns), (0, 2, 1))
    return shear_rows(x, rows)


def transform_seeds(seed: int) -> dict[str, int]:
    """One independent seed per transform: equal seeds give equal draws (the bug this fixes)."""
    states = np.random.SeedSequence(seed).generate_state(len(TRANSFORMS))
    return {name: int(s) & 0x7FFFFFFF for name, s in zip(TRANSFORMS, states, strict=True)}


@keras.saving.register_keras_serializable(package="fashion_tcn")
class Augment(keras.layers.Layer):
    """Random, per-image transforms of (batch, 28, 28) images, in training only.

    Empty space left by shifts, rotations and zoom is filled with black, the Fashion-MNIST
    background. Always float32, whatever the model's precision policy.

    Args:
        translate: largest shift, as a fraction of the side, along each axis.
        flip: probability of a horizontal mirror image.
        rotate: largest rotation in degrees, either way.
        zoom: largest zoom in or out, as a fraction.
        erase: probability that an image gets one random rectangle erased (cutout).
        seed: the run's seed; each transform derives its own from it.

    Call arguments:
        images: (batch, 28, 28), values 0..255, any dtype.
        training: transform only when true.

    Returns:
        (batch, 28, 28) float32.
    """

    def __init__(
        self,
        translate: float = 0.0,
        flip: float = 0.0,
        rotate: float = 0.0,
        zoom: float = 0.0,
        erase: float = 0.0,
        seed: int = 0,
        **kwargs,
    ):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.translate = translate
        self.flip = flip
        self.rotate = rotate
        self.zoom = zoom
        self.erase = erase
        self.seed = seed

    def build(self, input_shape):
        seeds = transform_seeds(self.seed)
        self.flip_seed = keras.random.SeedGenerator(seeds["flip"], name="flip_seed")
        self.shift_seed = keras.random.SeedGenerator(seeds["translate"], name="shift_seed")
        self.zoom_seed = keras.random.SeedGenerator(seeds["zoom"], name="zoom_seed")
        self.rotate_seed = keras.random.SeedGenerator(seeds["rotate"], name="rotate_seed")
        self.eraser = None
        if self.erase:
            # a (p, p) range: a single float p would draw each image's probability from U(0, p)
            self.eraser = keras.layers.RandomErasing(
                (self.erase, self.erase),
                scale=(0.02, 0.2),
                fill_value=0.0,
                seed=seeds["erase"],
                dtype="float32",
            )
            self.eraser.build((*input_shape, 1))

    def call(self, images, training=None):
        x = ops.cast(images, "float32")
        if not training:
            return x
        batch = ops.shape(x)[0]
        if self.flip:
            draw = keras.random.uniform((batch, 1, 1), seed=self.flip_seed)
            x = ops.where(draw < self.flip, ops.flip(x, axis=2), x)
        if self.translate or self.zoom:
            # like RandomTranslation and RandomZoom: up to `translate` of each side, and each
            # side zoomed by 1 + z, z in [-zoom, zoom], independently
            shift = zoom = ops.zeros((batch, 2))
            if self.translate:
                most = ops.convert_to_tensor([self.translate * n for n in x.shape[1:]])
                shift = keras.random.uniform((batch, 2), -1, 1, seed=self.shift_seed) * most
            if self.zoom:
                zoom = keras.random.uniform((batch, 2), -self.zoom, self.zoom, seed=self.zoom_seed)
            x = resample(x, 1.0 + zoom, shift)
        if self.rotate:
            most = float(np.radians(self.rotate))
            x = rotate(x, keras.random.uniform((batch,), -most, most, seed=self.rotate_seed))
        if self.eraser is not None:
            x = self.eraser(x[..., None], training=True)[..., 0]
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "translate": self.translate,
            "flip": self.flip,
            "rotate": self.rotate,
            "zoom": self.zoom,
            "erase": self.erase,
            "seed": self.seed,
        }


def make_augment(cfg: AugmentConfig, seed: int = 0) -> Augment | None:
    """The configured augmentation layer; None when every transform is off."""
    if not cfg.active:
        return None
    values = {name: float(getattr(cfg, name) or 0.0) for name in TRANSFORMS}
    return Augment(**values, seed=seed, name="augment")
