"""The layout's rules, checked on the source: no import circles, no import that runs back up.

Every import statement counts, at module level and inside functions; only
``if TYPE_CHECKING:`` blocks are left out (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pytest_batchrunner", "batchrunner")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path) -> set[str]:
    """Every module *name* imports (resolved to the most specific module), TYPE_CHECKING blocks excepted."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in MODULES else source)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _role(module: str) -> str | None:
    for prefix, role in (
        ("pytest_batchrunner.process", "process"),
        ("pytest_batchrunner.reports", "reports"),
        ("pytest_batchrunner.plugin", "plugin"),
        ("pytest_batchrunner.batchfile", "parser"),
        ("pytest_batchrunner.values", "parser"),
        ("batchrunner", "face"),
        ("pytest", "pytest"),
        ("_pytest", "pytest"),
        ("xdist", "pytest"),
    ):
        if module == prefix or module.startswith(prefix + "."):
            return role
    return None


# What each role must not import (by role of the imported module).
FORBIDDEN = {
    "parser": {"pytest", "plugin", "process", "reports", "face"},
    "process": {"pytest", "plugin", "reports", "face"},
    "reports": {"plugin", "face"},
    "plugin": {"face"},
}


def test_every_module_has_a_role() -> None:
    loose = [m for m in MODULES if _role(m) is None and m not in ("pytest_batchrunner", "pytest_batchrunner._version",
                                                                   "pytest_batchrunner.__main__")]
    assert loose == []


def test_no_import_runs_back_up() -> None:
    wrong = [
        f"{module} ({role}) imports {target} ({_role(target)})"
        for module, targets in GRAPH.items()
        if (role := _role(module)) in FORBIDDEN
        for target in sorted(targets)
        if _role(target) in FORBIDDEN[role]
    ]
    assert wrong == []


def test_no_import_circles() -> None:
    inner = {m: {t for t in targets if t in MODULES and t != m} for m, targets in GRAPH.items()}
    cycles: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(inner[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                walk(target)
        path.pop()
        state[module] = 2

    for module in sorted(inner):
        if module not in state:
            walk(module)
    assert cycles == []


def test_the_checker_sees_function_level_imports_and_skips_type_checking(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from batchrunner import api\n"
        "def f():\n    from pytest_batchrunner.plugin import items\n    import pytest\n"
    )
    assert _imports("pytest_batchrunner.process.m", source) == {"typing", "pytest_batchrunner.plugin.items", "pytest"}


@pytest.mark.parametrize("folder", ["pytest_batchrunner/plugin", "pytest_batchrunner/process",
                                    "pytest_batchrunner/reports", "batchrunner"])
def test_each_folder_says_what_it_owns_and_must_not_import(folder: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / folder / "__init__.py").read_text()))
    assert doc and "must not import" in doc.lower() or "may import" in (doc or "").lower()
