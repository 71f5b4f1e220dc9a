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
        from sdesk.storage.dialect import Dialect

        # (The dialect is not a part: its methods are SQL's own, the connection first.)
        parts = [store, *(getattr(store, name) for name in Store.PARTS)]
        assert len(parts) > 10 and not any(isinstance(part, Dialect) for part in parts)
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


# SQLite's own constructs, by what they are; each has a portable form or a method of
# sdesk/storage/dialect.py's Dialect (issue 20: a SQL dialect seam).
SQLITE_ONLY = {
    "INSERT OR ... (ON CONFLICT ... DO NOTHING/UPDATE)": r"\bINSERT\s+OR\s+(IGNORE|REPLACE|ABORT|FAIL|ROLLBACK)\b",
    "lastrowid (RETURNING id)": r"\blastrowid\b",
    "INDEXED BY (a query shape the planner reads)": r"\bINDEXED\s+BY\b|\bNOT\s+INDEXED\b",
    "IN table (IN (SELECT ...))": r"\bIN\s+[a-z_][\w.]*\b(?!\s*\()",
    "sum of a condition (count(*) FILTER (WHERE ...))": r"\bsum\([^()]*\b(IS|AND|OR|NOT)\b",
    "SQLite's catalogue (dialect.tables, last_id, ...)": r"\bsqlite_(sequence|master|schema)\b",
    "PRAGMA (dialect.configure, checkpoint, ...)": r"\bPRAGMA\b|\bpragma_\w+",
    "time functions (dialect.epoch, plus_days, ...)": r"\b(julianday|unixepoch)\(|(?<![.\w])(strftime|datetime|date)\(['a-z_?]",
    "JSON functions (dialect.json_get, json_array_has)": r"\bjson_(extract|each|tree|set|insert|replace|remove|array|object|"
                                                         r"group_array|group_object|valid|type|patch)\(",
    "FTS5 (dialect.fts_match, fts_rank, fts_snippet)": r"\bMATCH\s+\?|\bbm25\b|\b(snippet|highlight)\(\s*\w+_fts",
    "the backup API (dialect.backup)": r"\bconn\.backup\(",
}


def test_sqlite_only_sql_stays_in_the_dialect():
    """What is SQLite's own is said in sdesk/storage/dialect.py, so that another backend is one more
    Dialect (issue 20). Allowed: dialect.py (the SQLite dialect) and migrations.py (its DDL is
    SQLite's until the next issue gives the migrations a PostgreSQL body). A text scan of every
    line of sdesk/ (docstrings too: they name constructs only where the code uses them)."""
    root = Path(__file__).resolve().parents[1] / "sdesk"
    allowed = {"dialect.py", "migrations.py"}  # by name: wherever a package move puts them
    rules = {what: re.compile(pattern) for what, pattern in SQLITE_ONLY.items()}
    offenders = [f"{path.relative_to(root)}:{number}: {what}"
                 for path in sorted(root.rglob("*.py")) if path.name not in allowed
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 for what, rule in rules.items() if rule.search(line)]
    assert offenders == []


def test_the_sqlite_only_scan_sees_each_construct():
    """Each rule catches the construct it names (the scan above would pass vacuously otherwise),
    and the portable forms pass."""
    caught = ['"INSERT OR IGNORE INTO pages"', "cur.lastrowid", '"FROM events INDEXED BY events_escalated"',
              '"WHERE ticket_id IN purge_ids"', '"sum(ttr IS NOT NULL AND automated)"',
              '"SELECT seq FROM sqlite_sequence"', '"PRAGMA foreign_keys = ON"', '"FROM pragma_table_info(?)"',
              '"julianday(reviewed_at)"', '"unixepoch(created_at)"', "\"datetime(reviewed_at, '+1 days')\"",
              "\"json_extract(data, '$.to')\"", '"FROM json_each(tags)"', '"WHERE kb_fts MATCH ?"',
              '"bm25(kb_fts, 10.0)"', '"snippet(kb_fts, 1)"', "conn.backup(copy)"]
    portable = ['"INSERT INTO pages VALUES (?) ON CONFLICT (id) DO NOTHING RETURNING id"',
                '"WHERE ticket_id IN (SELECT id FROM purge_ids)"', "\"kind IN ('escalated', 'paged')\"",
                '"count(*) FILTER (WHERE ttr IS NOT NULL AND automated)"', "sum(n for n in counts)",
                'dt.strftime("%Y")', "start.date()", "datetime(2026, 1, 1)", "self.db.dialect.json_get('data', '$.to')",
                "x in purge_ids"]
    rules = [re.compile(pattern) for pattern in SQLITE_ONLY.values()]
    assert [line for line in caught if not any(rule.search(line) for rule in rules)] == []
    assert [line for line in portable if any(rule.search(line) for rule in rules)] == []


def test_the_architecture_page_names_every_package_and_only_what_exists():
    """docs/architecture.md is kept true (issue 20): every package and top-level module of sdesk
    is on it, and every sdesk path it names exists."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`(sdesk/[\w/.]*)`", page))
    assert named, "the page names no sdesk path"
    missing = sorted(p for p in named if not (root / p.rstrip("/")).exists())
    assert missing == []
    sdesk = root / "sdesk"
    rooms = [f"sdesk/{p.name}/" for p in sdesk.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    rooms += [f"sdesk/{p.name}" for p in sdesk.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    unnamed = sorted(r for r in rooms if f"`{r}`" not in page and f"`{r.rstrip('/')}`" not in page)
    assert unnamed == []
