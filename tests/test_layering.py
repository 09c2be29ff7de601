"""The import rule of docs/architecture.md: a layer never imports a higher one; schemas import no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vcm_eval"
# lowest first; a module may import its own layer and the ones before it
LAYERS = (
    ("utils", "errors", "resources", "device", "revisions", "determinism"),
    ("data",),
    ("vision",),
    ("codecs",),
    ("pipelines",),
    ("metrics",),
    ("report",),
    ("engine",),
    ("anchors", "video_anchors", "suite", "__main__"),
)


def _is_schema(module: str) -> bool:
    """Config schemas (``vcm_eval.config``, ``*.config``): pure dataclasses, importable from anywhere."""
    return module == "vcm_eval.config" or module.endswith(".config")


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(
        f"{module} belongs to no layer of tests/test_layering.py; add its package to LAYERS (and docs/architecture.md)"
    )


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every vcm_eval module ``path`` imports, at the top or inside a function (TYPE_CHECKING too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vcm_eval"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("vcm_eval"))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_layer(path: Path) -> None:
    source = _module_name(path)
    if source == "vcm_eval":
        return
    for target in _imports(path):
        if target == "vcm_eval" or _is_schema(target):
            continue
        if _is_schema(source):
            assert _layer(target) == 0, (
                f"{source} is a config schema and imports {target}: schemas import only schemas and utils"
            )
        else:
            assert _layer(target) <= _layer(source), (
                f"{source} (layer {_layer(source)}) imports {target} (layer {_layer(target)})"
            )


@pytest.mark.parametrize("module", ["vcm_eval.config", "vcm_eval.data.datasets", "vcm_eval.report.report"])
def test_schemas_data_and_report_load_without_torch(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'torchvision', 'compressai') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"importing {module} loads {out}"


def test_config_to_object_construction_refuses_a_field_the_config_lacks() -> None:
    from dataclasses import dataclass

    from vcm_eval.utils.construct import from_config

    class Encoder:
        def __init__(self, *, preset: str = "medium", threads: int = 1) -> None:
            self.preset, self.threads = preset, threads

    @dataclass
    class Renamed:  # "preset" renamed to "speed" in the schema only
        speed: str = "slower"
        threads: int = 2

    with pytest.raises(TypeError, match=r"Encoder takes \['preset'\], which its config Renamed lacks"):
        from_config(Encoder, Renamed())
    built = from_config(Encoder, Renamed(), optional=("preset",))
    assert (built.preset, built.threads) == ("medium", 2)


def test_no_line_is_over_120_characters() -> None:
    """Ruff's E501 lets a line that ends in a pragma (``# type: ignore``, ``# noqa``) run over; the rule is literal."""
    long = [f"{p.relative_to(PACKAGE.parent)}:{i}" for p in MODULES
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if len(line) > 120]  # fmt: skip
    assert not long, f"lines over 120 characters: {long}"


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The vcm_eval modules ``path`` imports when it runs: top level or in a function, not under TYPE_CHECKING
    (type checkers only); ``from package import module`` counts the module."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vcm_eval"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found & modules


def test_no_import_cycle() -> None:
    """No chain of imports leads from a module back to itself (deferred imports inside functions included)."""
    paths = {_module_name(p): p for p in MODULES}
    graph = {m: _runtime_imports(p, set(paths)) - {m} for m, p in paths.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
