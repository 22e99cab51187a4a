"""The import rules of docs/architecture.md, checked on the source (AST), so lazy imports count too.

1. qarm and recsys_models are independent libraries: neither imports the other, nor benchmark, nor mlflow;
   only benchmark/tracking/store.py imports mlflow.
2. benchmark/ is layered (LAYERS below): a module imports its own sub-package and sub-packages of LOWER
   layers only; sub-packages of one layer do not import each other.
3. No import cycle between the project's modules.
4. No module imports another module's private name (`from x import _y`, or `x._y` of an imported module).
"""

from __future__ import annotations

import ast
from collections import defaultdict
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

# benchmark's layers, bottom (0) to top. The package `benchmark` itself (its __init__: the Python API),
# benchmark.__main__ and benchmark.cli form the top layer.
LAYERS: dict[str, int] = {
    "benchmark.core": 0,
    "benchmark.config": 1,
    "benchmark.data": 2, "benchmark.dist": 2,
    "benchmark.itemside": 3, "benchmark.tracking": 3, "benchmark.report": 3,
    "benchmark.cells": 4,
    "benchmark.engine": 5,
    "benchmark.perf": 6,
    "benchmark.cli": 7, "benchmark.__main__": 7, "benchmark": 7,
}
TOP = 7


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def source_files(package: str, root: Path = ROOT) -> list[Path]:
    return sorted((root / package).rglob("*.py"))


def _imports(tree: ast.AST) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) of every import in the tree, lazy ones and import_module calls too."""
    out: list[tuple[str, list[str], int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            out.append((str(node.args[0].value), [], node.lineno))
    return out


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {m.split(".")[0] for m, _, _ in _imports(tree)}


class Project:
    """Every module of the three packages under `root`, and its import edges to other project modules."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root
        self.files = {module_name_in(p, root): p for pkg in PACKAGES for p in source_files(pkg, root)}
        self.edges: dict[str, dict[str, int]] = defaultdict(dict)  # module -> {imported module: line}
        self.private: list[str] = []
        for mod, path in self.files.items():
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            aliases: dict[str, str] = {}
            for target, names, line in _imports(tree):
                if target.split(".")[0] not in PACKAGES:
                    continue
                hits = [f"{target}.{n}" if f"{target}.{n}" in self.files else None for n in names]
                for name, hit in zip(names, hits):
                    if hit is None and name.startswith("_") and not name.startswith("__"):
                        self.private.append(f"{path.relative_to(root)}:{line} imports {target}.{name}")
                    if hit is not None:
                        aliases[name] = hit
                resolved = [h for h in hits if h] or [self._resolve(target)]
                for r in resolved:
                    if r is not None and r != mod:
                        self.edges[mod].setdefault(r, line)
            for node in ast.walk(tree):  # alias._private of an imported project module
                if isinstance(node, ast.ImportFrom) and node.module in self.files:
                    for a in node.names:
                        if f"{node.module}.{a.name}" in self.files:
                            aliases[a.asname or a.name] = f"{node.module}.{a.name}"
                elif isinstance(node, ast.Import):
                    for a in node.names:
                        if a.asname and a.name in self.files:
                            aliases[a.asname] = a.name
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                        node.value.id in aliases and node.attr.startswith("_") and not node.attr.startswith("__"):
                    self.private.append(f"{path.relative_to(root)}:{node.lineno} uses "
                                        f"{aliases[node.value.id]}.{node.attr}")

    def _resolve(self, dotted: str) -> str | None:
        """The project module a dotted import names (the longest prefix that is a module)."""
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            cand = ".".join(parts[:i])
            if cand in self.files:
                return cand
        return None


def module_name_in(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def layer_of(module: str) -> tuple[str, int] | None:
    """(sub-package, layer) of a benchmark module: the longest LAYERS prefix."""
    best = None
    for pkg, layer in LAYERS.items():
        if (module == pkg or module.startswith(pkg + ".")) and (best is None or len(pkg) > len(best[0])):
            best = (pkg, layer)
    if best is not None and best[1] == TOP:  # the top layer (API, __main__, cli) is one group
        return ("benchmark (top)", TOP)
    return best


def layer_violations(project: Project) -> list[str]:
    out = []
    for mod, targets in project.edges.items():
        src = layer_of(mod) if mod.startswith("benchmark") else None
        if src is None:
            continue
        for target, line in targets.items():
            dst = layer_of(target) if target.startswith("benchmark") else None
            if dst is None or dst[0] == src[0]:
                continue
            if dst[1] >= src[1]:
                out.append(f"{project.files[mod].relative_to(project.root)}:{line}: {src[0]} (layer {src[1]}) "
                           f"imports {target} ({dst[0]}, layer {dst[1]})")
    return sorted(out)


def cycles(project: Project) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in project.edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(project.files):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def project() -> Project:
    return Project()


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
    assert not violations, "import rule broken (docs/architecture.md):\n" + "\n".join(violations)


def test_only_tracking_imports_mlflow_and_it_does() -> None:
    importers = {p.relative_to(ROOT) for pkg in PACKAGES for p in source_files(pkg) if "mlflow" in imported_roots(p)}
    assert importers == MLFLOW_ALLOWED


def test_every_benchmark_module_has_a_layer(project: Project) -> None:
    assert not [m for m in project.files if m.startswith("benchmark") and layer_of(m) is None]


def test_benchmark_imports_only_downward(project: Project) -> None:
    bad = layer_violations(project)
    assert not bad, "upward or sideways imports (docs/architecture.md, 'Layers'):\n" + "\n".join(bad)


def test_no_import_cycles(project: Project) -> None:
    found = cycles(project)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_private_names_across_modules(project: Project) -> None:
    assert not project.private, "private names used across modules:\n" + "\n".join(sorted(project.private))


def _tree(tmp_path: Path, files: dict[str, str]) -> Project:
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir(exist_ok=True)
        (tmp_path / pkg / "__init__.py").write_text("")
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.parent != tmp_path and not (p.parent / "__init__.py").exists():
            (p.parent / "__init__.py").write_text("")
        p.write_text(text)
    return Project(tmp_path)


def test_the_checks_fail_on_an_upward_import_a_cycle_and_a_private_name(tmp_path: Path) -> None:
    project = _tree(tmp_path, {
        "benchmark/core/cache.py": "def f():\n    from benchmark.engine.suite import SuiteRun\n",
        "benchmark/engine/suite.py": "from benchmark.core.cache import _helper\nclass SuiteRun: ...\n",
        "benchmark/report/tables.py": "from benchmark.itemside import stages\nx = stages._run_entry\n",
        "benchmark/itemside/stages.py": "def _run_entry(): ...\n",
    })
    assert any("benchmark/core/cache.py" in v and "benchmark.engine.suite" in v for v in layer_violations(project))
    assert any("benchmark/report/tables.py" in v for v in layer_violations(project))  # sideways, same layer
    assert ["benchmark.core.cache", "benchmark.engine.suite"] in cycles(project)
    assert any("_helper" in p for p in project.private) and any("_run_entry" in p for p in project.private)


def test_rule_checker_sees_lazy_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def f():\n    import mlflow.tracking\n    from benchmark import x\n    importlib.import_module('qarm.y')\n")
    assert imported_roots(f) == {"mlflow", "benchmark", "qarm"}
