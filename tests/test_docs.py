"""The docs cannot drift from the code: the CLI page is the parser's own help, every command
written in README.md and docs/ parses with the real parser (and a train line's values pass the
config's checks), and every relative link and config file named exists."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

from fashion_tcn.config import Config, override
from fashion_tcn.flags import build_parser, config_overrides, reference

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ENV = re.compile(r"^(?:[A-Z_]+=\S*\s+)+")  # KERAS_BACKEND=jax fashion-tcn ...


def test_the_cli_page_is_what_the_parser_prints():
    assert (ROOT / "docs" / "cli.md").read_text() == reference(), "run `make docs`"


def commands(page: Path) -> list[tuple[str, str]]:
    """(where, command) for every `fashion-tcn ...` and `python benchmarks/...` line, in code
    blocks (with `\\` continuations) and in inline code."""
    found, text = [], page.read_text()
    for block in re.findall(r"```(?:sh|bash|console)?\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = ENV.sub("", line.strip().removeprefix("$ "))
            if line.startswith(("fashion-tcn ", "python benchmarks/")):
                found.append((page.name, line))
    for inline in re.findall(r"`([^`\n]+)`", text):
        inline = ENV.sub("", inline.strip())
        if inline.startswith(("fashion-tcn ", "python benchmarks/")) and "..." not in inline:
            found.append((page.name, inline))
    return found


ALL = [c for page in PAGES for c in commands(page)]
SUBCOMMANDS = next(
    a.choices for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
)


class ParsedError(Exception):
    """Stops a benchmark once its arguments have parsed."""


def _benchmark_parses(script: str, argv: list[str], monkeypatch) -> None:
    """Run the benchmark's own argument parsing, then stop before it measures anything."""
    for name in ("parse_args", "parse_known_args"):
        real = getattr(argparse.ArgumentParser, name)

        def stop(self, args=None, namespace=None, real=real):
            result = real(self, args, namespace)
            if self.prog.endswith(".py"):  # the script's parser, not one it builds later
                raise ParsedError(result)
            return result

        monkeypatch.setattr(argparse.ArgumentParser, name, stop)
    path = ROOT / "benchmarks" / script
    assert path.is_file(), f"no benchmarks/{script}"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    with pytest.raises(ParsedError):
        module.main()


def test_the_docs_name_commands():
    pages = {page for page, _ in ALL}
    assert {"README.md", "getting-started.md", "results.md", "benchmarks.md"} <= pages


@pytest.mark.parametrize("page,command", ALL, ids=[f"{p}:{c[:60]}" for p, c in ALL])
def test_every_documented_command_parses(page, command, monkeypatch, capsys):
    argv = shlex.split(command, comments=True)
    if len(argv) == 2 and argv[0] == "fashion-tcn" and argv[1] in SUBCOMMANDS:
        return  # a command named in prose
    try:
        if argv[0] == "fashion-tcn":
            args = build_parser().parse_args(argv[1:])
            if args.command == "train":
                override(Config(), config_overrides(args))
        else:
            _benchmark_parses(argv[1].removeprefix("benchmarks/"), argv[2:], monkeypatch)
    except SystemExit as exit:
        if exit.code == 0:  # --help
            return
        pytest.fail(f"{page}: `{command}`: {capsys.readouterr().err.strip()}")


def test_links_and_configs_named_exist():
    missing = []
    for page in PAGES:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" not in target and not (page.parent / target).exists():
                missing.append(f"{page.name}: link {target}")
        for config in set(re.findall(r"configs/[\w.-]+\.(?:ya?ml|toml)", text)):
            if not (ROOT / config).is_file():
                missing.append(f"{page.name}: {config}")
    assert missing == []
