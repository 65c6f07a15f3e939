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
