"""The one output module: every human or JSON output of kloudctl goes through here."""

from __future__ import annotations

import json
import re
import sys
import traceback
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from kloudctl.errors import InputError, KloudError

# stdout for results, stderr for diagnostics, so `--json` output stays parseable.
# emoji=False: fingerprints like "...:AB:CD:..." must not turn into emoji codes.
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
_UNBOUNDED = 1_000_000  # columns, to measure a table's natural width
# C0 and C1 control characters but the line break and the tab: text from files, requests
# and other programs' answers (a hostile endpoint's status line) must not drive a terminal.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with its control characters shown escaped (`\\x1b`), never sent as is."""
    return _CONTROL_RE.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def emit_json(data: Any) -> None:
    """Print machine-readable output (stable keys, no colour)."""
    sys.stdout.write(
        json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"
    )


def text(data: str) -> None:
    """Output meant for another program (a zone snippet, a shell script, credentials),
    written to stdout exactly as given: no markup, no wrapping, no line added."""
    sys.stdout.write(data)


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    """A table whose cells are plain text (values from files and tools are never read as
    markup: `[/x]` in a name must print as is); a cell that is already a `Text` keeps its
    style."""
    t = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*(cell if isinstance(cell, Text) else plain(cell) for cell in row))
    return t


def plain(value: Any, style: str = "") -> Text:
    """`value` as text that rich prints as is, optionally styled."""
    return Text("" if value is None else printable(str(value)), style=style)


def line(message: str) -> None:
    """One line of results, printed as is (no markup)."""
    out.print(printable(message), markup=False)


def show(renderable: Any) -> None:
    if isinstance(renderable, Table) and not out.is_terminal and renderable.width is None:
        # Piped or redirected: no screen to fit, and `| grep brieux` must find whole
        # values, so the table takes its natural width instead of cutting cells at 80.
        natural = Measurement.get(out, out.options.update(max_width=_UNBOUNDED), renderable)
        if natural.maximum > out.width:
            renderable.width = natural.maximum
    out.print(renderable)


def info(message: str) -> None:
    err.print(escape(printable(message)))


def ask(question: str) -> None:
    """A question on stderr; the answer is typed after it, on the same line."""
    err.print(question, markup=False, end="")


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(printable(message))}")


def failure(exc: BaseException, *, debug: bool = False) -> int:
    """Say why a run failed, the one way (on stderr), and return kloudctl's exit code.

    The CLI's boundary and the processes kloudctl starts (`python -m kloudctl.sim.serve`)
    both end here. A traceback only with `debug`, and never with local variables (they may
    hold secrets)."""
    if isinstance(exc, KeyboardInterrupt):
        error("interrupted")
        return 130
    if isinstance(exc, BrokenPipeError):
        return 1
    if debug:
        traceback.print_exception(exc)
    if isinstance(exc, KloudError):
        if isinstance(exc, InputError) and len(exc.problems) > 1:
            error(f"{len(exc.problems)} problems found:")
            for problem in exc.problems:
                info(f"  {problem}")
        else:
            error(str(exc))
        return exc.exit_code
    if isinstance(exc, UnicodeEncodeError):
        # A name (a path, a variable) the system cannot encode: it came from the input, as
        # nothing else holds such text; the offending characters are shown escaped.
        shown = exc.object[exc.start : exc.end].encode("unicode_escape").decode("ascii")
        error(f"bad input: '{shown}' cannot be encoded for this system ({exc.reason})")
        return InputError.exit_code
    if isinstance(exc, OSError):  # the machine refused (a full disk, a vanished file)
        where = f"{exc.filename}: " if exc.filename else ""
        error(f"{where}{exc.strerror or exc}")
        return 1
    # Anything else is a bug: say so without leaking locals.
    error(f"internal error: {type(exc).__name__}: {exc} (set KLOUDCTL_DEBUG=1 for a traceback)")
    return 1
