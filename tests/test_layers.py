"""The layer rule of ARCHITECTURE.md, checked: which package may import which."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STDLIB = set(sys.stdlib_module_names)

ALLOWED: dict[str, set[str]] = {
    "consensus": {"nacl", "cbor2", "lockstep.consensus"},
    "net": {"nacl", "cbor2", "trio", "noise", "structlog", "lockstep.consensus", "lockstep.net"},
    "node/exchange": {"cbor2", "lockstep.consensus", "lockstep.node.exchange"},
    "node": {
        "nacl",
        "cbor2",
        "trio",
        "noise",
        "structlog",
        "hypercorn",
        "starlette",
        "prometheus_client",
        "tomli_w",
        "lockstep.consensus",
        "lockstep.net",
        "lockstep.node",
    },
}

FORBIDDEN_STDLIB: dict[str, set[str]] = {
    # The exchange's contract (node/exchange/__init__.py): no clock, no randomness, no I/O but
    # its one SQLite file, no threads or event loops.
    "node/exchange": {
        "time", "datetime", "random", "secrets", "socket", "select", "selectors", "ssl",
        "threading", "multiprocessing", "concurrent", "asyncio", "subprocess", "signal",
    },
}


def module_name(path: Path) -> str:
    """``node/exchange/ledger.py`` → ``lockstep.node.exchange.ledger`` (``__init__`` → package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["lockstep", *parts])


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file (a function-level or
    ``TYPE_CHECKING`` import is as much a dependency as a top-level one), relative imports
    resolved to absolute names; ``from X import y`` counts as ``X.y`` when ``X.y`` is one of
    our modules, else as ``X``."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                found.add(sub if sub in OUR_MODULES else mod)
    return found


def _our_modules() -> dict[str, Path]:
    found = {}
    for layer in ("consensus", "net", "node", "cli", "testnet"):
        for path in sorted((ROOT / layer).rglob("*.py")):
            found[module_name(path)] = path
    return found


OUR_MODULES = _our_modules()


def _allowed(name: str, layer: str) -> bool:
    top = name.split(".")[0]
    if top in FORBIDDEN_STDLIB.get(layer, set()):
        return False
    if top in STDLIB or top == "__future__":
        return True
    return any(name == a or name.startswith(a + ".") for a in ALLOWED[layer])


def _layer_files(layer: str) -> list[Path]:
    """The files of ``layer``, less those of a more specific layer nested in it."""
    nested = [ROOT / other for other in ALLOWED if other != layer and other.startswith(layer + "/")]
    return [
        p for p in sorted((ROOT / layer).rglob("*.py"))
        if not any(p.is_relative_to(n) for n in nested)
    ]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports(layer: str) -> None:
    bad = []
    for path in _layer_files(layer):
        for name in sorted(imports(path)):
            if not _allowed(name, layer):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "layer rule broken:\n" + "\n".join(bad)


def test_the_check_sees_a_forbidden_import() -> None:
    """The rule bites: the names a daemon module imports would not pass as the exchange's."""
    daemon = imports(ROOT / "node" / "daemon.py")
    assert "trio" in daemon
    assert not all(_allowed(name, "node/exchange") for name in daemon)
    assert not _allowed("time", "node/exchange")
    assert _allowed("lockstep.node.exchange.book", "node/exchange")
    assert not _allowed("lockstep.node.mempool", "node/exchange")


# --------------------------------------------------------------------------- import cycles


def import_graph() -> dict[str, set[str]]:
    """Each of our modules → the modules of ours it imports, anywhere in the file (as
    :func:`imports` counts them). A cycle here is a cycle whatever Python's import order makes
    of it: the modules in it cannot be read, tested or changed one below the other."""
    return {
        name: {m for m in imports(path) if m in OUR_MODULES and m != name}
        for name, path in OUR_MODULES.items()
    }


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph``, each sorted, in a fixed order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def cycle_in(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected ``component``,
    as a path that ends where it starts (``[a, b, a]``); found breadth-first inside it."""
    start, members = component[0], set(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph.get(v, ()) & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in came_from:
                    came_from[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"{component} is not strongly connected")


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle path per strongly connected component of more than one module."""
    return [cycle_in(graph, c) for c in strongly_connected(graph) if len(c) > 1]


def cycle_report(graph: dict[str, set[str]]) -> list[str]:
    """A line per tangle, its shortest cycle ``a -> b -> a``, and every module of the tangle
    when there are more than that cycle shows (breaking the cycle shown may not be enough)."""
    lines = []
    for component in strongly_connected(graph):
        if len(component) > 1:
            path = cycle_in(graph, component)
            line = " -> ".join(path)
            if len(component) > len(path) - 1:
                line += f"  (strongly connected: {', '.join(component)})"
            lines.append(line)
    return lines


def test_no_import_cycles() -> None:
    """Our modules form a hierarchy: no module depends, even for a type hint or inside a
    function, on one that depends back on it."""
    report = cycle_report(import_graph())
    assert not report, "import cycles:\n" + "\n".join(report)


def test_the_cycle_finder_sees_a_cycle() -> None:
    """The check bites: a hand-made cycle is found and printed as its path, an acyclic graph
    passes, and one added edge in our real graph is caught."""
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set(), "e": {"a", "e"}}
    assert import_cycles(graph) == [["a", "b", "c", "a"]]
    assert strongly_connected(graph) == [["a", "b", "c"], ["d"], ["e"]]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert import_cycles({"x": {"y"}, "y": {"x"}}) == [["x", "y", "x"]]
    assert cycle_report({"a": {"b"}, "b": {"a", "c"}, "c": {"a"}}) == [
        "a -> b -> a  (strongly connected: a, b, c)"
    ]

    real = import_graph()
    codec, messages = "lockstep.consensus.codec", "lockstep.consensus.messages"
    assert codec in real[messages]
    real[codec] = real[codec] | {messages}
    assert any({codec, messages} <= set(cycle) for cycle in import_cycles(real))
