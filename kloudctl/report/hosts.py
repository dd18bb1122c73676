"""Showing Ansible runs: live progress per host, the recap table, the failure summary."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.live import Live
from rich.table import Table
from rich.text import Text

from kloudctl import console
from kloudctl.hosts.runner import Event, RunResult


@dataclass
class _HostLine:
    task: str = "waiting"
    ok: int = 0
    changed: int = 0
    failed: int = 0
    state: str = "running"


class Progress:
    """Live table (on stderr): one line per host, its current task and counts."""

    def __init__(self, hosts: list[str]) -> None:
        self.lines = {h: _HostLine() for h in hosts}
        self.started = time.monotonic()
        self.live: Live | None = None

    def __call__(self, event: Event) -> None:
        line = self.lines.get(event.host or "")
        if event.kind == "host_task" and line is not None:
            line.task = f"{event.role} : {event.task}" if event.role else str(event.task)
        elif line is not None and event.kind in ("ok", "changed", "skipped"):
            line.ok += 1
            line.changed += event.kind == "changed"
        elif line is not None and event.kind == "failed":
            line.failed += 1
            line.state = "failed"
        elif line is not None and event.kind == "unreachable":
            line.state = "unreachable"
        elif event.kind == "stats":
            for item in self.lines.values():
                if item.state == "running":
                    item.state = "done"
                    item.task = ""
        if self.live is not None:
            self.live.update(self.render())

    def render(self) -> Table:
        elapsed = time.monotonic() - self.started
        table = Table(
            title=f"Bootstrap ({elapsed:.0f}s)", title_justify="left", header_style="bold"
        )
        for col in ("host", "state", "ok", "changed", "failed", "current task"):
            table.add_column(col)
        colours = {"running": "cyan", "done": "green", "failed": "red", "unreachable": "red"}
        for host, line in self.lines.items():
            table.add_row(
                host,
                Text(line.state, style=colours[line.state]),
                str(line.ok),
                str(line.changed),
                str(line.failed),
                Text(line.task[:70]),
            )
        return table

    @contextmanager
    def shown(self) -> Iterator[Progress]:
        with Live(self.render(), console=console.err, refresh_per_second=4, transient=True) as live:
            self.live = live
            yield self
        self.live = None


def render_recap(result: RunResult) -> None:
    rows = [
        [r.host, r.status, r.ok, r.changed, r.failed, r.unreachable, r.skipped]
        for r in sorted(result.recaps.values(), key=lambda r: r.host)
    ]
    console.show(
        console.table(
            f"Recap: {result.playbook} ({result.seconds:.0f}s)",
            ["host", "status", "ok", "changed", "failed", "unreachable", "skipped"],
            rows,
        )
    )
    if result.failures:
        console.show(
            console.table(
                "Failures",
                ["host", "task", "message"],
                [[f.host, f.task, f.message] for f in result.failures],
            )
        )


def recap_json(result: RunResult) -> dict[str, object]:
    return {
        "playbook": result.playbook,
        "seconds": round(result.seconds, 1),
        "changed": result.changed,
        "hosts": {
            r.host: {
                "status": r.status,
                "ok": r.ok,
                "changed": r.changed,
                "failed": r.failed,
                "unreachable": r.unreachable,
                "skipped": r.skipped,
            }
            for r in result.recaps.values()
        },
        "failures": [
            {"host": f.host, "task": f.task, "message": f.message, "unreachable": f.unreachable}
            for f in result.failures
        ],
    }
