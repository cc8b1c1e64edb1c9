"""The HTML report in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright.

Every image must decode, the tables must be real DOM tables, the page must fit a laptop-wide window
and load nothing from the network. A missing browser is a failure, not a skip: CI installs it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from test_report_html import EXPLAIN_IMAGES, NUM_MISTAKES, PNG_SIGNATURE, RUN_IMAGES, make_run

from fashion_tcn.report import build_report

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]
VIEWPORT = {"width": 1280, "height": 900}

DOM_STATE = """() => ({
    images: [...document.images].map(img => ({
        alt: img.alt, ok: img.complete && img.naturalWidth > 0,
    })),
    truthRows: [...document.querySelectorAll("table.truth-table")].map(
        table => table.tBodies[0].rows.length),
    truthFoot: [...document.querySelectorAll("table.truth-table tfoot tr")].map(
        row => row.cells[0].textContent),
    comparisonRows: [...document.querySelectorAll("table.comparison tbody tr")].map(
        row => row.cells[0].textContent),
    missing: [...document.querySelectorAll(".missing")].map(note => note.textContent),
    scrollWidth: document.documentElement.scrollWidth,
})"""


def find_chromium() -> str:
    """Debian's chromium, failing (not skipping) the test when it or playwright is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -e '.[dev]'", pytrace=False)
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.fail(
            "chromium not found: install it with `apt-get install -y chromium` (Debian)",
            pytrace=False,
        )
    return path


def open_in_chromium(report: Path, tmp_path: Path, screenshot: Path | None = None) -> dict:
    """The page's DOM_STATE (plus its h3 headings and every URL it requested) in headless
    Chromium; a full-page screenshot when asked."""
    chromium = find_chromium()
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=tmp_path / "profile",
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
        )
        try:
            page = context.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.goto(report.as_uri(), wait_until="load")
            state = page.evaluate(DOM_STATE)
            state["h3"] = page.eval_on_selector_all("h3", "hs => hs.map(h => h.textContent)")
            if screenshot is not None:
                page.screenshot(path=screenshot, full_page=True)
        finally:
            context.close()
    return {**state, "requests": requests}


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    runs = [
        make_run(tmp_path / "run-a", anytime=True, explained=True),
        make_run(tmp_path / "run-b", seed=1),
    ]
    (runs[1] / "mistakes.npz").unlink()
    report = build_report(runs, tmp_path / "report.html")
    screenshot = tmp_path / "report.png"
    state = open_in_chromium(report, tmp_path, screenshot)
    requests = state["requests"]

    # comparison overlay + run-a (with the anytime plot and explanations) + run-b (without its
    # mistakes)
    expected_images = 1 + (RUN_IMAGES + 1 + EXPLAIN_IMAGES) + (RUN_IMAGES - NUM_MISTAKES)
    assert len(state["images"]) == expected_images
    broken = [image["alt"] for image in state["images"] if not image["ok"]]
    assert broken == []
    assert state["truthRows"] == [10, 10]
    assert state["truthFoot"] == ["macro avg", "weighted avg"] * 2
    assert state["comparisonRows"] == ["run-a", "run-b"]
    assert any(note.startswith("mistakes.npz is missing") for note in state["missing"])
    assert state["scrollWidth"] <= VIEWPORT["width"]  # no sideways scrolling
    assert all(url.startswith(("file:", "data:")) for url in requests), requests

    assert screenshot.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(screenshot)
    height, width = pixels.shape[:2]
    assert width == VIEWPORT["width"] and height > 3 * VIEWPORT["height"]
    assert np.std(pixels[..., :3]) > 0.05  # not a blank page
