"""Train a model into a run directory (`rundir.RunDir` names its files).

Training fits and saves: config, data provenance, summary, history and checkpoints. Testing,
tables, plots and the report are separate steps (`evaluate.evaluate_run`, `report.build_report`)
that the CLI calls after it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import keras
import numpy as np

from fashion_tcn.config import Config, ConfigError, TrainConfig
from fashion_tcn.files import atomic_path
from fashion_tcn.models import CrossEntropy, LastStepAccuracy, build_classifier, takes_images
from fashion_tcn.rundir import RunDir, mark_epochs, marked_epochs
from fashion_tcn.sequences import make_dataset, make_permutation, training_batches
from fashion_tcn.splits import Splits, check_same_data, load_splits


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    lr = cfg.lr
    if cfg.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            cfg.lr, decay_steps=cfg.epochs * steps_per_epoch
        )
    common = {"learning_rate": lr, "clipnorm": cfg.clipnorm}
    if cfg.weight_decay:
        common["weight_decay"] = cfg.weight_decay
    if cfg.ema:  # validation and checkpoints then see the averaged weights
        common |= {
            "use_ema": True,
            "ema_momentum": cfg.ema,
            "ema_overwrite_frequency": steps_per_epoch,
        }
    optimizers = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "nadam": keras.optimizers.Nadam,
        "sgd": lambda **kw: keras.optimizers.SGD(momentum=cfg.momentum, nesterov=True, **kw),
        "rmsprop": lambda **kw: keras.optimizers.RMSprop(momentum=cfg.momentum, **kw),
    }
    optimizer = optimizers[cfg.optimizer](**common)
    if cfg.precision == "mixed_float16":
        # wrapped here, not by compile(), so the saved optimizer is the wrapper and a resume
        # restores its state (compile's own wrapper is saved as the bare optimizer)
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _carry_state(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
    """Copy the loaded optimizer's state (step count, moments, EMA) into a fresh one.

    The saved optimizer carries a cosine schedule sized for the epochs of the first run; a resume
    that asks for more epochs would go on at a learning rate of zero.
    """
    saved = model.optimizer
    optimizer.build(model.trainable_variables)
    for new, old in zip(optimizer.variables, saved.variables, strict=True):
        new.assign(old)


class EpochTimer(keras.callbacks.Callback):
    """Adds to the logs that CSVLogger writes next: `epoch_time` (s, validation included),
    `samples_per_s` over it, and `train_samples_per_s` over the training batches alone, the
    figure to hold against the model's own speed (benchmarks/config_speed.py)."""

    def __init__(self, samples: int):
        super().__init__()
        self.samples = samples

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
        self.trained = None

    def _done(self) -> float:
        """Seconds since the epoch began, once the last step has really run: on an accelerator
        steps are queued, so the clock waits for the optimizer's step count."""
        keras.ops.convert_to_numpy(self.model.optimizer.iterations)
        return time.perf_counter() - self.start

    def on_test_begin(self, logs=None):  # validation starts: the training batches are done
        if self.trained is None:
            self.trained = self._done()

    def on_epoch_end(self, epoch, logs=None):
        seconds = self._done()
        logs["epoch_time"] = seconds
        logs["samples_per_s"] = self.samples / seconds
        logs["train_samples_per_s"] = self.samples / (self.trained or seconds)


class StopOnNaN(keras.callbacks.Callback):
    """Ends training after an epoch whose loss is NaN or infinite. Keras's TerminateOnNaN checks
    every batch, which makes an accelerator wait for each step before queuing the next
    (benchmarks/config_speed.py); a NaN loss stays NaN in the epoch's mean, so an epoch-end look
    sees it too."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.model.stop_training = True


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the model (with its optimizer) at the end of every epoch, or, with `monitor`, of
    every epoch that beats the best value so far. Keras's ModelCheckpoint writes the file in
    place, so a kill or a full disk mid-save leaves a damaged model under the real name; this one
    writes beside it and renames. It hooks no batches, so an accelerator never waits for it."""

    def __init__(self, path: Path, monitor: str | None = None, best: float | None = None):
        super().__init__()
        self.path, self.monitor, self.best = Path(path), monitor, best

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is not None:
            value = (logs or {}).get(self.monitor)
            if value is None or (self.best is not None and value <= self.best):
                return
            self.best = value
        with atomic_path(self.path) as partial:
            self.model.save(partial)
            mark_epochs(partial, epoch + 1)


class ResumedEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that first replays the epochs a resumed run has logged, so its patience
    counts from the best epoch of the whole run, as in the uninterrupted run, not from the
    resume. A run that had stopped early goes on until its patience runs out again."""

    def __init__(self, logged: Sequence[dict], **kwargs):
        super().__init__(**kwargs)
        self.logged = logged

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        for epoch, row in enumerate(self.logged):
            super().on_epoch_end(epoch, {key: float(value) for key, value in row.items()})
        self.model.stop_training = False


class EpochSeeds(keras.callbacks.Callback):
    """Gives every random layer (augmentation, dropout) a seed drawn from (run seed, epoch) when
    an epoch begins. Keras neither saves a seed generator's state with the model nor keeps its
    seed, so without this a resumed run would draw other augmentations and dropout masks than
    the uninterrupted one; with it, the draws of epoch e depend on the seed and e alone."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        states = [v for v in self.model.variables if v.path.endswith("seed_generator_state")]
        seeds = np.random.SeedSequence([self.seed, epoch]).generate_state(len(states))
        for state, seed in zip(states, seeds, strict=True):  # >> 1: fits any backend's dtype
            dtype = keras.backend.standardize_dtype(state.dtype)
            state.assign(np.array([seed >> 1, 0]).astype(dtype))


def accelerator() -> bool:
    """Whether the Keras backend trains on a GPU (or another accelerator) here."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


def cpu_prefers_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU has AMX bfloat16 tiles (Intel Xeon since Sapphire Rapids), read from
    /proc/cpuinfo's flags (or `cpuinfo`); False where it cannot tell."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    return "amx_bf16" in flags.split()


def auto_precision(cfg: Config) -> str:
    """The precision `auto` stands for, as measured (docs/benchmarks.md): bfloat16 on an
    accelerator (an H200 trained the wide pixel TCN 1.31x faster with it) and on a CPU with AMX
    (an Intel Xeon: 1.75x), float32 on other CPUs (an AMD EPYC trained it far slower in
    bfloat16)."""
    return "mixed_bfloat16" if accelerator() or cpu_prefers_bfloat16() else "float32"


def default_run_dir(cfg: Config) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{cfg.model.kind}-{cfg.data.sequence}"


def _seed_everything(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def _permutation(cfg: Config, run: RunDir) -> np.ndarray | None:
    """The pixel order of a `permuted` run: drawn once from `data.permutation_seed` (by default
    the run's seed), then read back."""
    if cfg.data.sequence != "permuted":
        return None
    if not run.permutation_file.is_file():
        seed = cfg.data.permutation_seed
        run.save_npy(
            run.permutation_file, make_permutation(cfg.train.seed if seed is None else seed)
        )
    return run.permutation()


def run_callbacks(
    cfg: Config,
    run: RunDir,
    samples: int,
    extra: Sequence[keras.callbacks.Callback] = (),
    resume: bool = False,
) -> list[keras.callbacks.Callback]:
    """The run's callbacks: timing, checkpoints, history, NaN stop, schedule, early stop. None of
    them but TensorBoard (when asked for) hooks single batches, so Keras can queue steps ahead
    on an accelerator instead of waiting for each one."""
    callbacks = [
        EpochSeeds(cfg.train.seed),
        EpochTimer(samples),
        *extra,
        # the epoch's row before its checkpoints: a kill between them leaves a row that a resume
        # drops (_resume_point), never a checkpoint whose row is missing
        keras.callbacks.CSVLogger(run.history_file, append=resume),
        # on resume the best-so-far checkpoint must only be replaced by a better epoch
        EpochCheckpoint(run.model_file, monitor="val_accuracy", best=run.best_val_accuracy()),
        EpochCheckpoint(run.last_file),
        StopOnNaN(),
    ]
    if cfg.train.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=2))
    if cfg.train.early_stopping:
        callbacks.append(
            ResumedEarlyStopping(
                run.history() if resume else [],
                monitor="val_accuracy",
                mode="max",
                patience=cfg.train.early_stopping,
            )
        )
    if cfg.train.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(run.tensorboard_dir))
    return callbacks


