"""Image augmentation as the model's first layer: flip, shift, rotate, zoom, erase.

`Augment` runs on the 28x28 images inside the model, so it is compiled into the training step
and runs where the model runs (on the accelerator, when there is one), instead of in a Python
input pipeline that the model waits for. It transforms only when called with `training=True`
(Keras's `fit`); evaluation, prediction, streaming and export see the images unchanged, and the
saved model carries the settings.

Every transform draws from its own seed, derived from the run's seed, so no two transforms
repeat each other's random numbers.

Shifts are two small matrix products per image (`shift_matrices`), the same bilinear result with
black fill as Keras's `RandomTranslation`, which costs several times the whole training step on
JAX (its per-pixel gather; `benchmarks/augment_speed.py`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from fashion_tcn.config import AugmentConfig

TRANSFORMS = ("flip", "translate", "rotate", "zoom", "erase")


def shift_matrices(shifts, size: int = 28):
    """(B,) shifts in pixels -> (B, size, size) interpolation matrices: output pixel i reads the
    input at i - shift, linearly between its two nearest pixels, and 0 outside the image."""
    i = ops.arange(size, dtype="float32")[:, None]
    j = ops.arange(size, dtype="float32")[None, :]
    return ops.relu(1.0 - ops.abs(j - i + ops.reshape(shifts, (-1, 1, 1))))


def shift(images, dy, dx):
    """(B, H, W) images moved by (B,) pixel shifts down (dy) and right (dx), bilinear, black
    fill: rows then columns, since a translation is separable."""
    rows = shift_matrices(dy, images.shape[1])
    columns = shift_matrices(dx, images.shape[2])
    return ops.matmul(ops.matmul(rows, images), ops.transpose(columns, (0, 2, 1)))


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
        geometry = {"fill_mode": "constant", "fill_value": 0.0, "dtype": "float32"}
        self.flip_seed = keras.random.SeedGenerator(seeds["flip"], name="flip_seed")
        self.shift_seed = keras.random.SeedGenerator(seeds["translate"], name="shift_seed")
        self.transforms = []
        if self.rotate:
            self.transforms.append(
                keras.layers.RandomRotation(self.rotate / 360.0, seed=seeds["rotate"], **geometry)
            )
        if self.zoom:
            self.transforms.append(
                keras.layers.RandomZoom(self.zoom, self.zoom, seed=seeds["zoom"], **geometry)
            )
        if self.erase:
            # a (p, p) range: a single float p would draw each image's probability from U(0, p)
            self.transforms.append(
                keras.layers.RandomErasing(
                    (self.erase, self.erase),
                    scale=(0.02, 0.2),
                    fill_value=0.0,
                    seed=seeds["erase"],
                    dtype="float32",
                )
            )
        for layer in self.transforms:
            layer.build((*input_shape, 1))

    def call(self, images, training=None):
        x = ops.cast(images, "float32")
        if not training:
            return x
        batch = ops.shape(x)[0]
        if self.flip:
            draw = keras.random.uniform((batch, 1, 1), seed=self.flip_seed)
            x = ops.where(draw < self.flip, ops.flip(x, axis=2), x)
        if self.translate:
            # up to `translate` of the height and of the width, like RandomTranslation
            moves = keras.random.uniform(
                (batch, 2), -self.translate, self.translate, seed=self.shift_seed
            )
            x = shift(x, moves[:, 0] * x.shape[1], moves[:, 1] * x.shape[2])
        x = x[..., None]  # (B, 28, 28, 1)
        for layer in self.transforms:
            x = layer(x, training=True)
        return x[..., 0]

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
