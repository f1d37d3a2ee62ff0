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


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_downwards(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files in {package}/"
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & FORBIDDEN[package]) for path in files
    }
    offenders = {path: bad for path, bad in offenders.items() if bad}
    assert not offenders, f"{package}/ must not import {sorted(FORBIDDEN[package])}: {offenders}"
