"""Search spaces: a YAML or TOML file mapping parameter names to choices or ranges.

A list is a set of choices; `{low, high, log}` is a range (ints stay ints unless log-scaled).
`default_space.yaml` beside this file is used when none is given. Every choice and both ends of
every range are checked against the config before a single trial runs, and nothing here loads
TensorFlow, so a bad space file is reported at once.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fashion_tcn.config import Config, ConfigError, override

DEFAULT_SPACE = Path(__file__).with_name("default_space.yaml")

# space parameter -> config field ("levels" n becomes dilations 1, 2, ..., 2^(n-1))
PARAMETERS = {
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "epochs": "train.epochs",
    "optimizer": "train.optimizer",
    "weight_decay": "train.weight_decay",
    "label_smoothing": "train.label_smoothing",
    "ema": "train.ema",
    "activation": "model.activation",
    "filters": "model.filters",
    "kernel_size": "model.kernel_size",
    "levels": "model.dilations",
    "stacks": "model.stacks",
    "dropout": "model.dropout",
    "norm": "model.norm",
    "augment": "augment.preset",
}


@dataclass(frozen=True)
class Param:
    """One search dimension: a list of choices, or an int/float range (log-scaled if asked)."""

    name: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False

    def suggest(self, trial) -> Any:
        """Ask an `optuna.Trial` for a value of this dimension."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int) and not self.log:
            return trial.suggest_int(self.name, self.low, self.high)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


def to_overrides(params: dict[str, Any]) -> dict[str, Any]:
    """Sampled parameters -> `override` keys for the config."""
    out = {}
    for name, value in params.items():
        if name == "levels":
            value = [2**i for i in range(int(value))]
        out[PARAMETERS[name]] = value
    return out


def _parse_param(name: str, spec: Any, where: str) -> Param:
    if name not in PARAMETERS:
        raise ConfigError(f"{where}: unknown parameter {name!r}; known: {', '.join(PARAMETERS)}")
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where}: {name} has an empty list of choices")
        return Param(name, choices=tuple(spec))
    if (
        not isinstance(spec, dict)
        or set(spec) - {"low", "high", "log"}
        or not {"low", "high"} <= set(spec)
    ):
        raise ConfigError(f"{where}: {name} must be a list of choices or {{low, high, log}}")
    low, high = spec["low"], spec["high"]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(f"{where}: {name} range needs two numbers, got {low!r}..{high!r}")
    if low >= high:
        raise ConfigError(f"{where}: {name} range is empty ({low} >= {high})")
    if spec.get("log") and low <= 0:
        raise ConfigError(f"{where}: {name} log range must be positive, got low={low}")
    return Param(name, low=low, high=high, log=bool(spec.get("log", False)))


def load_space(path: str | Path, base: Config) -> list[Param]:
    """Read and check a space file: every choice and both range ends must make a valid config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: space file not found")
    try:
        text = path.read_text()
        raw = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: not a valid space file: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: expected a mapping of parameter names to ranges or choices")
    space = [_parse_param(name, spec, str(path)) for name, spec in raw.items()]
    for param in space:
        values = param.choices if param.choices is not None else (param.low, param.high)
        for value in values:
            try:
                override(base, to_overrides({param.name: value}))
            except ConfigError as error:
                raise ConfigError(f"{path}: {param.name}={value!r} is invalid: {error}") from None
    return space
