"""The one rule of the architecture: the core imports nothing that touches the world."""

from __future__ import annotations

import ast
from pathlib import Path

import tcpstack.core

CORE = Path(tcpstack.core.__file__).parent
FORBIDDEN = {
    "socket",
    "select",
    "selectors",
    "asyncio",
    "time",
    "random",
    "secrets",
    "os",
    "threading",
    "logging",
    "subprocess",
    "multiprocessing",
    "datetime",
    "io",
    "pathlib",
}
# Other tcpstack layers the core must never import (everything imports the core,
# never the reverse).
OUTER_LAYERS = {"tcpstack.sim", "tcpstack.net", "tcpstack.aio", "tcpstack.viz", "tcpstack.cli"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add(node.module)
    return found


def test_core_modules_exist() -> None:
    names = {p.stem for p in CORE.glob("*.py")}
    assert {"seq", "segment", "codec", "state", "connection", "endpoint", "trace"} <= names


def test_core_imports_nothing_that_touches_the_world() -> None:
    offenders: list[str] = []
    for path in sorted(CORE.rglob("*.py")):
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top in FORBIDDEN or any(
                module == layer or module.startswith(layer + ".") for layer in OUTER_LAYERS
            ):
                offenders.append(f"{path.name}: {module}")
    assert offenders == []


def test_the_walker_would_catch_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import socket\nfrom time import monotonic\n")
    assert imported_modules(bad) == {"socket", "time"}
