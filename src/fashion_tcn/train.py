"""Train a model into a run directory, and evaluate a run directory on the test set.

Run directory layout (everything `evaluate`, `--resume` and reports need):
    config.yaml            resolved config (per-mode defaults filled in)
    permutation.npy        pixel order, `permuted` mode only
    model.keras            best epoch on validation accuracy;  last.keras: last epoch (resume)
    history.csv            one row per epoch (CSVLogger), with epoch time and samples/s
    summary.txt            model.summary()
    metrics.json, confusion_matrix.csv/.png, truth_table.csv, training_curves.png
    predictions.npz        test labels and class probabilities
    mistakes.npz           the most confident mistakes: images, labels, predictions, confidence
    anytime.csv/.png       TCN only: test accuracy after 10%, 20%, ... of the sequence
    report.html            everything above on one self-contained page
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import keras
import numpy as np

from fashion_tcn import evaluate, plots, report
from fashion_tcn.config import Config, ConfigError, TrainConfig, load_config, save_config
from fashion_tcn.data import CLASS_NAMES, Split, load_fashion_mnist
from fashion_tcn.files import atomic_path, write_text
from fashion_tcn.models import (
    CrossEntropy,
    LastStepAccuracy,
    build_classifier,
    final_probabilities,
    load_model,
    model_inputs,
    step_predictions,
    takes_images,
)
from fashion_tcn.sequences import (
    make_dataset,
    make_permutation,
    sequence_shape,
    training_batches,
)


@dataclass
class Splits:
    """Arrays a run trains, validates and tests on, after limits and the validation split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    provenance: dict


def _subset(
    split: Split, limit: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    if limit is None or limit >= len(split):
        return split.images, split.labels
    keep = np.sort(rng.permutation(len(split))[:limit])
    return split.images[keep], split.labels[keep]


def load_splits(cfg: Config) -> Splits:
    """Real Fashion-MNIST, limited and split; the validation set comes from training data only."""
    train, test = load_fashion_mnist(cfg.data.data_dir)
    rng = np.random.default_rng(cfg.train.seed)
    x, y = _subset(train, cfg.data.limit_train, rng)
    x_test, y_test = _subset(test, cfg.data.limit_test, rng)
    order = rng.permutation(len(x))
    n_val = max(1, round(cfg.data.val_fraction * len(x)))
    val, fit = order[:n_val], order[n_val:]
    return Splits(
        x[fit], y[fit], x[val], y[val], x_test, y_test, {"train": train.files, "test": test.files}
    )


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


def auto_precision(cfg: Config) -> str:
    """The precision `auto` stands for, as measured (README, "Speed"): bfloat16 on an
    accelerator (an H100 trained pixels-wide.yaml 4.8x faster with it), float32 on a CPU
    (TensorFlow's bfloat16 convolutions trained it 10x slower on this project's AVX-512 CPU)."""
    return "mixed_bfloat16" if accelerator() else "float32"


def default_run_dir(cfg: Config) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{cfg.model.kind}-{cfg.data.sequence}"


def _seed_everything(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def _read_history(run_dir: Path) -> list[dict]:
    path = run_dir / "history.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def _permutation(cfg: Config, run_dir: Path) -> np.ndarray | None:
    if cfg.data.sequence != "permuted":
        return None
    path = run_dir / "permutation.npy"
    if not path.is_file():
        with atomic_path(path) as partial:
            np.save(partial, make_permutation(cfg.train.seed))
    return np.load(path)


def run_callbacks(
    cfg: Config,
    run_dir: Path,
    samples: int,
    extra: Sequence[keras.callbacks.Callback] = (),
    resume: bool = False,
) -> list[keras.callbacks.Callback]:
    """The run's callbacks: timing, checkpoints, history, NaN stop, schedule, early stop. None of
    them but TensorBoard (when asked for) hooks single batches, so Keras can queue steps ahead
    on an accelerator instead of waiting for each one."""
    # on resume the best-so-far checkpoint must only be replaced by a better epoch
    best = best_val_accuracy(run_dir)
    callbacks = [
        EpochSeeds(cfg.train.seed),
        EpochTimer(samples),
        *extra,
        # the epoch's row before its checkpoints: a kill between them leaves a row that a resume
        # drops (_resume_point), never a checkpoint whose row is missing
        keras.callbacks.CSVLogger(run_dir / "history.csv", append=resume),
        EpochCheckpoint(run_dir / "model.keras", monitor="val_accuracy", best=best),
        EpochCheckpoint(run_dir / "last.keras"),
        StopOnNaN(),
    ]
    if cfg.train.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=2))
    if cfg.train.early_stopping:
        callbacks.append(
            ResumedEarlyStopping(
                _read_history(run_dir) if resume else [],
                monitor="val_accuracy",
                mode="max",
                patience=cfg.train.early_stopping,
            )
        )
    if cfg.train.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(run_dir / "tensorboard"))
    return callbacks


