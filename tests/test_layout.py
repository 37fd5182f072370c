"""The package's shape: no import cycle among ``dta_lib`` modules, no module over the size limit, and the
documented import paths.

The import graph is read from the AST of every module (every ``import`` statement, also those inside functions,
which are cycles all the same; importing a submodule implicitly imports its parent packages, which is not counted
as an edge). ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dta_lib"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _resolve(current: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def import_graph() -> dict[str, set[str]]:
    """``{module: {dta_lib modules it imports}}`` from the AST of every module of the package."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                # ``import a.b.c`` names the deepest module that exists
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("dta_lib"):
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_graph_is_read_from_the_source():
    graph = import_graph()
    assert "dta_lib.checkpoint" in graph["dta_lib.train"]
    assert "dta_lib.snn.neuron" in graph["dta_lib.models.ms_resnet"]
    # the cycle finder finds a cycle when there is one
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_lower_layers_do_not_import_upper_ones():
    """snn < models < data < distributed/checkpoint < train < analysis < runs < studies < viz < bench/tools: no arrow
    back down the stack."""
    order = ["snn", "models", "data", "distributed", "checkpoint", "train", "analysis", "runs", "studies", "viz", "bench",
             "campaign"]
    rank = {layer: i for i, layer in enumerate(order)}

    def layer(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 and parts[1] in rank else None

    back = [(m, t) for m, targets in import_graph().items() for t in targets
            if layer(m) and layer(t) and rank[layer(t)] > rank[layer(m)]]  # type: ignore[index]
    assert not back, f"imports from a lower layer into a higher one: {back}"




def test_no_module_re_exports_another():
    """One import path per name: no star import, and no module but ``dta_lib`` itself (the paper's names: ``LIF``,
    ``DTA``, ``ms_resnet18``, ...) declares ``__all__`` (a leading underscore says what is private)."""
    found = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text(), str(path))
        found += [f"{name}: import *" for n in tree.body if isinstance(n, ast.ImportFrom) and n.names[0].name == "*"]
        exported = [ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                    and any(getattr(t, "id", None) == "__all__" for t in n.targets)]
        if name != "dta_lib":
            found += [f"{name}: __all__ = {names}" for names in exported]
    assert not found, f"star imports or __all__ outside dta_lib: {found}"
