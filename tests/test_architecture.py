"""The import rule of DESIGN.md: qarm and recsys_models are independent libraries; only
benchmark/tracking.py imports mlflow. Checked on the source (AST), so lazy imports count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("qarm", "recsys_models", "benchmark")
FORBIDDEN = {
    "qarm": {"recsys_models", "benchmark", "mlflow"},
    "recsys_models": {"qarm", "benchmark", "mlflow"},
    "benchmark": {"mlflow"},
}
MLFLOW_ALLOWED = {Path("benchmark/tracking/store.py")}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            roots.add(str(node.args[0].value).split(".")[0])
    return roots


def source_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_import_rule(package: str) -> None:
    files = source_files(package)
    assert files, f"no sources found under {package}/"
    violations = []
    for path in files:
        rel = path.relative_to(ROOT)
        bad = imported_roots(path) & FORBIDDEN[package]
        if rel in MLFLOW_ALLOWED:
            bad -= {"mlflow"}
        if bad:
            violations.append(f"{rel} imports {sorted(bad)}")
    assert not violations, "import rule broken (DESIGN.md):\n" + "\n".join(violations)


def test_only_tracking_imports_mlflow_and_it_does() -> None:
    importers = {p.relative_to(ROOT) for pkg in PACKAGES for p in source_files(pkg) if "mlflow" in imported_roots(p)}
    assert importers == MLFLOW_ALLOWED


def test_rule_checker_sees_lazy_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def f():\n    import mlflow.tracking\n    from benchmark import x\n    importlib.import_module('qarm.y')\n")
    assert imported_roots(f) == {"mlflow", "benchmark", "qarm"}
