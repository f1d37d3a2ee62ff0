"""Imports flow one way: flows -> tasks -> {curriculum, data, model}; Prefect stays in the top layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> top-level modules it must never import
FORBIDDEN = {
    "model": {"prefect", "data", "curriculum", "tasks", "flows", "deployments"},
    "data": {"prefect", "torch", "model", "curriculum", "tasks", "flows", "deployments"},
    "curriculum": {"prefect", "tasks", "flows", "deployments"},
    "tasks": {"flows", "deployments"},
    "flows": {"deployments"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


PREFECT_PACKAGES = {"flows", "tasks", "deployments"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_downwards(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files in {package}/"
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & FORBIDDEN[package]) for path in files
    }
    offenders = {path: bad for path, bad in offenders.items() if bad}
    assert not offenders, f"{package}/ must not import {sorted(FORBIDDEN[package])}: {offenders}"


def test_curriculum_outside_training_imports_no_torch():
    """`curriculum/` says what to train and loads without torch; only `curriculum/training/` trains."""
    training = ROOT / "curriculum" / "training"
    files = [p for p in sorted((ROOT / "curriculum").rglob("*.py")) if training not in p.parents]
    assert files
    offenders = [str(p.relative_to(ROOT)) for p in files if imported_modules(p) & {"torch", "safetensors"}]
    assert not offenders, f"only curriculum/training/ may import torch: {offenders}"


def test_prefect_only_in_the_top_layers():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert PREFECT_PACKAGES <= packages
    offenders = [
        str(path.relative_to(ROOT))
        for package in sorted(packages - PREFECT_PACKAGES)
        for path in sorted((ROOT / package).rglob("*.py"))
        if "prefect" in imported_modules(path)
    ]
    assert not offenders, f"Prefect belongs in {sorted(PREFECT_PACKAGES)} only: {offenders}"


PROJECT_PACKAGES = ("flows", "tasks", "curriculum", "data", "model", "deployments")


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PROJECT_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def project_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports anywhere in it: at the top, in a function (a lazy import) or under
    TYPE_CHECKING; `from package import module` counts as importing the module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module)
    return found & set(modules)


def test_no_import_cycle_not_even_through_a_lazy_import():
    modules = project_modules()
    graph = {name: project_imports(path, modules) - {name} for name, path in modules.items()}
    cycles, done = [], set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycles.append(trail[trail.index(name):] + [name])
            return
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles[:5])
