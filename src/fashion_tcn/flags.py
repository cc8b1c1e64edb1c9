"""Command-line flags generated from the config dataclasses: a field is declared once, in
config.py, with its help text (`config.option`), and its flag follows from it.

`--filters 32` sets `model.filters`; a boolean field gets `--x` and `--no-x`, so a flag can switch
off a `true` from a config file; `--dilations` takes `1,2,4,8`. A flag left out leaves the config
file's value alone.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import fields
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from fashion_tcn.config import AugmentConfig, DataConfig, ModelConfig, TrainConfig

SECTIONS = {
    "data": (DataConfig, "data"),
    "model": (ModelConfig, "model"),
    "train": (TrainConfig, "training"),
    "augment": (AugmentConfig, "augmentation (training batches only)"),
}


def _integers(text: str) -> list[int]:
    try:
        return [int(d) for d in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _base(hint: Any) -> Any:
    """`int | None` -> int."""
    if get_origin(hint) in (Union, UnionType):
        return next(arg for arg in get_args(hint) if arg is not type(None))
    return hint


def flag_name(section: str, name: str) -> str:
    """The flag of config field `section.name`, e.g. "--kernel-size"."""
    cls = SECTIONS[section][0]
    field = next(f for f in fields(cls) if f.name == name)
    return "--" + (field.metadata.get("flag") or name).replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, only: Iterable[str] | None = None) -> None:
    """One flag per config field (or per `section.name` in `only`), grouped by section; each
    stores into the dest `section.name`, None when not given."""
    wanted = None if only is None else set(only)
    for section, (cls, title) in SECTIONS.items():
        hints = get_type_hints(cls)
        group = parser.add_argument_group(title)
        for field in fields(cls):
            dest = f"{section}.{field.name}"
            if wanted is not None and dest not in wanted:
                continue
            meta, kind = field.metadata, _base(hints[field.name])
            options: dict[str, Any] = {"dest": dest, "default": None, "help": meta["help"]}
            if field.default is not None:
                shown = ("on" if field.default else "off") if kind is bool else field.default
                options["help"] += f" (default {shown})"
            if kind is bool:
                options["action"] = argparse.BooleanOptionalAction
            elif get_origin(kind) is list:
                options |= {"type": _integers, "metavar": "N,N,..."}
            else:
                metavar = None if meta["choices"] else meta["metavar"] or field.name.upper()
                options |= {"type": kind, "choices": meta["choices"], "metavar": metavar}
            group.add_argument(flag_name(section, field.name), **options)


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The `section.name` values the flags set, for `config.override`."""
    return {
        dest: value
        for dest, value in vars(args).items()
        if "." in dest and dest.split(".")[0] in SECTIONS
    }
