"""`kloudctl replication run|status|check|restore-test|serve`: restic between cabinets."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from kloudctl import console
from kloudctl.cli.options import FleetContext, cabinet_names, json_option, pass_fleet
from kloudctl.errors import PartialFailure
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


def targets(f):  # type: ignore[no-untyped-def]
    for decorator in reversed(target_args):
        f = decorator(f)
    return f


def _replicator(ctx: FleetContext, state_dir: str | None, now_: str | None = None) -> Replicator:
    return Replicator(ctx.fleet(), Layout.for_fleet(ctx.root, state_dir), clock=now_)


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
def run(ctx, cabinet, all_, no_prune, no_check, as_json, state_dir, now_):  # type: ignore[no-untyped-def]
    """Back up, copy new snapshots to the peer, prune, check."""
    rep = _replicator(ctx, state_dir, now_)
    reports = [
        rep.run(c, prune=not no_prune, check=not no_check)
        for c in replicated_cabinets(ctx.fleet(), cabinet, all_)
    ]
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
        raise PartialFailure(f"replication failed for: {', '.join(failed)}")


@command.command("status")
@targets
@json_option
@state_option
@now_option
@pass_fleet
def status(ctx, cabinet, all_, as_json, state_dir, now_):  # type: ignore[no-untyped-def]
    """Newest local and copied snapshots, lag, unreplicated snapshots, sizes, last check."""
    if not cabinet:
        all_ = True
    rep = _replicator(ctx, state_dir, now_)
    rows = [
        row for c in replicated_cabinets(ctx.fleet(), cabinet, all_) for row in st.status_of(rep, c)
    ]
    if as_json:
        console.emit_json(rows)
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
            "-" if lag is None else st.format_duration(lag),
            "-" if row.get("unreplicated") is None else row["unreplicated"],
            _size(row.get("local_size")), _size(row.get("peer_size")), check,
            row.get("peer_error") or row.get("local_error") or "",
        ])  # fmt: skip
    console.show(
        console.table(
            "Replication status",
            ["cabinet", "peer", "newest local", "newest copied (original)", "lag", "unreplicated",
             "local size", "peer size", "last check", "error"],
            table,
        )
    )  # fmt: skip


def _when(stamp: str | None) -> str:
    return stamp[:19].replace("T", " ") if stamp else ""


def _result(ok: bool, warning: bool) -> str:
    return ("warning" if warning else "ok") if ok else "FAILED"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@command.command("check")
@targets
@json_option
@click.option(
    "--prometheus-textfile", type=click.Path(dir_okay=False), help="Also write metrics here."
)
@click.option(
    "--integrity", is_flag=True, help="Run the tiered restic checks now (local and peer)."
)
@state_option
@now_option
@pass_fleet
def check(ctx, cabinet, all_, as_json, prometheus_textfile, integrity, state_dir, now_):  # type: ignore[no-untyped-def]
    """Monitoring-plugin check for cron: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
    try:
        rep = _replicator(ctx, state_dir, now_)
        names = replicated_cabinets(ctx.fleet(), cabinet, all_)
        results = st.check(rep, names, integrity=integrity)
    except Exception as exc:  # cron must get UNKNOWN, not a traceback or exit 1
        if isinstance(exc, click.exceptions.Exit):
            raise
        line = f"REPLICATION UNKNOWN - {exc}"
        if as_json:
            unknown = {"status": "UNKNOWN", "code": st.UNKNOWN, "summary": line, "jobs": []}
            console.emit_json(unknown)
        else:
            print(line)
        sys.exit(st.UNKNOWN)
    code, line = st.summary_line(results)
    if prometheus_textfile:
        st.write_textfile(Path(prometheus_textfile), st.prometheus(results, rep))
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
        print(line)
    sys.exit(code)


@command.command("restore-test")
@targets
@click.option("--sample", default=5, show_default=True, help="Files restored per cabinet.")
@click.option("--seed", type=int, help="Seed of the sample (reproducible picks).")
@json_option
@state_option
@pass_fleet
def restore_test_(ctx, cabinet, all_, sample, seed, as_json, state_dir):  # type: ignore[no-untyped-def]
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
        raise PartialFailure(f"restore test failed for: {', '.join(bad)}")


@command.command("deploy")
@targets
@click.option(
    "--testbed/--no-testbed",
    "use_testbed",
    default=None,
    help="Deploy on the test cabinets (default: when `kloudctl testbed up` runs them).",
)
@json_option
@state_option
@pass_fleet
def deploy_(ctx, cabinet, all_, use_testbed, as_json, state_dir):  # type: ignore[no-untyped-def]
    """Put replication on the cabinets: rest-servers, then kloudctl, restic, keys and timers.

    Afterwards run, status, check and restore-test of these cabinets execute on them over
    SSH. Exit 3 when some hosts failed (the others finish).
    """
    from kloudctl.replication.deploy import deploy
    from kloudctl.report.hosts import Progress, recap_json, render_recap
    from kloudctl.testbed import bed as testbed

    names = replicated_cabinets(ctx.fleet(), cabinet, all_)
    up = testbed.load(ctx.root)
    if use_testbed is None:
        use_testbed = up is not None
    if use_testbed and (up is None or any(n not in up.hosts for n in names)):
        raise click.UsageError(
            "not every cabinet runs in the testbed (`kloudctl testbed up` them, or --no-testbed)"
        )
    progress = Progress(names)
    with progress.shown():
        result = deploy(
            ctx.root,
            Layout.for_fleet(ctx.root, state_dir),
            names,
            testbed_state=testbed.state_dir(ctx.root) / "testbed.json" if use_testbed else None,
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
def serve(ctx, cabinets, state_dir):  # type: ignore[no-untyped-def]
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
