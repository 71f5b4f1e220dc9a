"""Rules the suite keeps so that it passes on a fresh clone with the CPUs busy (issue 19, item 1)."""

import re
from pathlib import Path

import hypothesis


def test_no_property_test_can_fail_for_being_slow():
    """A hypothesis time limit measures the machine, not sdesk: the profile conftest loads turns
    the deadline and the too_slow health check off, and a test that lists its own suppressed
    health checks (which replaces the profile's list) lists too_slow as well."""
    current = hypothesis.settings()
    assert current.deadline is None and hypothesis.HealthCheck.too_slow in current.suppress_health_check
    offenders = []
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"suppress_health_check\s*=", line) and "too_slow" not in line:
                offenders.append(f"{path.name}:{number}")
            if re.search(r"settings\(.*deadline\s*=\s*(?!None)", line):
                offenders.append(f"{path.name}:{number} (a deadline)")
    assert offenders == []


def test_faces_run_no_sql():
    """The CLI, the TUI, serve and the demo call the store; they never touch its connection
    (issue 20); backup, restore, export and import too, through the store's methods."""
    root = Path(__file__).resolve().parents[1] / "sdesk"
    faces = [root / "cli.py", root / "serve.py", root / "demo.py", *root.glob("commands/*.py"), *root.glob("tui/*.py")]
    offenders = [f"{path.relative_to(root)}:{number}" for path in faces
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"\.conn\b|\.execute\(", line)]
    assert offenders == []


def _imports(path: Path, module: str, package: str) -> set[str]:
    """The sdesk modules a file imports at run time (lazy imports inside functions too; what
    `if TYPE_CHECKING:` imports is an annotation, not a dependency)."""
    import ast

    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("sdesk"))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[:len(package.split(".")) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.startswith("sdesk"):
                    found.add(target)
                    found.update(f"{target}.{a.name}" for a in child.names)  # `from . import x`: a module x
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def test_the_import_graph_has_no_circle():
    """Arrows point down: no module of sdesk imports, directly or through others, one that
    imports it (issue 20; import-linter's layers in CI say which way down is)."""
    root = Path(__file__).resolve().parents[1]
    modules = {}
    for path in sorted((root / "sdesk").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        modules[name] = (path, name if is_package else name.rsplit(".", 1)[0])
    assert len(modules) > 50  # the package was found
    graph = {name: {m for m in _imports(path, name, package) if m in modules and m != name}
             for name, (path, package) in modules.items()}
    # Tarjan's strongly connected components: any of more than one module is a circle.
    index, low, stack, on_stack, circles, counter = {}, {}, [], set(), [], [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
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
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    assert circles == []


def test_store_methods_take_one_argument_by_position(tmp_path):
    """Past its first argument, every public method of the Store and of its parts takes its
    arguments by name (issue 20): `store.runbooks.run_finish(run, status="failed")`, never a row
    of bare values whose order a reader must look up. A method whose first argument is the write
    transaction (`tx`) may take one more by position."""
    import inspect

    from sdesk.store import Store

    with Store(tmp_path / "desk.db") as store:
        parts = [store, *(part for part in vars(store).values()
                          if type(part).__module__.startswith(("sdesk.store", "sdesk.storage")))]
        assert len(parts) > 10  # the parts were found
        offenders = []
        for part in parts:
            for name, member in inspect.getmembers(type(part)):
                if name.startswith("_") or not callable(inspect.getattr_static(part, name)):
                    continue
                params = inspect.signature(getattr(part, name)).parameters.values()
                positional = [p.name for p in params
                              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
                if len(positional) > (2 if positional[:1] == ["tx"] else 1):
                    offenders.append(f"{type(part).__name__}.{name}({', '.join(positional)})")
    assert offenders == []
