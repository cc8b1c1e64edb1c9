"""What the sweep tests share: `fashion-tcn sweep` on the tiny data and a small space file."""

from pathlib import Path

from fashion_tcn.cli import main

TINY = ["--epochs", "1", "--batch-size", "64"]


def run_sweep(tiny_data_dir: Path, out: Path, space: Path, *flags: str) -> int:
    """`fashion-tcn sweep` on the tiny data, 1 epoch per trial; exit code."""
    return main(
        [
            "sweep",
            "--space",
            str(space),
            "--out",
            str(out),
            "--data-dir",
            str(tiny_data_dir),
            *TINY,
            *flags,
        ]
    )


def space_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


SMALL_SPACE = """
lr: {low: 1.0e-3, high: 1.0e-2, log: true}
filters: [4, 8]
levels: {low: 3, high: 4}
kernel_size: [3, 5]
activation: [relu, gelu]
stacks: [1]  # one stack: each trial builds and traces half the blocks
"""