def train(
    cfg: Config,
    run_dir: Path | RunDir | None = None,
    *,
    resume: bool = False,
    verbose: int | str = "auto",
    on_model: Callable[[keras.Model], None] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> RunDir:
    """Fit and checkpoint into a run directory, keeping the best epoch on validation accuracy
    as model.keras; the test set is not touched (`evaluate.evaluate_run` does that).

    With `resume`, `run_dir` must hold an earlier run's `last.keras`: training continues from the
    epoch after the last one logged, with the optimizer state saved in that file.
    `on_model` sees the built model before fitting (the CLI prints its summary there); extra
    `callbacks` join the run's own (a sweep's pruner).
    A KeyboardInterrupt propagates; every finished epoch is already checkpointed by then.
    """
    cfg = _resolved(cfg)
    run = RunDir(run_dir or default_run_dir(cfg))
    resumed = _resumable(run) if resume else _check_empty(run)
    _seed_everything(cfg.train.seed)
    splits = load_splits(cfg)  # before touching the run dir, so bad data leaves nothing behind
    _record(run, cfg, splits, resume)
    steps = math.ceil(len(splits.x_train) / cfg.train.batch_size)
    if resumed is None:
        model, first_epoch = _new_model(cfg, run, splits), 0
    else:
        model, first_epoch = resumed, _resume_point(run, resumed, steps)
    _compile(model, cfg.train, steps, carry=resumed is not None)
    _write_summary(run, model)
    if on_model is not None:
        on_model(model)
    train_ds, steps_per_epoch = training_batches(  # uint8 images: sequencing is the model's
        splits.x_train,
        splits.y_train,
        batch_size=cfg.train.batch_size,
        seed=cfg.train.seed,
        first_epoch=first_epoch,
        epochs=cfg.train.epochs,
    )
    model.fit(
        train_ds,
        validation_data=make_dataset(splits.x_val, splits.y_val, batch_size=cfg.train.batch_size),
        epochs=cfg.train.epochs,
        initial_epoch=first_epoch,
        steps_per_epoch=steps_per_epoch,
        shuffle=False,  # training_batches shuffles, seeded by epoch
        callbacks=run_callbacks(cfg, run, len(splits.x_train), callbacks, resume),
        verbose=verbose,
    )
    return run


def _resolved(cfg: Config) -> Config:
    """Defaults filled in and `--precision auto` decided, saved that way so that a resume or a
    re-run builds the same model."""
    cfg = cfg.resolved()
    if cfg.train.precision == "auto":
        cfg = replace(cfg, train=replace(cfg.train, precision=auto_precision(cfg)))
    return cfg


def _resumable(run: RunDir) -> keras.Model:
    """The model of `last.keras`, refused before anything in the run is rewritten."""
    if not run.last_file.is_file():
        raise ConfigError(f"{run}: nothing to resume (no {RunDir.last_file})")
    model = run.model(last=True)
    if not takes_images(model):
        raise ConfigError(
            f"{run}: saved by fashion-tcn before 0.2 (its model takes sequences, not "
            "images); it still evaluates, reports and predicts, but cannot be resumed"
        )
    return model


def _check_empty(run: RunDir) -> None:
    if not run.is_empty():
        raise ConfigError(
            f"{run}: run directory exists and is not empty; choose another "
            "--run-dir or continue it with --resume"
        )


def _record(run: RunDir, cfg: Config, splits: Splits, resume: bool) -> None:
    """Write the config and the data's provenance; a resume must see the same data."""
    if resume and run.data_file.is_file():
        check_same_data(json.loads(run.data_file.read_text()), splits, f"{run}: --resume")
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_config(cfg)
    run.write_json(run.data_file, splits.provenance)


def _new_model(cfg: Config, run: RunDir, splits: Splits) -> keras.Model:
    """A fresh classifier, its input normalised by the training pixels' mean and variance."""
    permutation = _permutation(cfg, run)
    pixels = splits.x_train.astype("float32") / 255.0
    return build_classifier(cfg, float(pixels.mean()), float(pixels.var()), permutation)


def _compile(model: keras.Model, cfg: TrainConfig, steps: int, carry: bool) -> None:
    """Compile with the run's loss and optimizer; `carry` keeps a resumed optimizer's state,
    with a schedule as long as the --epochs asked for now."""
    optimizer = make_optimizer(cfg, steps)
    if carry:
        _carry_state(model, optimizer)
    anytime = cfg.anytime_loss > 0
    model.compile(
        optimizer=optimizer,
        loss=CrossEntropy(cfg.anytime_loss, cfg.label_smoothing),
        metrics=[
            LastStepAccuracy(name="accuracy")
            if anytime
            else keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        ],
    )
    # the optimizer's and the metric's variables now, not in fit's first trace: TensorFlow traces
    # a function that creates variables a second time (seconds per run; zeros either way)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def _write_summary(run: RunDir, model: keras.Model) -> None:
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line + "\n"))
    run.write_text(run.summary_file, "".join(lines))


def _resume_point(run: RunDir, model: keras.Model, steps: int) -> int:
    """The epoch to go on from: as many as `last.keras` has trained (written into it with the
    weights), with history.csv cut to them (a run killed between an epoch's row and its
    checkpoint has logged an epoch that the resumed run trains again).

    Checkpoints written before the count was stored fall back on the optimizer's step count,
    which under mixed_float16 misses the steps skipped for a non-finite gradient."""
    epochs = marked_epochs(run.last_file)
    if epochs is None:
        epochs = int(model.optimizer.iterations) // steps
    run.keep_history(epochs)
    return epochs