def train(
    cfg: Config,
    run_dir: Path | None = None,
    *,
    resume: bool = False,
    verbose: int | str = "auto",
    on_model: Callable[[keras.Model], None] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    test: bool = True,
) -> tuple[Path, dict]:
    """Fit, keep the best epoch on validation accuracy, test it once; returns (run_dir, metrics).

    With `resume`, `run_dir` must hold an earlier run's `last.keras`: training continues from the
    epoch after the last one logged, with the optimizer state saved in that file.
    `on_model` sees the built model before fitting (the CLI prints its summary there); extra
    `callbacks` join the run's own (a sweep's pruner). With `test=False` the test set is left
    alone and the metrics are the validation ones (`best_val_accuracy`).
    A KeyboardInterrupt propagates; every finished epoch is already checkpointed by then.
    """
    cfg = cfg.resolved()
    if cfg.train.precision == "auto":  # saved resolved, so a resume or re-run builds the same
        cfg = replace(cfg, train=replace(cfg.train, precision=auto_precision(cfg)))
    run_dir = run_dir or default_run_dir(cfg)
    if resume:
        if not (run_dir / "last.keras").is_file():
            raise ConfigError(f"{run_dir}: nothing to resume (no last.keras)")
        model = load_model(run_dir / "last.keras")
        if not takes_images(model):  # refused before anything in the run is rewritten
            raise ConfigError(
                f"{run_dir}: saved by fashion-tcn before 0.2 (its model takes sequences, not "
                "images); it still evaluates, reports and predicts, but cannot be resumed"
            )
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(
            f"{run_dir}: run directory exists and is not empty; choose another "
            "--run-dir or continue it with --resume"
        )
    _seed_everything(cfg.train.seed)
    splits = load_splits(cfg)  # before touching the run dir, so bad data leaves nothing behind
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    write_text(run_dir / "data.json", json.dumps(splits.provenance, indent=2))
    permutation = _permutation(cfg, run_dir)
    steps = math.ceil(len(splits.x_train) / cfg.train.batch_size)

    if resume:
        initial_epoch = _resume_point(run_dir, model, steps)
    else:
        pixels = splits.x_train.astype("float32") / 255.0
        model = build_classifier(cfg, float(pixels.mean()), float(pixels.var()), permutation)
        del pixels
        initial_epoch = 0
    # uint8 images only: sequencing and augmentation (training only) are the model's layers
    train_ds, steps_per_epoch = training_batches(
        splits.x_train,
        splits.y_train,
        batch_size=cfg.train.batch_size,
        seed=cfg.train.seed,
        first_epoch=initial_epoch,
        epochs=cfg.train.epochs,
    )
    val_ds = make_dataset(splits.x_val, splits.y_val, batch_size=cfg.train.batch_size)
    optimizer = make_optimizer(cfg.train, steps)
    if resume:  # same state, but a schedule as long as the --epochs asked for now
        _carry_state(model, optimizer)
    anytime = cfg.train.anytime_loss > 0
    model.compile(
        optimizer=optimizer,
        loss=CrossEntropy(cfg.train.anytime_loss, cfg.train.label_smoothing),
        metrics=[LastStepAccuracy(name="accuracy") if anytime else "accuracy"],
    )
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line + "\n"))
    write_text(run_dir / "summary.txt", "".join(lines))
    if on_model is not None:
        on_model(model)

    callbacks = run_callbacks(cfg, run_dir, len(splits.x_train), callbacks, resume)
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.train.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch,
        shuffle=False,  # training_batches shuffles, seeded by epoch
        callbacks=callbacks,
        verbose=verbose,
    )
    if not test:
        return run_dir, {"best_val_accuracy": best_val_accuracy(run_dir)}
    return run_dir, evaluate_run(run_dir, splits=splits)


