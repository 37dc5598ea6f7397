"""The shape of the code, checked: what docs/architecture.md promises a newcomer.

- no import cycles in gateway/ (every import counts, lazy ones inside functions too: a cycle
  hidden in a function is still two modules that cannot be understood one without the other);
- no module over ~500 lines;
- inputs never import sinks, and the pure core (events, policy, state, wire) imports no I/O;
- ``fmfb --version``, ``fmfb --help`` and ``fmfb journal list`` load neither pydantic's config
  model nor boto3 nor awscrt (each is a real process, as a person runs it).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "gateway"
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Lines inside ``if TYPE_CHECKING:`` blocks: not imports at run time."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The gateway modules ``name`` imports at run time, anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for dotted in targets:
            # The deepest gateway module the name refers to.
            target = dotted
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    graph = {name: imports_of(name, path, known) for name, path in mods.items()}
    # A package's own __init__ is imported with any of its modules: not a cycle of interest.
    return {
        name: {t for t in targets if not name.startswith(f"{t}.")}
        for name, targets in graph.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_gateway():
    assert cycles(import_graph()) == []


def test_no_module_is_over_the_size_limit():
    big = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert big == {}, f"one job per module: split these ({MAX_LINES} lines at most): {big}"


def reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_inputs_do_not_import_sinks():
    graph = import_graph()
    for name in graph:
        if name.startswith("gateway.inputs"):
            assert not {m for m in graph[name] if m.startswith("gateway.sinks")}, name


@pytest.mark.parametrize("core", ["gateway.events", "gateway.policy", "gateway.state"])
def test_the_pure_core_imports_no_io(core):
    graph = import_graph()
    reached = reaches(graph, core) | {core}
    io = {"gateway.journal", "gateway.daemon", "gateway.mqtt_link", "gateway.wire"}
    assert not {m for m in reached if any(m == x or m.startswith(f"{x}.") for x in io)}


HEAVY = ("pydantic", "gateway.config", "boto3", "botocore", "awscrt", "awsiot", "aiomqtt")


def loaded_by(args: list[str], tmp_path: Path) -> set[str]:
    probe = (
        "import sys, json\n"
        "from gateway.cli import main\n"
        "try:\n"
        f"    main({args!r}, prog_name='fmfb')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"json.dump(sorted(sys.modules), open({str(tmp_path / 'mods.json')!r}, 'w'))\n"
    )
    subprocess.run(
        [sys.executable, "-c", probe],
        check=True,
        capture_output=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    return set(json.loads((tmp_path / "mods.json").read_text()))


def heavy_in(mods: set[str]) -> set[str]:
    return {m for m in mods if any(m == h or m.startswith(f"{h}.") for h in HEAVY)}


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["journal", "--help"]])
def test_help_and_version_load_nothing_heavy(args, tmp_path):
    assert heavy_in(loaded_by(args, tmp_path)) == set()


def test_journal_list_loads_nothing_heavy(tmp_path):
    from gateway.journal import Journal  # noqa: PLC0415

    journal = tmp_path / "journal.db"
    Journal.open(journal).close()
    mods = loaded_by(["journal", "list", "--journal", str(journal)], tmp_path)
    assert "gateway.commands.inspect" in mods  # it did run
    assert heavy_in(mods) == set()


def _walk(path: Path) -> Iterator[Path]:
    yield from sorted(path.rglob("*.py"))


def test_code_cites_the_design_in_the_repository():
    stale = [
        str(p.relative_to(REPO))
        for p in [*_walk(PACKAGE), *_walk(REPO / "tests"), *_walk(REPO / "bench")]
        if "DESIGN.md" in p.read_text(encoding="utf-8") and p.name != "test_architecture.py"
    ]
    assert stale == [], "cite docs/architecture.md, not a design document outside the repository"
