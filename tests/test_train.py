"""The run's own callbacks: the epoch clock, the NaN stop, none waiting on single steps."""

import keras
import numpy as np
import pytest

from fashion_tcn.config import Config, override
from fashion_tcn.rundir import RunDir
from fashion_tcn.train import EpochTimer, StopOnNaN, run_callbacks

pytestmark = pytest.mark.backend


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


@pytest.mark.parametrize(
    "overrides", [{}, {"train.schedule": "plateau", "train.early_stopping": 3}]
)
def test_run_callbacks_let_steps_queue(tmp_path, overrides):
    """A callback with a batch hook that is not marked `async_safe` makes Keras wait for every
    step, as Keras's ModelCheckpoint and TerminateOnNaN do (with ModelCheckpoint among the
    callbacks an H200 ran rows-encoder at 0.65 of the model's own speed)."""
    cfg = override(Config(), overrides).resolved()
    for callback in run_callbacks(cfg, RunDir(tmp_path), 100):
        for hook in ("on_batch_end", "on_train_batch_end"):
            default = getattr(keras.callbacks.Callback, hook)
            hooked = getattr(type(callback), hook) is not default
            assert getattr(callback, "async_safe", False) or not hooked, (callback, hook)


def test_early_stopping_patience_counts_from_before_a_resume():
    """Best epoch 0, then two worse: with patience 3 the next worse epoch stops the run, as it
    would have without the interruption (a fresh EarlyStopping would wait three more)."""
    from fashion_tcn.train import ResumedEarlyStopping

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    logged = [{"epoch": e, "val_accuracy": v} for e, v in enumerate([0.9, 0.8, 0.85])]
    stop = ResumedEarlyStopping(logged, monitor="val_accuracy", mode="max", patience=3)
    stop.set_model(model)
    stop.on_train_begin()
    assert not model.stop_training
    stop.on_epoch_end(3, {"val_accuracy": 0.89})
    assert model.stop_training


def test_tensorboard_logs_load_in_tensorboards_event_reader(train_tiny, tmp_path):
    """`--tensorboard` writes what `tensorboard --logdir RUN/tensorboard` shows."""
    pytest.importorskip("tensorflow", reason="Keras's TensorBoard callback writes with tf.summary")
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    run = tmp_path / "run"
    assert train_tiny(run, "--epochs", "2", "--filters", "4", "--tensorboard") == 0
    for split, tags in (
        ("train", {"epoch_loss", "epoch_accuracy"}),
        ("validation", {"epoch_loss"}),
    ):
        events = accumulator.EventAccumulator(str(run / "tensorboard" / split))
        events.Reload()
        assert tags <= set(events.Tags()["tensors"]), events.Tags()
        tensor_util = pytest.importorskip("tensorboard.util.tensor_util")
        losses = [
            float(tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors("epoch_loss")
        ]
        assert len(losses) == 2 and all(np.isfinite(losses))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.function tracing")
def test_tensorflow_traces_the_train_step_once(tiny_data_dir, tmp_path):
    """The optimizer's and the metric's variables exist before fit: a first trace that creates
    variables makes TensorFlow trace again, seconds in every short run."""
    from fashion_tcn.train import train

    traced = []

    def count_traces(model: keras.Model) -> None:
        step = model.train_step
        model.train_step = lambda data: traced.append(1) or step(data)

    cfg = override(
        Config(),
        {"data.data_dir": str(tiny_data_dir), "train.epochs": 1, "model.filters": 4},
    )
    train(cfg, tmp_path / "run", verbose=0, on_model=count_traces)
    assert len(traced) == 1
