"""Typed run configuration: defaults, YAML/TOML files, flag overrides, validation.

A run is fully described by one `Config`; the resolved copy (per-mode defaults filled in) is
saved as `config.yaml` in every run directory, so `evaluate` and `--resume` rebuild exactly
what was trained.
"""

from __future__ import annotations

import contextlib
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from fashion_tcn.files import write_text

SEQUENCE_MODES = ("rows", "columns", "pixels", "permuted")
MODEL_KINDS = ("tcn", "lstm", "gru", "cnn")
ACTIVATIONS = ("relu", "gelu", "elu", "selu", "tanh", "swish", "silu", "leaky_relu", "mish")
NORMS = ("none", "batch", "layer", "weight")
POOLINGS = ("last", "mean")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "nadam")
SCHEDULES = ("none", "cosine", "plateau")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message is one line meant for the user."""


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _typed(where: str, value: Any, hint: Any) -> Any:
    """The value, if it has the field's type; else a ConfigError naming the field (a word for a
    number, a string for a list, a float for an integer). YAML reads `1e-3` as a string, so a
    string that spells a number is taken as that number where a number belongs."""
    options = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    if value is None and type(None) in options:
        return value
    if isinstance(value, str) and float in options:
        with contextlib.suppress(ValueError):
            value = float(value)
    for option in options:
        if get_origin(option) is list:
            if isinstance(value, list) and all(_is(item, int) for item in value):
                return value
        elif option is not type(None) and _is(value, option):
            return value
    wanted = " or ".join(
        "a list of integers" if get_origin(o) is list else _TYPE_WORDS[o]
        for o in options
        if o is not type(None)
    )
    raise ConfigError(f"{where} must be {wanted}, got {value!r}")


def _is(value: Any, kind: type) -> bool:
    """isinstance, except that true/false is not a number and an integer is a float."""
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def sequence_length(mode: str) -> int:
    """Steps a 28x28 image becomes: 28 rows/columns or 784 pixels."""
    return 28 if mode in ("rows", "columns") else 784


def receptive_field(
    kernel_size: int, dilations: list[int] | tuple[int, ...], stacks: int = 1
) -> int:
    """Steps the last TCN output can see: two convolutions per block, each adding (k - 1) * d."""
    return 1 + 2 * (kernel_size - 1) * stacks * sum(dilations)


def covering_dilations(length: int, kernel_size: int, stacks: int = 1) -> list[int]:
    """The shortest 1, 2, 4, ... list whose receptive field covers `length` steps."""
    dilations = [1]
    while receptive_field(kernel_size, dilations, stacks) < length:
        dilations.append(2 * dilations[-1])
    return dilations


def option(
    default: Any,
    doc: str,
    metavar: str | None = None,
    *,
    choices: tuple[str, ...] | None = None,
    within: str | None = None,
    flag: str | None = None,
) -> Any:
    """A config field, declared once: its default, help text, the values it may take (`choices`,
    or a range `within` like ">= 1", "> 0", "[0, 1)"), a metavar, and its flag's name when that
    differs from the field's. Sections check them; `flags.add_config_flags` makes the flags."""
    meta = {"help": doc, "metavar": metavar, "choices": choices, "within": within, "flag": flag}
    return field(default=default, metadata=meta)


def _number(text: str) -> float:
    base, _, power = text.strip(" [()]").partition("**")
    return float(base) ** float(power or 1)


def _inside(value: float, within: str) -> bool:
    """`value` in a range written as ">= a", "> a", "[a, b)", "(a, b)", "[a, b]" ..."""
    if not math.isfinite(value):
        return False
    if within.startswith(">"):
        bound = _number(within.lstrip(">="))
        return value >= bound if within.startswith(">=") else value > bound
    low, high = (_number(part) for part in within.split(","))
    return (value >= low if within[0] == "[" else value > low) and (
        value <= high if within[-1] == "]" else value < high
    )


