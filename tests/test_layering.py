"""Data flows one way: no module imports one that comes later in `ORDER` (lazy imports inside
functions included), so the layering docs/development.md describes is checked, not hoped for."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "src" / "fashion_tcn"
ORDER = [
    "files", "config", "data", "splits", "sequences", "augment", "layers", "encoder", "models",
    "rundir", "train", "ringstep", "litestep", "stream", "export", "explain", "metrics", "plots",
    "evaluate", "runview", "report", "space", "sweep", "predict", "serve", "flags", "cli",
]  # fmt: skip


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "fashion_tcn":
                names |= {alias.name for alias in node.names}
            elif node.module.startswith("fashion_tcn."):
                names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("fashion_tcn.")}
    return names


def test_every_module_is_placed():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert modules == set(ORDER)


def test_no_module_imports_a_later_one():
    for module in ORDER:
        later = set(ORDER[ORDER.index(module) + 1 :])
        assert not _imports(PACKAGE / f"{module}.py") & later, module


def test_train_knows_nothing_of_evaluation_or_pages():
    assert not _imports(PACKAGE / "train.py") & {"evaluate", "plots", "report", "runview"}
