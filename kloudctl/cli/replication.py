"""`kloudctl replication run|status|check|restore-test|serve`: restic between cabinets."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.table import Table

from kloudctl import console
from kloudctl.cli.options import (
    FleetContext,
    cabinet_names,
    json_option,
    pass_fleet,
    prometheus_textfile_option,
    testbed_option,
)
from kloudctl.errors import failed_for
from kloudctl.model.types import format_duration, format_size
from kloudctl.replication import status as st
from kloudctl.replication.layout import Layout, replicated_cabinets
from kloudctl.replication.ops import Replicator
from kloudctl.replication.restoretest import restore_test

state_option = click.option(
    "--state-dir",
    envvar="KLOUDCTL_REPLICATION_STATE",
    type=click.Path(file_okay=False),
    help="Replication state folder (default: <fleet>/.state/replication).",
)
now_option = click.option(
    "--now", "now_", metavar="TIME", help="Pretend the time is TIME (epoch or ISO 8601); for tests."
)
target_args = [
    click.argument("cabinet", required=False, shell_complete=cabinet_names),
    click.option("--all", "all_", is_flag=True, help="Every cabinet that replicates."),
]


F = TypeVar("F", bound=Callable[..., Any])


def targets(f: F) -> F:
    for decorator in reversed(target_args):
        f = decorator(f)
    return f


def _replicator(
    ctx: FleetContext, state_dir: str | None, now_: str | None = None, *, read_only: bool = False
) -> Replicator:
    layout = Layout.for_fleet(ctx.root, state_dir, read_only=read_only)
    return Replicator(ctx.fleet(), layout, clock=now_)


def _wrapping(table: Table) -> Table:
    """Long cells (errors and their remedies) wrap onto more lines instead of being cut."""
    for column in table.columns:
        column.overflow = "fold"
    return table


@click.group("replication")
def command() -> None:
    """Continuous encrypted copies of each cabinet on its peer (restic + rest-server)."""


@command.command("run")
@targets
@click.option("--no-prune", is_flag=True, help="Skip retention (forget/prune).")
@click.option("--no-check", is_flag=True, help="Skip the integrity checks.")
@json_option
@state_option
@now_option
@pass_fleet
def run(
    ctx: FleetContext,
    cabinet: str | None,
    all_: bool,
    no_prune: bool,
    no_check: bool,
    as_json: bool,
    state_dir: str | None,
    now_: str | None,
) -> None:
    """Back up, copy new snapshots to the peer, prune, check."""
    rep = _replicator(ctx, state_dir, now_)
    names = replicated_cabinets(ctx.fleet(), cabinet, all_)
    for name in names:  # every `peers: auto` choice can be made, or nothing runs
        rep.peers(name)
    reports = [rep.run(c, prune=not no_prune, check=not no_check) for c in names]
    if as_json:
        console.emit_json([r.as_dict() for r in reports])
    else:
        rows = [
            [r.cabinet, s.name, _result(s.ok, s.warning), f"{s.duration:.1f}s", s.detail]
            for r in reports
            for s in r.steps
        ]
        console.show(
            console.table("Replication run", ["cabinet", "step", "result", "time", "detail"], rows)
        )
    failed = [r.cabinet for r in reports if not r.ok]
    if failed:
        raise failed_for("replication", failed, len(reports))


@command.command("status")
@targets
@json_option
@state_option
@now_option
@pass_fleet
def status(
    ctx: FleetContext,
    cabinet: str | None,
    all_: bool,
    as_json: bool,
    state_dir: str | None,
    now_: str | None,
) -> None:
    """Newest local and copied snapshots, lag, unreplicated snapshots, sizes, last check."""
    if not cabinet:
        all_ = True
    names = replicated_cabinets(ctx.fleet(), cabinet, all_)
    rep = _replicator(ctx, state_dir, now_, read_only=True)
    rows = [row for c in names for row in st.status_of(rep, c)]
    if as_json:
        console.emit_json(rows)
        st.raise_for_status(rows)
        return
    table = []
    for row in rows:
        lag = row.get("lag_seconds")
        checks = row.get("last_check") or {}
        check = (
            ", ".join(f"{k}:{'ok' if v.get('ok') else 'FAILED'}" for k, v in sorted(checks.items()))
            or "never"
        )
        table.append([
            row["cabinet"], row["peer"],
            f"{row['newest_local_id'] or '-'} {_when(row['newest_local'])}".strip(),
            f"{row.get('newest_copied_original') or '-'} {_when(row.get('newest_copied'))}".strip(),
            "-" if lag is None else format_duration(lag),
            "-" if row.get("unreplicated") is None else row["unreplicated"],
            _size(row.get("local_size")), _size(row.get("peer_size")), check,
            row.get("peer_error") or row.get("local_error") or row.get("peer_warning") or "",
        ])  # fmt: skip
    console.show(
        _wrapping(console.table(
            "Replication status",
            ["cabinet", "peer", "newest local", "newest copied (original)", "lag", "unreplicated",
             "local size", "peer size", "last check", "error"],
            table,
        ))
    )  # fmt: skip
    st.raise_for_status(rows)


def _when(stamp: str | None) -> str:
    return stamp[:19].replace("T", " ") if stamp else ""


def _result(ok: bool, warning: bool) -> str:
    return ("warning" if warning else "ok") if ok else "FAILED"


def _size(n: int | None) -> str:
    return "-" if n is None else format_size(n)


@command.command("check")
@targets
@json_option
@prometheus_textfile_option
@click.option(
    "--integrity", is_flag=True, help="Run the tiered restic checks now (local and peer)."
)
@state_option
@now_option
@pass_fleet
def check(
    ctx: FleetContext,
    cabinet: str | None,
    all_: bool,
    as_json: bool,
    prometheus_textfile: str | None,
    integrity: bool,
    state_dir: str | None,
    now_: str | None,
) -> None:
    """Monitoring-plugin check for cron: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
    code, line, results = st.cron_check(
        lambda: replicated_cabinets(ctx.fleet(), cabinet, all_),
        lambda: _replicator(ctx, state_dir, now_, read_only=True),
        integrity=integrity,
        textfile=prometheus_textfile,
    )
    if as_json:
        console.emit_json(
            {
                "status": st.NAMES[code],
                "code": code,
                "summary": line,
                "jobs": [j.as_dict() for j in results],
            }
        )
    else:
        console.line(line)
    sys.exit(code)