def _resume_point(run_dir: Path, model: keras.Model, steps: int) -> int:
    """The epoch to go on from: as many as `last.keras` has trained (its optimizer's step count),
    with history.csv cut to them (a run killed between an epoch's row and its checkpoint has
    logged an epoch that the resumed run trains again)."""
    epochs = int(model.optimizer.iterations) // steps
    path = run_dir / "history.csv"
    if path.is_file():
        lines = path.read_text().splitlines(keepends=True)
        if len(lines) > epochs + 1:
            write_text(path, "".join(lines[: epochs + 1]))
    return epochs


def best_val_accuracy(run_dir: Path) -> float | None:
    """The validation accuracy of the epoch saved as model.keras (None before the first epoch)."""
    return max((float(row["val_accuracy"]) for row in _read_history(run_dir)), default=None)


def evaluate_run(
    run_dir: Path, data_dir: str | None = None, *, splits: Splits | None = None
) -> dict:
    """Test the run's best model once; (re)write metrics, tables and plots into `run_dir`."""
    for name in ("config.yaml", "model.keras"):
        if not (run_dir / name).is_file():
            raise ConfigError(f"{run_dir}: not a run directory (no {name})")
    cfg = load_config(run_dir / "config.yaml")
    if data_dir is not None:
        cfg.data.data_dir = data_dir
    if splits is None:
        splits = load_splits(cfg)
    model = load_model(run_dir / "model.keras")
    x_test = model_inputs(model, splits.x_test, cfg.data.sequence, _permutation(cfg, run_dir))
    probs = final_probabilities(model.predict(x_test, batch_size=512, verbose=0))
    metrics = evaluate.compute_metrics(splits.y_test, probs, CLASS_NAMES)
    if cfg.model.kind == "tcn":  # causal: the prediction after 10%, 20%, ... of the sequence
        steps = sequence_shape(cfg.data.sequence)[0]
        at = [max(1, round(f * steps)) - 1 for f in evaluate.ANYTIME_FRACTIONS]
        partial = np.concatenate(
            [step_predictions(model, x_test[i : i + 512], at) for i in range(0, len(x_test), 512)]
        )
        metrics["anytime"] = evaluate.anytime_accuracy(splits.y_test, partial, steps, at)
    history = _read_history(run_dir)
    metrics.update(
        run_dir=str(run_dir),
        model=cfg.model.kind,
        sequence=cfg.data.sequence,
        parameters=model.count_params(),
        epochs=len(history),
        mean_epoch_time=float(np.mean([float(r["epoch_time"]) for r in history]))
        if history
        else None,
        mean_samples_per_s=(
            float(np.mean([float(r["samples_per_s"]) for r in history])) if history else None
        ),
        receptive_field=model.get_layer("tcn").receptive_field if cfg.model.kind == "tcn" else None,
        test_set="full" if cfg.data.limit_test is None else f"random {len(splits.y_test)}",
    )
    evaluate.write_metrics(run_dir, metrics)
    with atomic_path(run_dir / "predictions.npz") as partial:
        np.savez_compressed(partial, labels=splits.y_test, probs=probs)
    worst = evaluate.confident_mistakes(splits.y_test, probs)
    with atomic_path(run_dir / "mistakes.npz") as partial:
        np.savez_compressed(
            partial,
            images=splits.x_test[worst],
            labels=splits.y_test[worst],
            predicted=probs[worst].argmax(axis=1),
            confidence=probs[worst].max(axis=1),
        )
    cm = np.asarray(metrics["confusion_matrix"])
    plots.plot_confusion_matrix(cm, CLASS_NAMES, run_dir / "confusion_matrix.png")
    if history:
        plots.plot_history(run_dir / "history.csv", run_dir / "training_curves.png")
    if metrics.get("anytime"):
        plots.plot_anytime(metrics["anytime"], run_dir / "anytime.png")
    report.build_report([run_dir])
    return metrics
