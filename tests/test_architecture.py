"""The layout keeps its promises: no import cycles, no private names across modules, short
functions, one naming rule for strategy configs, and a contract document that matches the record.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from ptft_bench.records.record import CONTRACT_BEGIN, CONTRACT_END, RunRecord, contract_markdown
from ptft_bench.strategy.registry import NoParams, list_strategies, strategy_class

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ptft_bench", "strategies")
MAX_FUNCTION_LINES = 60


def is_argument_table(function: str) -> bool:
    """Argument-parser builders read as tables; they may be longer."""
    return (
        function == "build_parser"
        or function.lstrip("_").startswith("add_")
        and (function.endswith("_arguments"))
    )


def _modules() -> dict[str, Path]:
    out = {}
    for base in PACKAGES:
        for path in (REPO / base).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str]]:
    """(module imported, name imported) for every import in the module, lazy ones included."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out += [(base, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names]
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for module, imported in _imports(name, path):
            target = f"{module}.{imported}" if f"{module}.{imported}" in MODULES else module
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert _cycles(_graph()) == []


MAX_TOP_LEVEL_MODULES = 10  # beside __init__ and __main__: the rest lives in a subpackage by role


def test_few_top_level_modules():
    top = sorted(
        p.stem for p in (REPO / "ptft_bench").glob("*.py") if p.stem not in ("__init__", "__main__")
    )
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"{len(top)} top-level modules: {top}"


def _subpackages() -> list[Path]:
    return sorted(
        p.parent
        for p in (REPO / "ptft_bench").rglob("__init__.py")
        if p.parent.name != "ptft_bench"
    )


@pytest.mark.parametrize("folder", _subpackages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_subpackage_says_what_it_owns(folder):
    text = (folder / "__init__.py").read_text()
    docstring = ast.get_docstring(ast.parse(text))
    assert docstring and len(docstring.split()) >= 8, f"{folder}: open with what it owns"


def _package_graph() -> dict[str, set[str]]:
    """The import graph collapsed to ptft_bench's first level (subpackages and top modules)."""

    def top(module: str) -> str | None:
        parts = module.split(".")
        return ".".join(parts[:2]) if parts[0] == "ptft_bench" and len(parts) > 1 else None

    graph: dict[str, set[str]] = {}
    for name, targets in _graph().items():
        src = top(name)
        if src is None:
            continue
        graph.setdefault(src, set())
        for t in targets:
            dst = top(t)
            if dst is not None and dst != src:
                graph[src].add(dst)
                graph.setdefault(dst, set())
    return graph


def test_no_subpackage_imports_a_sibling_that_imports_it_back():
    """Roles are layered (tasks <- models <- strategy <- cost <- run <- sweep): no cycles."""
    assert _cycles(_package_graph()) == []


def test_no_private_names_imported_across_modules():
    bad = [
        f"{name} imports {imported} from {module}"
        for name, path in MODULES.items()
        for module, imported in _imports(name, path)
        if imported.startswith("_")
        and module.split(".")[0] in PACKAGES
        and not imported.startswith("__")
    ]
    assert bad == []


def test_the_engine_does_not_import_strategies():
    """Strategies plug into the engine; only the registry loads them (by name, at run time)."""
    bad = [
        f"{name} imports {target}"
        for name, targets in _graph().items()
        if name.startswith("ptft_bench")
        for target in targets
        if target.startswith("strategies")
    ]
    assert bad == []


def test_no_function_over_60_lines():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                qualified = f"{name}.{node.name}"
                if lines > MAX_FUNCTION_LINES and not is_argument_table(node.name):
                    long.append(f"{qualified}: {lines} lines")
    assert long == []


@pytest.mark.parametrize("info", list_strategies(), ids=lambda i: i.name)
def test_strategy_config_naming_rule(info):
    """A strategy class X has config class XConfig (inherited by subclasses), or NoParams."""
    cls = strategy_class(info.name)
    config = cls.config_class
    owners = [c.__name__ for c in cls.__mro__]
    assert config is NoParams or config.__name__ in {f"{o}Config" for o in owners}, (
        f"{cls.__name__}.config_class is {config.__name__}"
    )


def test_contract_document_matches_the_record():
    text = (REPO / "docs" / "CONTRACTS.md").read_text()
    start, end = text.index(CONTRACT_BEGIN), text.index(CONTRACT_END) + len(CONTRACT_END)
    assert text[start:end] == contract_markdown(), (
        "docs/CONTRACTS.md is out of date: run `python -m ptft_bench.records.record`"
    )
    documented = {f.name for f in dataclasses.fields(RunRecord)}
    assert all(f"`{name}`" in text for name in documented)
