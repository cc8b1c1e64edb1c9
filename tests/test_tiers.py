"""The JAX tier (`make test-jax`) runs the tests marked `backend`, not the whole fast tier a
second time. This keeps the choice honest: a test file that imports Keras (itself, or through a
package module that does) or trains a model is marked, or is listed below with the reason its
assertions do not depend on the backend. A new file that trains fails here until it is placed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).parent
PACKAGE = TESTS.parent / "src" / "fashion_tcn"

# trains (train_tiny, the shared tiny_run, `train`/`sweep` through the CLI) ...
TRAINS = re.compile(r'train_tiny\(|\btiny_run\b|[\[(]\s*"(train|sweep)",\s*("--|\*)')
NOT_BACKEND = {  # ... but asserts only what the backend cannot change
    "test_failures.py": "error messages and exit codes, raised before any backend work; one "
    "trained run is copied as their input",
    "test_sweep.py": "the study's bookkeeping (storage, pruning records, space files); its "
    "trials train through train.train, which the marked files test",
    "test_sweep_workers.py": "workers sharing one study's storage; their trials train through "
    "train.train, which the marked files test",
    "test_quiet.py": "TensorFlow's own start-up noise on stderr",
    "test_flags.py": "parses command lines; nothing runs",
    "test_splits.py": "which images go where and the data fingerprint: NumPy and files",
}


def _imports(path: Path) -> set[str]:
    """Modules a file imports at its top level, package modules as `fashion_tcn.NAME`."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "fashion_tcn":
                names |= {f"fashion_tcn.{alias.name}" for alias in node.names}
    return names


def _keras_modules() -> set[str]:
    """Package modules that import Keras or TensorFlow, directly or through one another."""
    imports = {path.stem: _imports(path) for path in PACKAGE.glob("*.py")}
    found: set[str] = set()
    while True:
        more = {
            module
            for module, names in imports.items()
            if module not in found and any(_is_backend(name, found) for name in names)
        }
        if not more:
            return found
        found |= more


def _is_backend(name: str, keras_modules: set[str]) -> bool:
    top, _, rest = name.partition(".")
    return top in ("keras", "tensorflow", "jax") or (
        top == "fashion_tcn" and rest.split(".")[0] in keras_modules
    )


def test_every_file_that_uses_the_backend_runs_on_the_jax_tier():
    keras_modules = _keras_modules()
    assert {"layers", "models", "train", "stream"} <= keras_modules  # the analysis sees them
    unplaced = []
    for path in sorted(TESTS.glob("test_*.py")):
        text = path.read_text()
        uses = any(_is_backend(name, keras_modules) for name in _imports(path))
        marked = "pytest.mark.backend" in text or path.name in NOT_BACKEND
        if (uses or TRAINS.search(text)) and not marked:
            unplaced.append(path.name)
    assert unplaced == [], "mark them `pytestmark = pytest.mark.backend` or give a reason above"


def test_the_listed_files_exist_and_are_not_marked():
    for name in NOT_BACKEND:
        assert "pytest.mark.backend" not in (TESTS / name).read_text(), name