@command.command("restore-test")
@targets
@click.option(
    "--sample",
    type=click.IntRange(1, 10_000),
    default=5,
    show_default=True,
    help="Files restored per cabinet (1 to 10000).",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**63 - 1),
    help="Seed of the sample, for reproducible picks (0 to 2**63-1).",
)
@json_option
@state_option
@pass_fleet
def restore_test_(
    ctx: FleetContext,
    cabinet: str | None,
    all_: bool,
    sample: int,
    seed: int | None,
    as_json: bool,
    state_dir: str | None,
) -> None:
    """Restore a sample from the peer copy into a scratch folder and compare with the source."""
    rep = _replicator(ctx, state_dir)
    reports = [
        r
        for c in replicated_cabinets(ctx.fleet(), cabinet, all_)
        for r in restore_test(rep, c, sample=sample, seed=seed)
    ]
    if as_json:
        console.emit_json(reports)
    else:
        rows = [
            [r["cabinet"], r["peer"], r["snapshot"], f["path"], f["result"]]
            for r in reports
            for f in r["files"]
        ]
        console.show(
            console.table(
                "Restore test (from the peer copy)",
                ["cabinet", "peer", "snapshot", "file", "result"],
                rows,
            )
        )
    bad = [f"{r['cabinet']}->{r['peer']}" for r in reports if not r["ok"]]
    if bad:
        raise failed_for("restore test", bad, len(reports))


@command.command("deploy")
@targets
@testbed_option("Deploy on")
@json_option
@state_option
@pass_fleet
def deploy_(
    ctx: FleetContext,
    cabinet: str | None,
    all_: bool,
    use_testbed: bool | None,
    as_json: bool,
    state_dir: str | None,
) -> None:
    """Put replication on the cabinets: rest-servers, then kloudctl, restic, keys and timers.

    Afterwards run, status, check and restore-test of these cabinets execute on them over
    SSH. Exit 3 when some hosts failed (the others finish).
    """
    from kloudctl.replication.deploy import deploy
    from kloudctl.report.hosts import Progress, recap_json, render_recap
    from kloudctl.testbed import bed as testbed

    names = replicated_cabinets(ctx.fleet(), cabinet, all_)
    state = testbed.target_state(ctx.root, names, use_testbed)
    progress = Progress(names)
    with progress.shown():
        result = deploy(
            ctx.root,
            Layout.for_fleet(ctx.root, state_dir),
            names,
            testbed_state=state,
            on_event=progress,
        )
    if as_json:
        console.emit_json(recap_json(result))
    else:
        render_recap(result)
    result.raise_for_status()


@command.command("serve")
@click.argument("cabinets", nargs=-1, shell_complete=cabinet_names)
@state_option
@pass_fleet
def serve(ctx: FleetContext, cabinets: tuple[str, ...], state_dir: str | None) -> None:
    """Run a rest-server per cabinet on loopback (127.0.0.x) until interrupted (demo, tests)."""
    from kloudctl.replication.serve import loopback  # needs cryptography: not on cabinets

    layout = Layout.for_fleet(ctx.root, state_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with loopback(layout, ctx.fleet(), list(cabinets) or None) as servers:
        for name, server in servers.servers.items():
            console.info(f"{name}: rest-server at {server.url} (append-only, private repos, TLS)")
        console.info("ready")
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
