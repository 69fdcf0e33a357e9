"""The layout's rules, checked on the source: no import circles, no import that runs back up.

Every import statement counts, at module level and inside functions; only
``if TYPE_CHECKING:`` blocks are left out (they never run).
"""

from __future__ import annotations

import ast
import re
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


def _private_names(path: Path) -> list[str]:
    """Private modules imported, and private attributes of imported modules used (``atexit._run_exitfuncs``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    aliases: dict[str, str] = {}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found += [m for m in modules if not m.startswith(PACKAGES)
                  and any(part.startswith("_") and not part.startswith("__") for part in m.split("."))]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner, attr = node.value.id, node.attr
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
              and len(node.args) >= 2 and isinstance(node.args[0], ast.Name) and isinstance(node.args[1], ast.Constant)):
            owner, attr = node.args[0].id, str(node.args[1].value)
        else:
            continue
        if (owner in aliases and attr.startswith("_") and not attr.startswith("__")
                and not aliases[owner].startswith(PACKAGES) and f"{owner}.{attr}" != "os._exit"):
            found.append(f"{aliases[owner]}.{attr}")
    return found


@pytest.mark.parametrize("role", ["process", "face"])
def test_the_engine_and_its_face_use_no_private_name_of_another_package(role: str) -> None:
    # pytest, xdist, execnet and CPython keep their private names free to change: the process
    # layer and the BatchRunner face (which run without pytest) use none (docs/internals.md).
    used = {module: names for module, path in MODULES.items() if _role(module) == role
            if (names := _private_names(path))}
    assert used == {}


def test_every_private_name_of_another_package_is_listed_in_the_internals() -> None:
    # Each one kept has its entry in docs/internals.md (why, its gain, its canary); one removed stays out.
    listed = set(re.findall(r"`([^`]+)`", (ROOT / "docs" / "internals.md").read_text()))
    unlisted = {module: [name for name in names if not any(name.rsplit(".", 1)[-1] in entry for entry in listed)]
                for module, path in MODULES.items() if (names := _private_names(path))}
    assert {module: names for module, names in unlisted.items() if names} == {}


def test_the_private_name_check_sees_imports_and_attributes(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import atexit\nimport _signal as raw\nfrom _pytest import runner\nimport os\n"
                      "atexit._run_exitfuncs()\nos._exit(0)\nfrom pytest_batchrunner import _version\n"
                      "import sys, _thread\ngetattr(sys, '_getframe', None)\n")
    assert sorted(_private_names(source)) == ["_pytest", "_pytest.runner", "_signal", "_thread", "atexit._run_exitfuncs",
                                              "sys._getframe"]
