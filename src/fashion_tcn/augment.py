"""Image augmentation for the training pipeline: shift, flip, rotate, zoom, erase.

Transforms run on the 28x28 image *before* it becomes a sequence, inside `tf.data`, and only for
training batches (`train.py` passes them to the training dataset alone). They are Keras
preprocessing layers, so they run per sample, on any backend, seeded.
"""

from __future__ import annotations

import keras
from keras import ops

from fashion_tcn.config import AugmentConfig


class Augmenter:
    """Callable (B, 28, 28) uint8 -> (B, 28, 28) uint8, random per sample.

    Empty space left by shifts, rotations and zoom is filled with black, the Fashion-MNIST
    background. Flip and erase happen with the configured probabilities.
    """

    def __init__(self, cfg: AugmentConfig, seed: int = 0):
        self.cfg = cfg
        self.seed = keras.random.SeedGenerator(seed)
        layers = []
        geometry = {"fill_mode": "constant", "fill_value": 0.0, "seed": seed}
        if cfg.translate:
            layers.append(keras.layers.RandomTranslation(cfg.translate, cfg.translate, **geometry))
        if cfg.rotate:
            layers.append(keras.layers.RandomRotation(cfg.rotate / 360.0, **geometry))
        if cfg.zoom:
            layers.append(keras.layers.RandomZoom(cfg.zoom, cfg.zoom, **geometry))
        if cfg.erase:
            layers.append(
                keras.layers.RandomErasing(cfg.erase, scale=(0.02, 0.2), fill_value=0.0, seed=seed)
            )
        self.pipeline = keras.layers.Pipeline(layers) if layers else None

    def __call__(self, images):
        x = ops.cast(images, "float32")[..., None]  # (B, 28, 28, 1)
        if self.cfg.flip:
            flip = keras.random.uniform((ops.shape(x)[0], 1, 1, 1), seed=self.seed) < self.cfg.flip
            x = ops.where(flip, ops.flip(x, axis=2), x)
        if self.pipeline is not None:
            x = self.pipeline(x, training=True)
        return ops.cast(ops.round(ops.clip(x[..., 0], 0.0, 255.0)), "uint8")


def make_augmenter(cfg: AugmentConfig, seed: int = 0) -> Augmenter | None:
    """None when every transform is off, so the pipeline skips the map entirely."""
    return Augmenter(cfg, seed) if cfg.active else None
