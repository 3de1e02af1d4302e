"""The package's shape: no import cycle inside vsgm, a torch-free command line, short functions, one default
per option (the workflow's schema states the library's)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import vsgm
from vsgm.options import defaults

PACKAGE = Path(vsgm.__file__).parent
SCHEMA = Path(__file__).parents[1] / "workflow" / "schemas" / "config.schema.yaml"
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path) -> set[str]:
    """The vsgm modules that ``name`` imports anywhere in its file: at module level and inside functions (a
    deferred import, as the commands use to stay torch-free, still ties the two modules together: with a cycle,
    neither can be read, tested or moved without the other)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:  # `from . import x` names a module; `from .x import f` the module x
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return (found & MODULES.keys()) - {name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first node repeated at its end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    return next((c for n in sorted(graph) if n not in state and (c := visit(n))), None)


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_relative_imports_resolve_to_vsgm_modules():
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    assert {"vsgm.cli.ood", "vsgm.cli.train", "vsgm.data.commands", "vsgm.options"} <= graph["vsgm.cli"]
    assert {"vsgm.ood", "vsgm.options", "vsgm.guards", "vsgm.io"} <= graph["vsgm.cli.ood"]
    assert "vsgm.data.registry" in graph["vsgm.data.commands"]


def test_no_import_cycle_inside_vsgm():
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_function_over_60_lines():
    long = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                key = (path.relative_to(PACKAGE).as_posix(), node.name)
                if lines > MAX_FUNCTION_LINES:
                    long[key] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("argv", [["--help"], ["download", "--help"], ["score", "--help"], ["train", "--help"]])
def test_the_command_line_is_built_without_torch(argv):
    """vsgm --help and vsgm download answer without loading torch (seconds on a login node)."""
    code = ("import sys\nfrom vsgm.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    assert e.code == 0, e.code\nassert 'torch' not in sys.modules, 'torch was imported'\n"
            "print('TORCH-FREE')")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: vsgm" in proc.stdout and proc.stdout.rstrip().endswith("TORCH-FREE")


def test_python_dash_m_runs_the_command():
    for module in ("vsgm", "vsgm.cli"):
        proc = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0 and proc.stdout.strip() == f"vsgm {vsgm.__version__}", proc.stderr


@pytest.mark.parametrize("group", ["features", "sweep"])
def test_the_workflow_schema_states_the_library_defaults(group):
    """One default per option: the workflow's schema may not drift from vsgm.options."""
    schema = yaml.safe_load(SCHEMA.read_text())["properties"][group]["properties"]
    for name, default in defaults(group).items():
        assert schema[name]["default"] == default, (group, name, schema[name]["default"], default)
