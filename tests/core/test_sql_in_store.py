"""SQL lives in core/store only: no other core module holds an SQL statement."""

from __future__ import annotations

import ast
import re
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"
STATEMENT = re.compile(
    r"^\s*(SELECT\b.*\bFROM\b|INSERT INTO\b|UPDATE \w+ SET\b|DELETE FROM\b|PRAGMA\b|BEGIN\b)",
    re.DOTALL,
)
# (file, statement) pairs allowed outside the store: none.
ALLOWED: set[tuple[str, str]] = set()


def _strings(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            found.append(
                "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append(node.value)
    return found


def test_no_sql_outside_the_store() -> None:
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        where = path.relative_to(CORE).as_posix()
        if where.startswith("store/"):
            continue
        for text in _strings(ast.parse(path.read_text())):
            if (where, text) not in ALLOWED and STATEMENT.match(text):
                offenders.append(f"{where}: {text[:60]!r}")
    assert offenders == []
