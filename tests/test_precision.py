"""--precision: every policy trains, saves, reloads, streams and exports; softmax stays float32."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from fashion_tcn.config import Config, ConfigError, override
from fashion_tcn.data import load_fashion_mnist
from fashion_tcn.layers import TCN
from fashion_tcn.models import dtype_policy, step_predictions
from fashion_tcn.predict import Predictor
from fashion_tcn.stream import StreamingClassifier
from fashion_tcn.train import auto_precision

pytestmark = [pytest.mark.backend, pytest.mark.minutes(4)]

# how far a low-precision stream may be from the full pass of the same model, step by step
# (28-step rows here; 784 steps with mean pooling: test_bfloat16_mean_pooling_...)
TOLERANCE = {"float32": 1e-5, "mixed_bfloat16": 0.05, "mixed_float16": 0.01}


@pytest.fixture(scope="module", params=["float32", "mixed_bfloat16", "mixed_float16"])
def run(request, train_tiny, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp(request.param) / "run"
    flags = ("--epochs", "2", "--filters", "8", "--dilations", "1,2,4", "--flip", "0.5")
    assert train_tiny(run_dir, *flags, "--precision", request.param) == 0
    return request.param, run_dir


@pytest.fixture(scope="module")
def images(tiny_data_dir):
    return load_fashion_mnist(tiny_data_dir)[1].images[:6]


def test_policy_is_saved_and_kept_on_reload(run):
    precision, run_dir = run
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["train"]["precision"] == precision
    model = keras.saving.load_model(run_dir / "model.keras")
    assert model.get_layer("tcn").dtype_policy.name == precision
    assert model.get_layer("classifier").dtype_policy.name == "float32"
    for name in ("augment", "to_sequence"):
        assert model.get_layer(name).compute_dtype == "float32"
    assert all(w.dtype == "float32" for w in model.trainable_weights)  # master weights


def test_probabilities_are_float32_and_sum_to_one(run, images):
    _, run_dir = run
    probs = Predictor(run_dir).probabilities(images)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_streaming_follows_the_full_pass(run, images):
    precision, run_dir = run
    predictor = Predictor(run_dir)
    full = step_predictions(predictor.model, images)
    stream = StreamingClassifier(predictor.model, batch=len(images))
    # NumPy reproduces float32 arithmetic only: a mixed policy streams in its own, through Keras
    assert stream.engine == ("numpy" if precision == "float32" else "keras")
    np.testing.assert_allclose(
        stream.run(predictor.sequences(images)), full, atol=TOLERANCE[precision]
    )


def test_savedmodel_export_gives_the_same_predictions(run, images, tmp_path):
    tf = pytest.importorskip("tensorflow", reason="export writes TensorFlow formats")

    from fashion_tcn.cli import main

    _, run_dir = run
    out = tmp_path / "sm"
    assert main(["export", str(run_dir), "--format", "savedmodel", "--out", str(out)]) == 0
    loaded = tf.saved_model.load(str(out))
    expected = Predictor(run_dir, calibrated=False).probabilities(images)
    np.testing.assert_allclose(loaded.serve(images).numpy(), expected, atol=1e-5)


def test_auto_is_bfloat16_on_an_accelerator_or_an_amx_cpu_else_float32(monkeypatch):
    import fashion_tcn.train as train_module

    pixels = override(Config(), {"data.sequence": "pixels"}).resolved()
    assert pixels.train.precision == "auto"
    for gpu, amx, expected in [
        (False, False, "float32"),
        (False, True, "mixed_bfloat16"),
        (True, False, "mixed_bfloat16"),
    ]:
        monkeypatch.setattr(train_module, "accelerator", lambda gpu=gpu: gpu)
        monkeypatch.setattr(train_module, "cpu_prefers_bfloat16", lambda amx=amx: amx)
        assert auto_precision(pixels) == expected


SAPPHIRE_RAPIDS = "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
EPYC = "flags\t\t: fpu sse2 avx2 fma\nbugs\t\t: amx_bf16_is_not_a_flag_here\n"


def test_the_cpu_probe_reads_amx_from_the_flags():
    from fashion_tcn.train import cpu_prefers_bfloat16

    assert cpu_prefers_bfloat16(SAPPHIRE_RAPIDS) is True
    assert cpu_prefers_bfloat16(EPYC) is False
    assert cpu_prefers_bfloat16("") is False
    cpuinfo = Path("/proc/cpuinfo")
    here = cpuinfo.read_text() if cpuinfo.exists() else ""
    assert cpu_prefers_bfloat16() == (" amx_bf16" in here)


def test_the_device_probe_sees_no_accelerator_when_none_is_visible():
    """The probe itself, in a process where no GPU is visible, whatever this machine has."""
    code = "from fashion_tcn.train import accelerator; print(accelerator())"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "False", out.stderr


def test_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="unknown precision 'half'"):
        override(Config(), {"train.precision": "half"})


def test_resume_restores_the_optimizer_state(run, tiny_data_dir, recwarn):
    """Last of the module's run tests: it extends the run. mixed_float16's loss-scale wrapper is
    saved with the run, so nothing of the optimizer is skipped on reload."""
    from fashion_tcn.cli import main

    _, run_dir = run
    flags = ["--data-dir", str(tiny_data_dir), "--run-dir", str(run_dir), "--quiet", "--no-test",
             "--no-report"]  # fmt: skip
    assert main(["train", *flags, "--resume", "--epochs", "3"]) == 0
    assert not [w for w in recwarn if "Skipping variable loading" in str(w.message)]
    assert len((run_dir / "history.csv").read_text().splitlines()) == 1 + 3


class _StopAfter(keras.callbacks.Callback):
    """Ends fit after an epoch, its checkpoints written: an interruption between epochs."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            self.model.stop_training = True


