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


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    package = "lockstep." + path.relative_to(ROOT).parts[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.add(package)
            elif node.module:
                found.add(node.module)
    return found


def _allowed(name: str, allowed: set[str]) -> bool:
    top = name.split(".")[0]
    if top in STDLIB or top == "__future__":
        return True
    return any(name == a or name.startswith(a + ".") or (top == a) for a in allowed)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports(layer: str) -> None:
    bad = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for name in sorted(_imports(path)):
            if not _allowed(name, ALLOWED[layer]):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "layer rule broken:\n" + "\n".join(bad)
