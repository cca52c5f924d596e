"""The import rule (docs/architecture.md): node < tools < agent < tui, and no cycles.

Every import is read from the source (AST), top-level or inside a function, plus module names in
strings (``importlib.import_module("cloudisense.agent…")``, ``python -m cloudisense.tui…``): a lazy
import is still a dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("node", "tools", "agent", "tui", "prompts")
#: what each package may import (besides itself)
ALLOWED = {
    "node": set(),
    "prompts": set(),
    "tools": {"node", "prompts"},
    "agent": {"node", "tools", "prompts"},
    "tui": {"node", "tools", "agent", "prompts"},
}
NAME_IN_STRING = re.compile(r"\bcloudisense\.(node|tools|agent|tui|prompts)\b")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["cloudisense", *parts])


def from_target(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from X import ...`` in ``package`` reads from (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, mod: str = "") -> set[str]:
    """Every cloudisense.* module ``path`` (module ``mod``) names: absolute, relative and in strings."""
    mod = mod or module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = from_target(node, package)
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.update(f"cloudisense.{m.group(1)}" for m in NAME_IN_STRING.finditer(node.value))
    return {f for f in found if f.startswith("cloudisense.")}


def package_of(module: str) -> str:
    return module.split(".")[1]


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def test_the_scan_sees_relative_lazy_and_string_imports(tmp_path):
    # the rule is only as good as the scan: check it on a file that hides its imports three ways
    probe = tmp_path / "probe.py"
    probe.write_text("from ..agent import x\n"
                     "def f():\n    from cloudisense.tui import app\n"
                     "CMD = ['python', '-m', 'cloudisense.tools.mcp']\n", encoding="utf-8")
    found = {package_of(m) for m in imports_of(probe, "cloudisense.node.probe")}
    assert {"agent", "tui", "tools"} <= found


def test_each_package_imports_only_the_layers_below_it():
    wrong = []
    for path in sources():
        own = package_of(module_name(path))
        for target in sorted(imports_of(path)):
            other = package_of(target)
            if other != own and other not in ALLOWED[own]:
                wrong.append(f"{path.relative_to(ROOT)} imports {target} ({own} may import "
                             f"{sorted(ALLOWED[own]) or 'nothing of ours'})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_between_packages():
    edges: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for path in sources():
        own = package_of(module_name(path))
        edges[own].update(package_of(t) for t in imports_of(path) if package_of(t) != own)
    # a depth-first search for a back edge
    state: dict[str, int] = {}

    def visit(p: str, trail: list[str]) -> list[str] | None:
        state[p] = 1
        for q in sorted(edges[p]):
            if state.get(q) == 1:
                return [*trail, p, q]
            if q not in state and (cycle := visit(q, [*trail, p])):
                return cycle
        state[p] = 2
        return None

    for p in PACKAGES:
        if p not in state:
            cycle = visit(p, [])
            assert cycle is None, " -> ".join(cycle)


# --- between modules ------------------------------------------------------------------------

def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sources()}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` (annotations only, never run)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo += node.orelse
        else:
            todo += ast.iter_child_nodes(node)
    return out


def module_imports(path: Path, known: dict[str, Path], mod: str = "") -> set[str]:
    """The modules of ours that ``path`` imports when it runs, at the top or lazily inside a function:
    ``from P import x`` is module P.x when that is a module, else P (the package's ``__init__``).
    Parent packages that Python initialises on the way are not counted (they are not what the code
    asked for), nor imports under ``if TYPE_CHECKING:`` (they never run)."""
    mod = mod or module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            target = from_target(node, package)
            for a in node.names:
                if f"{target}.{a.name}" in known:
                    out.add(f"{target}.{a.name}")
                elif target in known:
                    out.add(target)
    out.discard(mod)
    return out


def module_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    groups: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            connect(v)
    cycles = []
    for group in groups:   # a shortest way back to the group's first module, within the group
        start = min(group)
        prev: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in prev:
            nxt = []
            for v in frontier:
                for w in sorted(edges[v] & group):
                    if w not in prev:
                        prev[w] = v
                        nxt.append(w)
            frontier = nxt
        path = [start]
        while (v := prev[path[-1]]) != start:
            path.append(v)
        cycles.append([start, *reversed(path)])
    return cycles


def test_the_module_scan_sees_lazy_and_relative_imports_but_not_type_checking_ones(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\n"
                     "from ._a import x\n"
                     "if TYPE_CHECKING:\n    from ._b import y\n"
                     "def f():\n    from . import _c\n    import cloudisense.node._d\n", encoding="utf-8")
    known = {f"cloudisense.node.{m}": probe for m in ("_a", "_b", "_c", "_d")}
    found = module_imports(probe, known, "cloudisense.node.probe")
    assert found == {"cloudisense.node._a", "cloudisense.node._c", "cloudisense.node._d"}


def test_the_module_cycle_search_reports_each_cycle_as_a_path():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": {"e"}}
    assert module_cycles(edges) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert module_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    known = all_modules()
    edges = {m: module_imports(p, known) for m, p in known.items()}
    cycles = module_cycles(edges)
    assert not cycles, "import cycles (a package __init__ re-exports; its submodules import the defining " \
                       "submodule, not the package):\n" + "\n".join(" -> ".join(c) for c in cycles)
