"""The one output module prints values from files and tools as they are."""

from __future__ import annotations

import pytest
from rich.console import Console

from kloudctl import console


@pytest.mark.parametrize("value", ["[/x]", "[bold]brieux[/]", "a[b", "[link=file:///etc]x"])
def test_table_cells_are_never_read_as_markup(value: str) -> None:
    # A remote or declared value holding rich markup once raised MarkupError (an internal
    # error) or printed something else than the value.
    screen = Console(width=200, record=True, highlight=False)
    screen.print(console.table("t", ["name"], [[value], [None]]))
    assert value in screen.export_text()


def test_line_prints_brackets_as_is(capsys: pytest.CaptureFixture[str]) -> None:
    console.line("site: Salle [B] — 1 rue [/x]")
    assert "site: Salle [B] — 1 rue [/x]" in capsys.readouterr().out


def test_a_name_the_system_cannot_encode_is_bad_input(tmp_path) -> None:
    # A lone surrogate cannot reach a real argv, but an API caller or a generated name can
    # hand one over: the file system refuses to encode it, which is bad input (exit 2),
    # never an internal error.
    from tests.unit.inprocess import invoke

    ran = invoke("sim", "status", "--state-dir", f"{tmp_path}/\ud800")
    assert ran.code == 2, ran.output
    assert "internal error" not in ran.output
    assert "bad input: '\\ud800' cannot be encoded for this system" in ran.output
