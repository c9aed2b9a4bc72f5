"""The house's import graph: no module of ocr_app, fleetctl or bench imports itself back, by any path.

Every import counts: at the top, inside functions and under TYPE_CHECKING. An import inside a function
that only dodges a cycle hides a knot in the layering; this test finds it.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ocr_app", "fleetctl", "bench")


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the packages by dotted name; a package by its own name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _target(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(found: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports, wherever in the file the import stands."""
    graph: dict[str, set[str]] = {name: set() for name in found}
    for name, path in found.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                graph[name] |= {alias.name for alias in node.names if alias.name in found}
            elif isinstance(node, ast.ImportFrom):
                target = _target(name, path.name == "__init__.py", node)
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    if full in found:
                        graph[name].add(full)
                    elif target in found:
                        graph[name].add(target)
        graph[name].discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            child = next(edges, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_itself_back() -> None:
    knots = cycles(import_graph(modules()))
    assert not knots, "import cycles:\n" + "\n".join(" <-> ".join(knot) for knot in knots)


def test_the_check_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    """The checker itself: a cycle closed only by a function-level or TYPE_CHECKING import is found."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "ocr_app" / "a.py").write_text("from ocr_app import b\n")
    (tmp_path / "ocr_app" / "b.py").write_text("def f():\n    from . import c\n")
    (tmp_path / "ocr_app" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                               "    from ocr_app.a import x\n")
    (tmp_path / "fleetctl" / "d.py").write_text("import ocr_app.a\n")
    assert cycles(import_graph(modules(tmp_path))) == [["ocr_app.a", "ocr_app.b", "ocr_app.c"]]


@pytest.mark.parametrize("command, code", [
    (["ocr_app.engine.catalog", "--help"], 0),
    (["ocr_app.engine.late_resize"], 2),  # a worker's child: SOURCE and TARGET, or its usage line
    (["ocr_app.models.paddle_models", "--help"], 0),
    (["fleetctl", "--help"], 0),
])
def test_documented_module_commands_run(command: list[str], code: int) -> None:
    """Each `python -m` the docs name still answers where they say (bench's are run by test_bench)."""
    proc = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == code, proc.stderr
    assert f"python -m {command[0]}" in (proc.stdout + proc.stderr).replace("\n", " ") or command[0] == "fleetctl"


# The layers of docs/architecture.md ("The map"): what each folder may import besides its own modules
# and its product's leaves. A folder not named here (the package itself, gunicorn_conf, cli) may import
# anything of its own product.
LEAVES = {
    "ocr_app": {"config", "errors", "options", "results", "digest", "pipeline"},
    "fleetctl": {"config", "errors", "procs", "logs", "resources"},
}
MAY_IMPORT = {
    "ocr_app.http": {"ocr_app.service", "ocr_app.jobs", "ocr_app.documents", "ocr_app.ops"},
    "ocr_app.service": {"ocr_app.engine", "ocr_app.models", "ocr_app.documents", "ocr_app.ops"},
    "ocr_app.jobs": {"ocr_app.documents"},
    "ocr_app.documents": set(),
    "ocr_app.engine": {"ocr_app.models"},
    "ocr_app.models": set(),
    "ocr_app.ops": {"ocr_app.engine", "ocr_app.models"},
    "fleetctl.autoscale": {"fleetctl.fleet", "fleetctl.backends", "fleetctl.daemons"},
    "fleetctl.daemons": {"fleetctl.gateway", "fleetctl.cluster", "fleetctl.backends"},
    "fleetctl.fleet": {"fleetctl.backends", "fleetctl.cluster"},
    "fleetctl.backends": {"fleetctl.cluster", "ocr_app"},
    "fleetctl.gateway": {"fleetctl.cluster"},
    "fleetctl.cluster": set(),
}


def layer(module: str) -> str:
    """The folder a module belongs to (`ocr_app.engine`), `ocr_app` for the package's own top modules,
    or `leaf` for a shared leaf module."""
    parts = module.split(".")
    if parts[0] in LEAVES and len(parts) >= 2 and parts[1] in LEAVES[parts[0]]:
        return "leaf"
    return ".".join(parts[:2]) if parts[0] in LEAVES and len(parts) > 2 else parts[0] if len(parts) == 2 and (
        ROOT.joinpath(*parts).with_suffix(".py").exists()) else ".".join(parts[:2])


def test_imports_run_down_the_layers() -> None:
    found = modules()
    wrong = []
    for module, targets in import_graph(found).items():
        here = layer(module)
        if here not in MAY_IMPORT:
            continue
        product = module.split(".")[0]
        for target in targets:
            there = layer(target)
            if there in ("leaf", here) and target.split(".")[0] == product:
                continue
            allowed = MAY_IMPORT[here]
            if there not in allowed and target.split(".")[0] not in allowed:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layers of docs/architecture.md:\n" + "\n".join(sorted(wrong))
