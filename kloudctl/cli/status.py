"""`kloudctl status [CABINET...|--all]`: every cabinet at a glance, with its history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kloudctl import console, files
from kloudctl.cli.options import (
    FleetContext,
    FloatRange,
    cabinet_names,
    federation_state_option,
    json_option,
    pass_fleet,
    prometheus_textfile_option,
)
from kloudctl.errors import InputError, PartialFailure, failed_for
from kloudctl.model.types import format_duration, format_size
from kloudctl.status import history, prometheus
from kloudctl.status.gather import CabinetStatus, gather, probes_for


@click.command("status")
@click.argument("cabinets", nargs=-1, shell_complete=cabinet_names)
@click.option("--all", "all_", is_flag=True, help="Every cabinet of the fleet (the default).")
@json_option
@prometheus_textfile_option
@click.option(
    "--timeout",
    type=FloatRange(0.1, 600),
    default=10.0,
    show_default=True,
    help="Seconds each cabinet is given in all, retries included (0.1 to 600).",
)
# 64: a fleet of 50 cabinets (bench/status.py) is read in one wave rather than two; each
# worker only waits on its cabinet's answers.
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=64,
    show_default=True,
    help="Cabinets read at once (1 to 256).",
)
@click.option(
    "--history",
    "history_file",
    metavar="FILE",
    help="The history's SQLite file (default: <fleet>/.state/status/history.sqlite).",
)
@click.option("--no-history", is_flag=True, help="Do not add this run to the history.")
@click.option(
    "--retention-days",
    type=FloatRange(1, 36500),
    default=history.DEFAULT_RETENTION_DAYS,
    show_default=True,
    help="Samples older than this are dropped from the history (1 to 36500).",
)
@click.option(
    "--replication-state",
    type=click.Path(file_okay=False),
    envvar="KLOUDCTL_REPLICATION_STATE",
    help="Replication state folder (default: <fleet>/.state/replication).",
)
@federation_state_option
@pass_fleet
def command(
    ctx: FleetContext,
    cabinets: tuple[str, ...],
    all_: bool,
    as_json: bool,
    prometheus_textfile: str | None,
    timeout: float,
    workers: int,
    history_file: str | None,
    no_history: bool,
    retention_days: float,
    replication_state: str | None,
    federation_state: str | None,
) -> None:
    """Reachability, versions, guests by tenant, capacity, power, replication, mail and
    federation of each cabinet, read in parallel. Exit 3 when some cabinets could not be
    read, or the federation registry does not verify; 1 when no cabinet could be read."""
    if cabinets and all_:
        raise InputError("give cabinet names or --all, not both")
    fleet = ctx.fleet()
    names = list(cabinets) or sorted(c.name for c in fleet)
    for name in names:
        fleet.cabinet(name)  # an unknown name is bad input, before anything is read
    # Every path is checked before any cabinet is read: a wrong one changes nothing.
    textfile = (
        files.writable_file(prometheus_textfile, "--prometheus-textfile")
        if prometheus_textfile
        else None
    )
    store = Path(history_file) if history_file else history.default_path(ctx.root)
    if history_file and not no_history:
        files.writable_file(store, "--history")
    probes = probes_for(
        fleet,
        ctx.root,
        Path(replication_state) if replication_state else None,
        files.checked_path(federation_state, "--federation-state") if federation_state else None,
    )
    statuses = gather(fleet, names, timeout=timeout, workers=workers, probes=probes)
    if not no_history:
        history.append(
            store, statuses, retention_days=retention_days, create_folder=not history_file
        )
    if textfile is not None:
        prometheus.write_textfile(textfile, statuses)
    if as_json:
        console.emit_json([s.as_dict() for s in statuses])
    else:
        _show(statuses)
    failed = [s.cabinet for s in statuses if not s.reachable]
    if failed:
        raise failed_for("status", failed, len(statuses))
    if probes.federation_error is not None:
        # Every other fact was read: the run is partial, the registry's fault is named.
        raise PartialFailure(f"status: the federation registry: {probes.federation_error}")


def _show(statuses: list[CabinetStatus]) -> None:
    rows = []
    for s in statuses:
        if not s.reachable:
            rows.append([s.cabinet, console.plain("UNREACHABLE", "bold red"), s.error or "", "",
                         "", "", "", _power(s), _replication(s), s.mail["state"],
                         _federation(s)])  # fmt: skip
            continue
        online = sum(n.online for n in s.nodes)
        guests = ", ".join(f"{n} {state}" for state, n in sorted(s.guests.items())) or "none"
        rows.append([
            s.cabinet, console.plain("up", "green"), f"PVE {s.version}",
            f"{online}/{len(s.nodes)} online", guests,
            _resource(s, "vCPU"), _resource(s, "RAM", size=True) + " · disk " +
            _resource(s, "disk", size=True), _power(s), _replication(s), _mail(s),
            _federation(s),
        ])  # fmt: skip
    columns = ["cabinet", "API", "version", "nodes", "guests", "vCPU used/quotas/capacity",
               "RAM · disk used/quotas/capacity", "power (budget)", "replication", "mail",
               "federation"]  # fmt: skip
    table = console.table("Fleet status", columns, rows)
    for column in table.columns:
        column.overflow = "fold"
    console.show(table)
    tenants = [
        [s.cabinet, t.tenant, ", ".join(f"{n} {st}" for st, n in sorted(t.guests.items())) or "-",
         f"{t.cpu_used:.1f}/{t.vcpu_reserved}/{t.vcpu_quota if t.vcpu_quota else '-'}",
         f"{format_size(t.ram_used)}/{format_size(t.ram_reserved)}/"
         f"{format_size(t.ram_quota) if t.ram_quota else '-'}",
         f"{format_size(t.disk_reserved)}/{format_size(t.disk_quota) if t.disk_quota else '-'}"]
        for s in statuses
        if s.reachable
        for t in s.tenants
    ]  # fmt: skip
    columns = ["cabinet", "tenant", "guests", "vCPU used/guests/quota",
               "RAM used/guests/quota", "disk guests/quota"]  # fmt: skip
    if tenants:
        console.show(console.table("Tenants", columns, tenants))


def _resource(s: CabinetStatus, name: str, *, size: bool = False) -> str:
    r = s.capacity.get(name, {})

    def show(value: Any) -> str:
        if value is None:
            return "?"
        return format_size(int(value)) if size else f"{value:g}"

    return f"{show(r.get('used'))}/{show(r.get('reserved'))}/{show(r.get('capacity'))}"


def _power(s: CabinetStatus) -> str:
    p = s.power
    parts = []
    if p.get("measured_watts") is not None:
        parts.append(f"{p['measured_watts']:.0f} W measured")
    if p.get("estimated_watts") is not None:
        parts.append(f"{p['estimated_watts']:.0f} W estimated")
    parts.append(f"{p['planned_watts']:.0f} W planned")
    if p.get("measured_watts") is None:
        parts.append(str(p.get("measured")))
    return f"{', '.join(parts)} ({p['budget_watts']:.0f} W)"


def _replication(s: CabinetStatus) -> str:
    r = s.replication
    if r.get("lag_seconds") is not None:
        text = f"lag {format_duration(int(r['lag_seconds']))}"
        checks = r.get("last_check") or {}
        if checks:
            text += ", checks " + ", ".join(
                f"{k}:{'ok' if v.get('ok') else 'FAILED'}" for k, v in sorted(checks.items())
            )
        return text
    return str(r.get("detail") or r.get("state"))


def _mail(s: CabinetStatus) -> str:
    m = s.mail
    if "up" not in m:  # not probed: say why
        text = str(m["state"])
        if m.get("detail"):
            text += f": {m['detail']}"
        return text + (f" ({', '.join(m['domains'])})" if m.get("domains") else "")
    parts = []
    smtp = [p for p in m["smtp"] if p["banner"] and not p["error"]]
    if smtp:
        parts.append("SMTP " + " ".join(str(p["port"]) for p in smtp) + " STARTTLS ok")
    parts.append(f"IMAP login {m['imap']['login'] or 'not tried'}")
    cert = m.get("certificate")
    if cert:
        parts.append(f"cert {cert['days_left']:g} d left, {cert['trust']}, by {cert['issuer']}")
    if m.get("mailboxes") is not None:
        boxes = ", ".join(f"{d} {n}" for d, n in sorted(m["mailboxes"].items()))
        parts.append(f"mailboxes {boxes or 'none'}")
    text = f"{m['state']}: " + "; ".join(parts)
    if m["problems"]:
        text += " — " + "; ".join(m["problems"])
    return text


def _federation(s: CabinetStatus) -> str:
    f = s.federation
    if f.get("federation"):
        text = f"{f['state']} in {f['federation']} (registry v{f['registry_version']}"
        mesh = f["mesh"]
        if isinstance(mesh, dict):
            stale = mesh.get("no_recent_handshake") or []
            said = f"{mesh['state']}" + (
                f", no recent handshake: {', '.join(stale)}" if stale else ""
            )
            return text + f", mesh {said})"
        return text + f", mesh {mesh})"
    return str(f.get("detail") or f["state"]) if f["state"] == "error" else str(f["state"])
