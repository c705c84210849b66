"""Guardrail: modules import only downward, so the text -> tokens -> model -> run -> PDF story stays readable."""

from __future__ import annotations

import ast
from pathlib import Path

import scratchllm

# Lower number = lower layer. A module may import only from strictly lower layers (or its own package).
LAYERS = {
    "config": 0, "metrics": 0,
    "tokenizer": 1, "model": 1, "runfolder": 1, "device": 1, "optim": 1, "doctor_rules": 1,
    "data": 2, "convert": 2, "checkpoint": 2, "distributed": 2, "chat": 2, "evaluate": 2, "probe": 2,
    "doctor_finetune": 2,
    "generate": 3, "doctor": 3, "sft_data": 3, "qa": 3,
    "session": 4, "assistant": 4,
    "train": 5,
    "viz": 6, "lr_find": 6, "recipe": 6, "finetune": 6,
    "report": 7, "speedrun": 7,
    "quickstart": 8, "serve": 8,
    "cli": 9,
}
EXEMPT = {"__init__", "__main__", "assets"}
PACKAGE = Path(scratchllm.__file__).parent


def _top(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "scratchllm" and len(parts) > 1 else None


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "scratchllm":
                found.update(alias.name for alias in node.names)
            elif top := _top(node.module):
                found.add(top)
        elif isinstance(node, ast.Import):
            found.update(t for alias in node.names if (t := _top(alias.name)))
    return found


def test_every_module_has_a_layer():
    modules = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    missing = modules - set(LAYERS) - EXEMPT
    assert not missing, f"add these modules to LAYERS in tests/test_layering.py: {sorted(missing)}"


def test_imports_point_only_downward():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if own in EXEMPT:
            continue
        for target in _imports(path) - {own} - EXEMPT:
            if LAYERS.get(target, 99) >= LAYERS[own]:
                bad.append(f"{path.relative_to(PACKAGE)} imports {target}")
    assert not bad, "upward imports: " + "; ".join(sorted(bad))
