"""User inputs -> Fashion-MNIST-like images -> predictions and explanation figures.

Inputs: PNG/JPG (any size and colour: grey, fitted into 28x28 keeping the aspect ratio, inverted
when the background is light, since Fashion-MNIST is a light object on black), Kaggle-style CSV
rows (785 columns with the label first, or 784 pixels), and .npy arrays ((28, 28), (N, 28, 28)
or (N, 784); values 0..255, or 0..1 floats). One bad input never stops the others: it becomes an
`InputError` in the list `load_inputs` returns.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fashion_tcn.data import CLASS_NAMES, is_number
from fashion_tcn.layers import TCN
from fashion_tcn.metrics import with_temperature
from fashion_tcn.models import final_probabilities, model_inputs
from fashion_tcn.rundir import RunDir
from fashion_tcn.sequences import sequence_shape, to_sequences

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


class InputError(ValueError):
    """An input that cannot be read as an image; the message is one line naming it."""


@dataclass
class Item:
    name: str  # file, or file:row / file[index] for multi-image inputs
    image: np.ndarray | None  # (28, 28) uint8
    error: str | None = None


def fit_image(image: Image.Image) -> np.ndarray:
    """Any picture -> (28, 28) uint8, light object on black, like Fashion-MNIST."""
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if border.mean() > 127:  # light background: invert
        grey = 255.0 - grey
    height, width = grey.shape
    side = max(height, width)  # pad to a square with the background, then shrink
    square = np.zeros((side, side), np.float32)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = grey
    fitted = Image.fromarray(square.astype(np.uint8)).resize((28, 28), Image.Resampling.LANCZOS)
    return np.asarray(fitted, dtype=np.uint8)


def _to_pixels(names: list[str], values: np.ndarray, floats: bool | None = None) -> list[Item]:
    """(N, 784) numbers -> one item per row: 0..255 kept, 0..1 floats scaled, anything else
    that row's own error. Whole arrays at once, so that a request of one image pays for a few
    numpy calls and a large batch for no Python loop over pixels. `floats`: whether the numbers
    were written as floats (default: the array's dtype)."""
    if values.dtype == np.uint8:  # already pixels: nothing can be wrong with them
        return [Item(n, image) for n, image in zip(names, values.reshape(-1, 28, 28), strict=True)]
    if floats is None:
        floats = np.issubdtype(values.dtype, np.floating)
    values = values.astype(np.float64)
    finite = np.isfinite(values).all(axis=1)
    values = np.where(finite[:, None], values, 0.0)
    if floats:
        values = np.where(values.max(axis=1, keepdims=True) <= 1.0, values * 255.0, values)
    inside = (values.min(axis=1) >= 0) & (values.max(axis=1) <= 255)
    pixels = np.round(np.clip(values, 0, 255)).astype(np.uint8).reshape(-1, 28, 28)
    return [
        Item(n, image) if ok and fine else Item(n, None, f"{n}: {_NOT_PIXELS[bool(ok)]}")
        for n, image, ok, fine in zip(names, pixels, finite, inside, strict=True)
    ]


_NOT_PIXELS = {False: "contains NaN or infinite values", True: "pixel values outside 0..255"}


MAX_PIXELS = 25_000_000  # a photo of a garment; far more is a mistake or a decompression bomb


def _read_image(name: str, data: bytes) -> list[Item]:
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InputError(
                    f"{name}: image of {width}x{height} pixels, more than {MAX_PIXELS:,} "
                    "(a decompression bomb?)"
                )
            return [Item(name, fit_image(image))]
    except UnidentifiedImageError:
        raise InputError(f"{name}: not an image Pillow can read") from None
    except Image.DecompressionBombError:  # Pillow's own limit, met before ours
        raise InputError(
            f"{name}: image of more than {Image.MAX_IMAGE_PIXELS:,} pixels (a decompression bomb?)"
        ) from None
    except InputError:
        raise
    except Exception as error:  # damaged data: Pillow raises OSError, SyntaxError, zlib errors...
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise InputError(f"{name}: damaged image ({reason})") from None


def _read_csv(name: str, data: bytes) -> list[Item]:
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    except (UnicodeDecodeError, csv.Error) as error:  # a binary file, NUL bytes
        raise InputError(f"{name}: not a text CSV file ({str(error)[:80]})") from None
    items = []
    for number, row in enumerate(rows, start=1):
        if not row or (number == 1 and not is_number(row[0])):
            continue  # blank line or header (a first row of numbers is data, floats too)
        row_name = f"{name}:{number}"
        try:
            if len(row) not in (784, 785):
                raise InputError(
                    f"{row_name}: {len(row)} columns, expected 785 (label + 784 pixels) or 784"
                )
            cells = row[-784:]
            try:
                values = np.array(cells, dtype=np.float64)
            except ValueError:
                raise InputError(f"{row_name}: non-numeric cell") from None
            written_as_floats = any("." in cell or "e" in cell.lower() for cell in cells)
            items += _to_pixels([row_name], values[None], written_as_floats)
        except InputError as error:
            items.append(Item(row_name, None, str(error)))
    if not items:
        raise InputError(f"{name}: no data rows")
    return items


@functools.lru_cache(maxsize=64)
def _npy_header(header: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    """numpy's own reading of a version 1.0 .npy header. It parses a Python literal, which is
    most of the time a served one-image request takes to decode; clients send the same few
    headers over and over, so each is parsed once."""
    stream = io.BytesIO(header)
    np.lib.format.read_magic(stream)
    return np.lib.format.read_array_header_1_0(stream)


def _plain_npy(data: bytes) -> np.ndarray | None:
    """The array of a plain .npy file (version 1.0, C order, no objects, exact size), read
    without copying; None for anything else, which np.load reads or explains."""
    if len(data) < 10 or data[6:8] != b"\x01\x00":
        return None
    end = 10 + int.from_bytes(data[8:10], "little")
    try:
        shape, fortran, dtype = _npy_header(data[:end])
    except ValueError:
        return None
    if fortran or dtype.hasobject or math.prod(shape) * dtype.itemsize != len(data) - end:
        return None
    return np.frombuffer(data, dtype, offset=end).reshape(shape)


def _read_npy(name: str, data: bytes) -> list[Item]:
    plain = _plain_npy(data)
    if plain is not None:
        return _read_array(name, plain)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise InputError(f"{name}: not a readable .npy file ({reason})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise InputError(f"{name}: not a readable .npy file (an .npz archive)")
    return _read_array(name, array)


def _read_array(name: str, array: np.ndarray) -> list[Item]:
    if array.shape == (28, 28) or array.shape == (784,):
        array = array[None]
    if array.ndim < 2 or array.shape[1:] not in ((28, 28), (784,)) or len(array) == 0:
        raise InputError(f"{name}: shape {array.shape}, expected (28, 28), (N, 28, 28) or (N, 784)")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise InputError(f"{name}: dtype {array.dtype} is not numeric")
    return _to_pixels([f"{name}[{i}]" for i in range(len(array))], array.reshape(-1, 784))


def _read_json(name: str, data: bytes) -> list[Item]:
    """A JSON array of 28x28 images (nested lists of numbers), or one image."""
    try:
        values = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{name}: not JSON ({str(error)[:80]})") from None
    try:
        array = np.asarray(values)  # integers stay integers: only 0..1 floats are scaled
    except (ValueError, TypeError):
        raise InputError(f"{name}: not an array of numbers, or rows of unequal length") from None
    return _read_array(name, array)


def decode(name: str, data: bytes, kind: str | None = None) -> list[Item]:
    """The images in one input's bytes. `kind` ("csv", "npy", "json", "image") comes from the
    file's suffix or the request's content type; an image is decided by its content."""
    try:
        if not data:
            raise InputError(f"{name}: empty file")
        if kind == "csv":
            return _read_csv(name, data)
        if kind == "npy" or (kind is None and data.startswith(b"\x93NUMPY")):
            return _read_npy(name, data)
        if kind == "json":
            return _read_json(name, data)
        return _read_image(name, data)
    except InputError as error:
        return [Item(name, None, str(error))]


def load_inputs(paths: list[str | Path]) -> list[Item]:
    """Every input as images; unreadable ones carry their error instead of stopping the rest."""
    items = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            items.append(
                Item(str(path), None, f"{path}: is a directory; give the image files in it")
            )
        elif not path.is_file():
            items.append(Item(str(path), None, f"{path}: no such file"))
        else:
            kind = {".csv": "csv", ".npy": "npy", ".json": "json"}.get(path.suffix.lower())
            try:
                data = path.read_bytes()
            except OSError as error:  # permissions, a device that fails
                items.append(Item(str(path), None, f"{path}: cannot be read ({error.strerror})"))
                continue
            items += decode(str(path), data, kind)
    return items


class Predictor:
    """A run's best model with its sequence mode, permutation and calibration temperature
    (`calibrated=False`: the model's own probabilities)."""

    def __init__(self, run_dir: Path | RunDir, calibrated: bool = True):
        run = RunDir(run_dir)
        self.cfg = run.config()
        self.model = run.model()
        self.permutation = run.permutation()
        self.temperature = run.temperature() if calibrated else 1.0
        self._run, self._calibrated = run, calibrated
        self._temperatures: dict[int, float] = {}

    def sequences(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(to_sequences(images, self.cfg.data.sequence, self.permutation))

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) uint8 -> (N, 10)."""
        x = model_inputs(self.model, images, self.cfg.data.sequence, self.permutation)
        # predict_on_batch, in chunks: Model.predict builds an input pipeline per call, 0.1-0.3 s
        # on 2 cores, which would be most of the time a served request of a few images takes
        chunks = [self.model.predict_on_batch(x[i : i + 256]) for i in range(0, len(x), 256)]
        return self._calibrate(final_probabilities(np.concatenate(chunks)))

    def _calibrate(self, probs: np.ndarray) -> np.ndarray:
        return probs if self.temperature == 1.0 else with_temperature(probs, self.temperature)

    def can_stream(self) -> bool:
        return any(isinstance(layer, TCN) for layer in self.model.layers)

    def sequence_shape(self) -> tuple[int, int]:
        """(steps, values per step) of the run's sequences."""
        return sequence_shape(self.cfg.data.sequence)

    def calibrated_after(self, probs: np.ndarray, steps: int) -> np.ndarray:
        """`probs` of a prediction made after `steps` steps, with the temperature fitted there."""
        if not self._calibrated:
            return probs
        if steps not in self._temperatures:
            self._temperatures[steps] = self._run.temperature(steps=steps)
        return with_temperature(probs, self._temperatures[steps])

    def info(self) -> dict:
        """What a client needs to know of the run: its task, size, accuracy and calibration."""
        steps, features = self.sequence_shape()
        metrics = self._run.metrics() if self._run.metrics_file.is_file() else {}
        return {
            "run": self._run.path.name,
            "model": self.cfg.model.kind,
            "sequence": self.cfg.data.sequence,
            "steps": steps,
            "values_per_step": features,
            "order": None if self.permutation is None else self.permutation.tolist(),
            "classes": list(CLASS_NAMES),
            "parameters": int(self.model.count_params()),
            "test_accuracy": metrics.get("accuracy"),
            "calibrated": self._calibrated,
            "temperature": self.temperature,
            "streams": self.can_stream(),
        }

    def stream(self, image: np.ndarray, fractions=(0.1, 0.25, 0.5, 0.75, 1.0)) -> list[dict]:
        """How the prediction changes as the sequence arrives (exact, step by step)."""
        from fashion_tcn.stream import StreamingClassifier

        sequence = self.sequences(image[None])
        trajectory = StreamingClassifier(self.model, batch=1).run(sequence)[0]  # (T, 10)
        steps = len(trajectory)
        out = []
        for fraction in fractions:
            t = max(1, round(fraction * steps))
            # the temperature fitted after about t steps, not the whole sequence's
            probs = self.calibrated_after(trajectory[t - 1 : t], t)[0]
            out.append(
                {
                    "steps": t,
                    "fraction": fraction,
                    "class": CLASS_NAMES[probs.argmax()],
                    "probability": float(probs.max()),
                }
            )
        return out


def explain_inputs(
    run_dir: Path | RunDir, items: list[Item], out: Path | None = None
) -> list[dict]:
    """Explain each readable input (`explain.explain`): one figure per input in `out` (default
    RUN/explain/), and a record with the prediction and the steps that drove it most."""
    from fashion_tcn import explain, plots

    run = RunDir(run_dir)
    predictor = Predictor(run, calibrated=False)  # explain the model's own probabilities
    good = [item for item in items if item.error is None]
    explained = (
        explain.explain(
            predictor.model,
            np.stack([item.image for item in good]),
            predictor.cfg.data.sequence,
            predictor.permutation,
        )
        if good
        else {}
    )
    index = {id(item): i for i, item in enumerate(good)}
    out = Path(out or run.explain_dir)
    records, taken = [], set()
    for item in items:
        if item.error is not None:
            records.append({"input": item.name, "error": item.error})
            continue
        example = {key: values[index[id(item)]] for key, values in explained.items()}
        base = Path(item.name).name
        if Path(base).suffix.lower() in IMAGE_SUFFIXES:  # a.png's figure is a.png, not a.png.png
            base = Path(base).stem
        name = re.sub(r"[^\w.-]+", "_", base).strip("_")
        while name in taken:  # two inputs of one name: a.png, a.png_2, ...
            name += "_2"
        taken.add(name)
        figure = plots.save(plots.explanation_figure(example, CLASS_NAMES), out / f"{name}.png")
        predicted = int(example["predicted"])
        records.append(
            {
                "input": item.name,
                "class": CLASS_NAMES[predicted],
                "probability": float(example["probabilities"][predicted]),
                "sequence": predictor.cfg.data.sequence,
                "top_steps": [int(t) + 1 for t in np.argsort(-example["steps"])[:3]],
                "figure": str(figure),
            }
        )
    return records


def top_k(probs: np.ndarray, k: int = 3) -> list[dict]:
    order = np.argsort(-probs)[:k]
    return [
        {"class": CLASS_NAMES[i], "index": int(i), "probability": float(probs[i])} for i in order
    ]
