"""Structure found in review: serving/ does not reach into flows/, the project's modules form
no import cycle, and importing the service module starts nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("features", "models", "flows", "serving")


def _imports(path: Path) -> set[str]:
    """Project modules a file imports, anywhere in it (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in PACKAGES and _module_path(n)}
    return found


def _module_path(name: str) -> Path | None:
    path = REPO / (name.replace(".", "/") + ".py")
    return path if path.exists() else None


def _graph() -> dict[str, set[str]]:
    graph = {}
    for package in PACKAGES:
        for path in (REPO / package).glob("*.py"):
            graph[f"{package}.{path.stem}"] = _imports(path)
    return graph


def test_serving_does_not_import_flows() -> None:
    offenders = {
        module: sorted(m for m in imports if m.startswith("flows"))
        for module, imports in _graph().items()
        if module.startswith("serving")
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_no_import_cycle_between_project_modules() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph.get(module, ())):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt) :] + [nxt] if nxt in trail else [module, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_importing_the_service_module_starts_nothing(tmp_path: Path) -> None:
    probe = (
        "import os, sys; import serving.service; "
        "print('bentoml' in sys.modules, 'mlflow' in sys.modules)"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BENTOML_HOME": str(tmp_path / "b")}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
    assert list(tmp_path.iterdir()) == []
