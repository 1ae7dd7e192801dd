"""Functions fit on a screen: none in the package's folders runs past MAX_LINES (decorators to last line) unless a
comment containing "long because" sits on the line before its `def` (or its decorators) or on its first body
line, saying why it stays long."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("edge_msa", "compress", "export", "benchmarks")
MAX_LINES = 60
REASON = "long because"


def long_functions(source: str, max_lines: int = MAX_LINES) -> list[tuple[str, int, int]]:
    """(name, def line, length) of each function in `source` longer than `max_lines` with no REASON comment."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        start = min([node.lineno] + [d.lineno for d in node.decorator_list])
        length = node.end_lineno - start + 1
        before = lines[start - 2] if start >= 2 else ""
        head = lines[node.lineno - 1:node.body[0].lineno]  # the signature up to the first body line
        explained = REASON in before or any(REASON in line for line in head)
        if length > max_lines and not explained:
            found.append((node.name, node.lineno, length))
    return found


def test_no_function_longer_than_a_screen():
    offenders = [f"{path.relative_to(ROOT)}:{line} {name} ({length} lines)"
                 for folder in FOLDERS for path in sorted((ROOT / folder).rglob("*.py"))
                 for name, line, length in long_functions(path.read_text(encoding="utf-8"))]
    assert not offenders, (f"functions over {MAX_LINES} lines; split them, or say why on the line before the def "
                           f"('# {REASON} ...'):\n" + "\n".join(offenders))


@pytest.mark.parametrize("comment_line, flagged", [(None, True), (0, False), (1, False), (3, True)])
def test_the_rule_itself(comment_line, flagged):
    """A 62-line function is flagged unless the reason sits just above its def or on its first body line
    (not further down)."""
    body = ["    x = 0"] + ["    x += 1"] * 59 + ["    return x"]
    lines = ["def f():"] + body
    if comment_line is not None:
        lines.insert(comment_line, f"# {REASON} it is a table")
    assert bool(long_functions("\n".join(lines) + "\n")) is flagged
