"""The command line: `build_parser` makes the `fashion-tcn` commands, and each config field's
flag is generated from its dataclass field: declared once, in config.py, with its help text
(`config.option`).

`--filters 32` sets `model.filters`; a boolean field gets `--x` and `--no-x`, so a flag can switch
off a `true` from a config file; `--dilations` takes `1,2,4,8`. A flag left out leaves the config
file's value alone.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
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


# what a sweep takes from flags; the rest comes from --config and the search space
SWEEP_FLAGS = (
    "data.data_dir", "data.sequence", "data.limit_train", "data.limit_test", "train.epochs",
    "train.batch_size", "train.seed",
)  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is the one line every other error is, without the usage."""

    def error(self, message: str):
        self.exit(2, f"fashion-tcn: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The `fashion-tcn` command line: its commands, and `train`'s flags from the config."""
    parser = _Parser(
        prog="fashion-tcn",
        description=("Temporal Convolutional Networks on Fashion-MNIST read as sequences."),
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model into a run directory and test it")
    train.add_argument("--config", type=Path, help="YAML or TOML file; flags override it")
    train.add_argument("--run-dir", type=Path, help="default: runs/<time>-<model>-<sequence>")
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --run-dir from its last epoch"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--no-report",
        action="store_true",
        help="skip report.html (`fashion-tcn report RUN` writes it later): for scripts that "
        "train many runs",
    )
    train.add_argument(
        "--no-test",
        action="store_true",
        help="keep the best epoch without testing it: for candidates still to be chosen on "
        "validation (`fashion-tcn evaluate RUN` tests the chosen one)",
    )
    add_config_flags(train)

    sweep = commands.add_parser("sweep", help="Optuna search; each trial is a training run")
    sweep.add_argument(
        "--config", type=Path, help="base config (YAML/TOML) every trial starts from"
    )
    sweep.add_argument("--space", type=Path, help="search space file (default: the package's)")
    sweep.add_argument(
        "--trials", type=int, default=20, help="finished trials the study should hold"
    )
    sweep.add_argument("--storage", help="SQLAlchemy URL; default sqlite:///OUT/study.db")
    sweep.add_argument("--study", default="fashion-tcn", help="study name (join or resume it)")
    sweep.add_argument("--jobs", type=int, default=1, help="worker processes on this machine")
    sweep.add_argument("--out", type=Path, default=Path("runs/sweep"), help="trials, tables, plots")
    sweep.add_argument(
        "--heartbeat",
        type=int,
        default=60,
        help="seconds; a silent worker's trial fails after twice this",
    )
    sweep.add_argument(
        "--no-report",
        action="store_true",
        help="skip report.html: for all workers of a shared study but one",
    )
    sweep.add_argument(
        "--no-test",
        action="store_true",
        help="name the best trial without testing it: for all workers of a shared study but one "
        "(`fashion-tcn evaluate` tests it once)",
    )
    add_config_flags(sweep, only=SWEEP_FLAGS)

    evaluate = commands.add_parser(
        "evaluate", help="test a run's best model, print and rewrite metrics"
    )
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--data-dir", help="folder with the IDX .gz files or Kaggle CSVs")
    evaluate.add_argument(
        "--other-data",
        action="store_true",
        help="test on data other than the run was trained on (refused otherwise; the metrics "
        "say so)",
    )
    evaluate.add_argument(
        "--explain-per-class",
        type=int,
        default=10,
        metavar="N",
        help="test images per class in the mean occlusion maps (10; 1000: the whole test set, "
        "49 forward passes per image)",
    )
    evaluate.add_argument(
        "--no-report",
        action="store_true",
        help="leave report.html as it was: for scripts that test many runs",
    )

    predict = commands.add_parser("predict", help="classify PNG/JPG images, CSV rows, .npy arrays")
    predict.add_argument("run_dir", type=Path)
    predict.add_argument("inputs", nargs="+", help="image files, Kaggle-style CSVs, .npy arrays")
    predict.add_argument("--top", type=int, default=3, help="classes to show (3)")
    predict.add_argument(
        "--stream",
        action="store_true",
        help="show how the prediction changes as the sequence arrives (TCN)",
    )
    predict.add_argument(
        "--calibrated",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="divide the logits by the temperature fitted on the validation split when the run "
        "was tested (--no-calibrated: the model's own probabilities)",
    )
    predict.add_argument("--json", action="store_true", help="machine-readable output")

    explain = commands.add_parser(
        "explain", help="which pixels and steps drove a prediction (occlusion), as figures"
    )
    explain.add_argument("run_dir", type=Path)
    explain.add_argument("inputs", nargs="+", help="image files, Kaggle-style CSVs, .npy arrays")
    explain.add_argument("-o", "--out", type=Path, help="folder for the figures (RUN_DIR/explain)")
    explain.add_argument("--json", action="store_true", help="machine-readable output")

    export = commands.add_parser("export", help="SavedModel (TF Serving), TFLite or ONNX")
    export.add_argument("run_dir", type=Path)
    export.add_argument(
        "--format",
        choices=("savedmodel", "tflite", "step", "onnx"),
        default="savedmodel",
        help="step: a TFLite stream step of a TCN (one step + state in, prediction + state "
        "out); onnx: for onnxruntime (needs the onnx extra)",
    )
    export.add_argument("-o", "--out", type=Path, help="default: RUN_DIR/export/...")

    report_cmd = commands.add_parser(
        "report", help="write a self-contained HTML report of one run, or compare several"
    )
    report_cmd.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    report_cmd.add_argument(
        "-o",
        "--out",
        type=Path,
        help="HTML file to write (default RUN_DIR/report.html; required for several runs)",
    )

    serve = commands.add_parser(
        "serve", help="an HTTP API and a page that show the model read an image step by step"
    )
    serve.add_argument("run_dir", type=Path)
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)"
    )
    serve.add_argument("--port", type=int, default=8000, help="TCP port (0: any free one)")

    data_cmd = commands.add_parser("data", help="find (or download) and verify Fashion-MNIST")
    data_cmd.add_argument("--data-dir", help="folder with the IDX .gz files or Kaggle CSVs")
    return parser


def reference(width: int = 100) -> str:
    """docs/cli.md: what `fashion-tcn --help` and every `fashion-tcn COMMAND --help` print, at a
    fixed width (`make docs` writes it; tests/test_docs.py fails when the page differs)."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)  # argparse wraps help to the terminal's width
    try:
        parser = build_parser()
        (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parts = [
            "# Command-line reference\n\n"
            "Generated from the parser (`make docs`); `tests/test_docs.py` keeps it current.\n\n"
            f"```\n{parser.format_help()}```\n"
        ]
        for name, sub in commands.choices.items():
            parts.append(f"\n## fashion-tcn {name}\n\n```\n{sub.format_help()}```\n")
        return "".join(parts)
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