class _Section:
    """A config section: `__post_init__` checks every field's declared choices and range."""

    def __post_init__(self) -> None:
        for field_ in fields(self):
            value, meta = getattr(self, field_.name), field_.metadata
            if value is None:
                continue
            if meta["choices"] is not None:
                name = (meta["flag"] or field_.name).replace("_", " ")
                _check(
                    value in meta["choices"],
                    f"unknown {name} {value!r}; choose from {', '.join(meta['choices'])}",
                )
            if meta["within"] is not None:
                within = meta["within"]
                _check(
                    _inside(value, within),
                    f"{field_.name} must be {'' if within[0] == '>' else 'in '}{within}, "
                    f"got {value}",
                )


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass
class DataConfig(_Section):
    data_dir: str | None = option(
        None, "folder with the IDX .gz files or Kaggle CSVs (default: $FASHION_TCN_DATA, "
        "Debian's package, the cache, then a download)"
    )  # fmt: skip
    sequence: str = option("rows", "how an image becomes a sequence", choices=SEQUENCE_MODES)
    limit_train: int | None = option(
        None, "random N training images, for quick runs", "N", within=">= 10"
    )
    limit_test: int | None = option(
        None, "random N test images, for quick runs", "N", within=">= 10"
    )
    val_fraction: float = option(
        0.1, "share of training held out to choose epochs and tune", within="(0, 0.5)"
    )
    permutation_seed: int | None = option(
        None, "permuted mode: seed of the pixel order (default: --seed); fix it to train "
        "several seeds on one order", within="[0, 2**32)"
    )  # fmt: skip


