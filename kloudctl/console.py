"""The one output module: every human or JSON output of kloudctl goes through here."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# stdout for results, stderr for diagnostics, so `--json` output stays parseable.
# emoji=False: fingerprints like "...:AB:CD:..." must not turn into emoji codes.
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def emit_json(data: Any) -> None:
    """Print machine-readable output (stable keys, no colour)."""
    sys.stdout.write(
        json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"
    )


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*("" if cell is None else str(cell) for cell in row))
    return t


def show(renderable: Any) -> None:
    out.print(renderable)


def info(message: str) -> None:
    err.print(escape(message))


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}")