def _last_state(run_dir) -> tuple[list[np.ndarray], list[float]]:
    """last.keras's weights, and its optimizer's step count and loss scale."""
    model = keras.saving.load_model(run_dir / "last.keras")
    optimizer = model.optimizer
    counts = [optimizer.iterations, optimizer.dynamic_scale, optimizer.step_counter]
    return model.get_weights(), [float(keras.ops.convert_to_numpy(c)) for c in counts]


# the epoch count in the checkpoint is a file entry; exact resume on JAX: test_resume
@pytest.mark.one_backend
@pytest.mark.parametrize("skipped", [False, True], ids=["no-skip", "skipped-step"])
def test_mixed_float16_resume_ends_where_the_uninterrupted_run_ends(
    train_tiny, tmp_path, monkeypatch, skipped
):
    """Interrupted after epoch 2 of 3 and resumed: the same history, optimizer steps, loss scale
    and weights as the straight run. With `skipped`, a huge initial loss scale makes float16
    gradients overflow, so the first steps are skipped and the optimizer's step count falls
    behind the epochs trained (it cannot tell where to resume)."""
    import functools

    import fashion_tcn.train as train_module

    if skipped:
        overflowing = functools.partial(keras.optimizers.LossScaleOptimizer, initial_scale=2.0**24)
        monkeypatch.setattr(train_module.keras.optimizers, "LossScaleOptimizer", overflowing)
    flags = ("--epochs", "3", "--filters", "8", "--dilations", "1,2,4", "--precision",
             "mixed_float16", "--batch-size", "128")  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train_tiny(straight, *flags) == 0
    steps = 3  # 360 training images of the tiny data in batches of 128
    iterations = int(keras.saving.load_model(straight / "last.keras").optimizer.iterations)
    assert (iterations < 3 * steps) == skipped

    make = train_module.run_callbacks
    monkeypatch.setattr(
        train_module, "run_callbacks", lambda *a, **k: [*make(*a, **k), _StopAfter(2)]
    )
    assert train_tiny(resumed, *flags) == 0
    assert len((resumed / "history.csv").read_text().splitlines()) == 1 + 2
    monkeypatch.setattr(train_module, "run_callbacks", make)
    assert train_tiny(resumed, *flags, "--resume") == 0

    def epochs(run_dir):
        return [row.split(",")[0] for row in (run_dir / "history.csv").read_text().splitlines()]

    assert epochs(resumed) == epochs(straight)
    (weights, counts), (expected, expected_counts) = _last_state(resumed), _last_state(straight)
    assert counts == expected_counts
    # float16 arithmetic after a reload differs in the last bits, which training amplifies
    # (float32 resumes to the bit, test_resume.py); the step counts above are exact
    for got, want in zip(weights, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=0.05, atol=0.005)


def _mean_pooled_tcn(policy: str):
    with dtype_policy(policy):  # built inside: the blocks take the policy when they are built
        layer = TCN(filters=4, kernel_size=2, dilations=[1, 8, 64], pooling="mean")
        layer.build((None, 784, 1))
    return layer


def test_bfloat16_mean_pooling_counts_every_one_of_784_steps():
    """bfloat16 holds integers exactly only up to 256: a step count or running sum kept in it
    drifts on pixel sequences (the stream's count stuck at 256). The same weights in float32
    give the reference at every step; the stream must follow the full pass past step 255."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((2, 784, 1)).astype("float32")
    reference, low = _mean_pooled_tcn("float32"), _mean_pooled_tcn("mixed_bfloat16")
    low.set_weights(reference.get_weights())

    def numpy(t):
        return keras.ops.convert_to_numpy(keras.ops.cast(t, "float32"))

    expected = numpy(reference(x, all_steps=True))
    full = numpy(low(x, all_steps=True))
    scale = float(np.abs(expected).max())
    assert scale > 0.1
    tolerance = 0.02 * scale  # bfloat16 rounding; the counts went 30% wrong
    np.testing.assert_allclose(full, expected, atol=tolerance)
    np.testing.assert_allclose(numpy(low(x)), expected[:, -1], atol=tolerance)
    cache = [np.zeros((2, *shape), "float32") for shape in low.cache_shapes()]
    chunks = []
    for start, stop in [(0, 255), (255, 256), (256, 257), (257, 384), (384, 784)]:
        y, cache = low(x[:, start:stop], cache=cache)
        chunks.append(numpy(y))
    assert numpy(cache[-1]).ravel().tolist() == [784.0, 784.0]  # the running count
    streamed = np.concatenate(chunks, axis=1)[:, 255:]
    np.testing.assert_allclose(streamed, full[:, 255:], atol=tolerance)