@dataclass
class ModelConfig(_Section):
    kind: str = option("tcn", "architecture", choices=MODEL_KINDS, flag="model")
    filters: int | None = option(None, "TCN channels (default: the sequence mode's)", within=">= 1")
    kernel_size: int | None = option(
        None, "taps per convolution (default: the mode's)", within=">= 2"
    )
    dilations: list[int] | None = option(
        None, "one residual block per dilation, e.g. 1,2,4,8 (default: the mode's)"
    )
    stacks: int | None = option(
        None, "times the dilation list is repeated (default: the mode's)", within=">= 1"
    )
    dropout: float | None = option(None, "spatial dropout after each convolution", within="[0, 1)")
    activation: str = option("relu", "activation", choices=ACTIVATIONS)
    norm: str | None = option(None, "normalization in each block", choices=NORMS)
    skip_connections: bool = option(False, "WaveNet-style sum of every block's output")
    pooling: str = option(
        "last", "TCN readout: the last step, or the causal mean of the steps so far",
        choices=POOLINGS,
    )  # fmt: skip
    allow_short_receptive_field: bool = option(False, "train even if step T cannot see step 0")
    units: int | None = option(
        None, "lstm/gru hidden units (default: sized to ~70K parameters)", within=">= 1"
    )
    step_filters: int | None = option(
        None, "TCN on rows/columns: convolve across each row's pixels first with this many "
        "channels (encoder.StepEncoder); 0 = off (default 8 on rows/columns)", within=">= 0"
    )  # fmt: skip
    step_stages: int = option(
        1, "step encoder conv-conv-pool stages (each halves the row)", within=">= 1"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dilations is not None:
            _check(
                len(self.dilations) > 0 and all(int(d) >= 1 for d in self.dilations),
                f"dilations must be a non-empty list of integers >= 1, got {self.dilations}",
            )
            self.dilations = [int(d) for d in self.dilations]


# Augmentation presets: image-space transforms for the training pipeline only (augment.py).
AUGMENT_PRESETS: dict[str, dict[str, float]] = {
    "none": {"translate": 0.0, "flip": 0.0, "rotate": 0.0, "zoom": 0.0, "erase": 0.0},
    "light": {"translate": 0.08, "flip": 0.5, "rotate": 0.0, "zoom": 0.0, "erase": 0.0},
    "strong": {"translate": 0.1, "flip": 0.5, "rotate": 10.0, "zoom": 0.1, "erase": 0.5},
}


@dataclass
class AugmentConfig(_Section):
    preset: str = option(
        "none", "preset that fills every transform left unset", choices=tuple(AUGMENT_PRESETS),
        flag="augment",
    )  # fmt: skip
    translate: float | None = option(
        None, "max shift, fraction of 28 px (0.1 = 2.8 px), each axis", within="[0, 0.5]"
    )
    flip: float | None = option(None, "probability of a horizontal flip", within="[0, 1]")
    rotate: float | None = option(None, "max rotation in degrees, either way", within="[0, 180]")
    zoom: float | None = option(None, "max zoom in or out, as a fraction", within="[0, 0.9]")
    erase: float | None = option(
        None, "probability of erasing one random rectangle (cutout)", within="[0, 1]"
    )

    @property
    def active(self) -> bool:
        return any(getattr(self, name) for name in AUGMENT_PRESETS["none"])


@dataclass
class TrainConfig(_Section):
    epochs: int | None = option(None, "epochs (default: the sequence mode's)", within=">= 1")
    batch_size: int = option(128, "images per step", within=">= 1")
    lr: float = option(2e-3, "learning rate (peak of the cosine schedule)", within="> 0")
    optimizer: str = option("adamw", "optimizer", choices=OPTIMIZERS)
    weight_decay: float | None = option(
        None,
        "decoupled weight decay (default: 0.05 for adamw, chosen on validation; else 0)",
        within=">= 0",
    )
    momentum: float = option(0.9, "sgd and rmsprop only", within="[0, 1)")
    schedule: str = option(
        "cosine", "learning rate: constant, cosine to 0 over all epochs, or halved on a "
        "validation plateau", choices=SCHEDULES
    )  # fmt: skip
    clipnorm: float | None = option(
        None, "clip each gradient's norm (long pixel sequences)", within="> 0"
    )
    early_stopping: int = option(
        0, "patience in epochs on val_accuracy; 0 = off", "PATIENCE", within=">= 0"
    )
    tensorboard: bool = option(False, "write TensorBoard logs into the run directory")
    seed: int = option(
        0,
        "seeds split, permutation (unless --permutation-seed), init, shuffling, dropout",
        within="[0, 2**32)",
    )
    anytime_loss: float = option(
        0.0, "weight of the mean loss over earlier steps (TCN): good predictions before the "
        "whole sequence has arrived", "WEIGHT", within=">= 0"
    )  # fmt: skip
    label_smoothing: float = option(0.0, "share of each target spread evenly", within="[0, 1)")
    ema: float = option(
        0.0, "momentum of a moving average of the weights, which replaces them after every "
        "epoch; 0 = off", "MOMENTUM", within="[0, 1)"
    )  # fmt: skip
    precision: str = option(
        "auto", "Keras dtype policy (softmax stays float32); auto: the fastest measured on the "
        "device, float32 on a CPU, bfloat16 on a GPU", choices=PRECISIONS
    )  # fmt: skip


ADAMW_WEIGHT_DECAY = 0.05  # AdamW's default decay here; Keras's own (0.004) barely regularises

# Defaults per sequence mode, chosen to train well on a 2-core CPU (docs/results.md).
# pixels/permuted follow Bai et al. (2018): 8 levels x 25 filters, kernel 7 (receptive field 3061).
MODE_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "rows": {
        "model": {"filters": 64, "kernel_size": 3, "dilations": [1, 2, 4, 8], "dropout": 0.05,
                  "norm": "weight", "stacks": 2,
                  "step_filters": 8},  # chosen on validation at 20 epochs
        "train": {"epochs": 20},
    },
    "pixels": {
        "model": {"filters": 25, "kernel_size": 7, "dilations": [2**i for i in range(8)],
                  "dropout": 0.05, "norm": "layer", "stacks": 1},
        "train": {"epochs": 20},
    },
}  # fmt: skip
MODE_DEFAULTS["columns"] = MODE_DEFAULTS["rows"]
MODE_DEFAULTS["permuted"] = MODE_DEFAULTS["pixels"]


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def resolved(self) -> Config:
        """Fill every None that has a default (per mode, per preset), so the saved config is
        explicit."""
        defaults = {
            **MODE_DEFAULTS[self.data.sequence],
            "augment": AUGMENT_PRESETS[self.augment.preset],
        }
        sections = {}
        for name, values in defaults.items():
            section = getattr(self, name)
            filled = {k: v for k, v in values.items() if getattr(section, k) is None}
            sections[name] = replace(section, **filled)
        unset = self.model.step_filters is None
        if unset and (self.model.kind != "tcn" or sections["model"].step_filters is None):
            sections["model"] = replace(sections["model"], step_filters=0)  # no encoder default
        if self.train.weight_decay is None:
            decay = ADAMW_WEIGHT_DECAY if self.train.optimizer == "adamw" else 0.0
            sections["train"] = replace(sections["train"], weight_decay=decay)
        if self.model.kind == "cnn":  # a 2-D convnet reads the image, whatever the sequence mode
            sections["data"] = replace(self.data, sequence="rows")
        cfg = replace(self, **sections)
        cfg.check_receptive_field()
        return cfg

    def check_receptive_field(self) -> None:
        """A TCN whose last step cannot see the first step is a mistake unless asked for."""
        m, steps = self.model, sequence_length(self.data.sequence)
        _check(
            m.kind == "tcn" or not self.train.anytime_loss,
            f"anytime_loss needs a causal TCN, not {m.kind}",
        )
        _check(
            m.norm != "batch" or not self.train.anytime_loss,
            "anytime_loss trains the predictions before the last step, but batch norm's training "
            "statistics span every step, so they would see later steps: use norm layer or weight",
        )
        _check(
            not m.step_filters or (m.kind == "tcn" and self.data.sequence in ("rows", "columns")),
            "step_filters convolves across a row's pixels: it needs --model tcn on rows or columns",
        )
        _check(
            m.kind == "tcn" or m.pooling == "last",
            f"pooling is the TCN's readout; {m.kind} has none",
        )
        if m.kind != "tcn" or m.allow_short_receptive_field:
            return
        field = receptive_field(m.kernel_size, m.dilations, m.stacks)
        cover = ",".join(map(str, covering_dilations(steps, m.kernel_size, m.stacks)))
        _check(
            field >= steps,
            f"receptive field {field} is shorter than the sequence ({steps} steps): the last "
            f"step cannot see the first; use dilations {cover} (kernel {m.kernel_size}, "
            f"{m.stacks} stack(s)) or pass --allow-short-receptive-field",
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> Config:
        """Build from nested sections, rejecting unknown sections and keys by name."""
        _check(
            isinstance(raw, dict),
            f"{source}: expected a mapping of sections, got {type(raw).__name__}",
        )
        kinds = {
            "data": DataConfig,
            "model": ModelConfig,
            "train": TrainConfig,
            "augment": AugmentConfig,
        }
        unknown = set(raw) - set(kinds)
        _check(
            not unknown,
            f"{source}: unknown section(s) {', '.join(sorted(unknown))}; "
            f"expected {', '.join(kinds)}",
        )
        sections = {}
        for name, kind in kinds.items():
            values = raw.get(name) or {}
            _check(isinstance(values, dict), f"{source}: section {name!r} must be a mapping")
            known = {f.name for f in fields(kind)}
            bad = set(values) - known
            _check(not bad, f"{source}: unknown key(s) {', '.join(sorted(bad))} in [{name}]")
            hints = get_type_hints(kind)
            values = {k: _typed(f"{source}: {name}.{k}", v, hints[k]) for k, v in values.items()}
            try:
                sections[name] = kind(**values)
            except ConfigError as error:
                raise ConfigError(f"{source}: [{name}] {error}") from None
        return cls(**sections)


def load_config(path: str | Path) -> Config:
    """Read a YAML (.yaml/.yml) or TOML (.toml) config file."""
    path = Path(path)
    _check(path.exists(), f"{path}: config file not found")
    _check(path.is_file(), f"{path}: is a directory, not a config file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (expected YAML or TOML)") from None
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise ConfigError(
            f"{path}: not valid {path.suffix.lstrip('.').upper()}: {first_line}"
        ) from None
    return Config.from_dict(raw or {}, source=str(path))


def override(config: Config, overrides: dict[str, Any]) -> Config:
    """Apply `{"section.key": value}` overrides (None values are skipped); validation re-runs."""
    sections = config.to_dict()
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, key = dotted.split(".")
        sections[section][key] = value
    return Config.from_dict(sections, source="command line")


def save_config(config: Config, path: Path) -> Path:
    return write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
