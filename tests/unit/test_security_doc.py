"""docs/security.md names, for each thing an actor cannot do, the test that proves it.
Those names must stay true: every test function, test file and validation corpus case it
names exists (a renamed or removed test fails here, not silently in the threat model)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.unit.test_validation_corpus import CASES

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "security.md").read_text()


def _test_functions() -> dict[str, set[str]]:
    """Test file (relative path) -> names of its test functions."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        names = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")
        }
        found[str(path.relative_to(REPO))] = names
    return found


def test_every_named_test_exists() -> None:
    tests = _test_functions()
    everywhere = set().union(*tests.values())
    qualified = re.findall(r"`(tests/[\w/]+\.py)(?:::(test_\w+))?`", DOC)
    assert len(qualified) >= 10
    for file, name in qualified:
        assert file in tests, f"docs/security.md names {file}, which does not exist"
        if name:
            assert name in tests[file], f"docs/security.md names {file}::{name}: not there"
    bare = set(re.findall(r"`(test_\w+)`", DOC))
    assert bare, "the document names tests"
    missing = sorted(name for name in bare if name not in everywhere)
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"


def test_every_named_corpus_case_exists() -> None:
    ids = {case.id for case in CASES}
    cited = {
        name
        for run in re.findall(r"cases? ((?:`[a-z0-9*-]+`(?:, | and )?)+)", DOC)
        for name in re.findall(r"`([a-z0-9*-]+)`", run)
    }
    assert len(cited) >= 5
    for case in cited:
        if case.endswith("*"):
            assert any(i.startswith(case[:-1]) for i in ids), f"no corpus case {case}"
        else:
            assert case in ids, f"docs/security.md names corpus case {case}: not there"
