"""The plots are real PNGs that matplotlib can read back, and bad history files fail clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from fashion_tcn.plots import plot_confusion_matrix, plot_history

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAMES = ("T-shirt/top", "Trouser", "Pullover")
CM = np.array([[50, 3, 7], [2, 58, 0], [9, 1, 50]])


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, channels = matplotlib.image.imread(path).shape
    assert height >= 200 and width >= 200 and channels in (3, 4)


@pytest.mark.parametrize("normalize", [False, True])
def test_plot_confusion_matrix_writes_png(tmp_path: Path, normalize: bool) -> None:
    path = plot_confusion_matrix(CM, NAMES, tmp_path / "plots" / "cm.png", normalize=normalize)
    assert path == tmp_path / "plots" / "cm.png"
    assert_png(path)


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_figure_shows_counts_or_row_fractions(normalize: bool) -> None:
    from fashion_tcn.plots import confusion_figure

    cm = np.vstack([CM[:2], np.zeros(3, int)])  # a class with no examples: a row of zeros
    ax = confusion_figure(cm, NAMES, normalize=normalize, title="t").axes[0]
    shown = np.asarray(ax.images[0].get_array())
    expected = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    np.testing.assert_allclose(shown, expected)
    assert ax.images[0].get_clim() == ((0.0, 1.0) if normalize else (0.0, float(cm.max())))
    cells = [t.get_text() for t in ax.texts]
    assert cells[:3] == (["0.83", "0.05", "0.12"] if normalize else ["50", "3", "7"])


def test_plot_confusion_matrix_tolerates_empty_rows(tmp_path: Path) -> None:
    cm = np.zeros((3, 3), dtype=np.int64)
    assert_png(plot_confusion_matrix(cm, NAMES, tmp_path / "cm.png", normalize=True))


def test_plot_confusion_matrix_rejects_wrong_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 classes"):
        plot_confusion_matrix(np.ones((2, 2)), NAMES, tmp_path / "cm.png")


def test_plot_history_writes_png(tmp_path: Path) -> None:
    history = tmp_path / "history.csv"
    history.write_text(
        "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\n"
        "0,0.61,0.001,1.10,0.70,0.85\n"
        "1,0.75,0.001,0.70,0.78,0.62\n"
        "2,0.81,0.0005,0.55,0.80,0.58\n"
    )
    path = plot_history(history, tmp_path / "history.png")
    assert_png(path)


def test_plot_history_tolerates_missing_validation_columns(tmp_path: Path) -> None:
    history = tmp_path / "history.csv"
    history.write_text("epoch,accuracy,loss\n0,0.6,1.1\n1,0.7,0.8\n")
    assert_png(plot_history(history, tmp_path / "history.png"))


@pytest.mark.parametrize("content", ["", "epoch,accuracy,loss,val_accuracy,val_loss\n"])
def test_plot_history_rejects_empty_file_naming_it(tmp_path: Path, content: str) -> None:
    history = tmp_path / "empty_history.csv"
    history.write_text(content)
    with pytest.raises(ValueError, match=r"empty_history\.csv"):
        plot_history(history, tmp_path / "history.png")
    assert not (tmp_path / "history.png").exists()


def test_plots_and_report_never_load_pyplot(tmp_path: Path) -> None:
    """Headless by construction: no GUI backend is chosen, no global figure state is kept."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text("epoch,accuracy,loss\n0,0.6,1.1\n1,0.7,0.8\n")
    code = (
        "import sys, numpy as np\n"
        "from fashion_tcn.plots import plot_confusion_matrix, plot_history\n"
        "from fashion_tcn.report import build_report\n"
        f"plot_history({str(run / 'history.csv')!r}, {str(tmp_path / 'h.png')!r})\n"
        f"plot_confusion_matrix(np.eye(3), 'abc', {str(tmp_path / 'cm.png')!r})\n"
        f"build_report([{str(run)!r}])\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert (run / "report.html").is_file()
