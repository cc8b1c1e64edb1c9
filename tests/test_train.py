"""The run's own callbacks: the epoch clock and the NaN stop."""

import keras
import numpy as np

from fashion_tcn.train import EpochTimer, StopOnNaN


def _fit(x: np.ndarray, callbacks: list, epochs: int = 4) -> keras.callbacks.History:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    y = np.zeros(len(x), "int32")
    return model.fit(x, y, batch_size=4, epochs=epochs, verbose=0, callbacks=callbacks)


def test_nan_loss_stops_after_its_epoch():
    x = np.full((16, 3), np.nan, "float32")
    assert len(_fit(x, [StopOnNaN()]).epoch) == 1
    assert len(_fit(np.ones((16, 3), "float32"), [StopOnNaN()]).epoch) == 4


def test_epoch_timer_logs_speeds():
    history = _fit(np.ones((16, 3), "float32"), [EpochTimer(16)], epochs=2)
    for name in ("epoch_time", "samples_per_s", "train_samples_per_s"):
        assert len(history.history[name]) == 2 and min(history.history[name]) > 0
