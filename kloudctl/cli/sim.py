"""`kloudctl sim up|status|down|serve|fault|coverage`: the Proxmox VE API simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kloudctl import console
from kloudctl.cli.options import FleetContext, FloatRange, json_option, pass_fleet
from kloudctl.replication.layout import Layout
from kloudctl.sim import runner
from kloudctl.sim import serve as sim_serve
from kloudctl.sim.faults import KINDS
from kloudctl.sim.serve import ServeOptions, show_endpoints

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=sim_serve.DEFAULT_DIR,
    envvar="KLOUDCTL_SIM_DIR",
    show_default=True,
    help="Folder of the simulator's state, certificates and run file.",
)


def _show_endpoints(cabinets: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        console.emit_json(cabinets)
        return
    show_endpoints(cabinets)


@click.group("sim")
def command() -> None:
    """Proxmox VE 9.1 API simulator: test cabinets in seconds."""


def _serve_args(f: Any) -> Any:
    f = click.argument("cabinets", nargs=-1)(f)
    f = click.option(
        "--count",
        type=click.IntRange(0, 250),
        default=0,
        help="Anonymous cabinets to add (sim01...; 0 to 250).",
    )(f)
    f = click.option("--ephemeral", is_flag=True, help="Keep no state across restarts.")(f)
    f = click.option(
        "--task-seconds",
        type=FloatRange(0, 3600),
        default=1.0,
        show_default=True,
        help="How long a task runs (0 to 3600).",
    )(f)
    f = click.option(
        "--base-address",
        default="127.0.0.10",
        show_default=True,
        help="Address of the first cabinet; the next ones follow.",
    )(f)
    f = click.option(
        "--port",
        type=click.IntRange(0, 65535),
        default=sim_serve.DEFAULT_PORT,
        show_default=True,
        help="Port of every cabinet (1 to 65535; 0: any free port).",
    )(f)
    return state_dir_option(f)


@command.command("up")
@_serve_args
@click.option(
    "--replication-state",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to record the cabinets' storage folders (endpoints.json of the replication"
    " state; default: KLOUDCTL_REPLICATION_STATE or <fleet>/.state/replication).",
)
@json_option
@pass_fleet
def up(
    ctx: FleetContext,
    cabinets: tuple[str, ...],
    count: int,
    ephemeral: bool,
    task_seconds: float,
    base_address: str,
    port: int,
    state_dir: Path,
    replication_state: Path | None,
    as_json: bool,
) -> None:
    """Start simulated cabinets in the background (named from the fleet, or --count N);
    the fleet's cabinets' storage folders are recorded for the replication and failover
    commands."""
    names = list(cabinets)
    sim_serve.check_addresses(base_address, len(sim_serve.cabinet_names(names, count)))
    if names:
        fleet = ctx.fleet()
        for name in names:
            fleet.cabinet(name)  # unknown names fail here, before anything starts
    options = ServeOptions(
        cabinets=tuple(names),
        count=count,
        fleet_dir=Path(ctx.fleet_dir) if ctx.fleet_dir else None,
        state_dir=state_dir,
        ephemeral=ephemeral,
        task_seconds=task_seconds,
        base_address=base_address,
        port=port,
    )
    run = runner.start_background(options)
    if names:
        # The failover commands move backup archives through these folders.
        layout = Layout.for_fleet(ctx.root, replication_state)
        layout.record_storages(
            {c["name"]: c["storages"] for c in run["cabinets"] if c["name"] in names}
        )
    _show_endpoints(run["cabinets"], as_json)
    if not as_json:
        stop = f"kloudctl sim down{runner.option_of(state_dir)}"
        console.info(f"simulator pid {run['pid']}; stop it with: {stop}")


@command.command("serve")
@_serve_args
@click.option("--quiet", is_flag=True, hidden=True)
@click.option("--fleet", "fleet_dir", hidden=True)
@pass_fleet
def serve(
    ctx: FleetContext,
    cabinets: tuple[str, ...],
    count: int,
    ephemeral: bool,
    task_seconds: float,
    base_address: str,
    port: int,
    state_dir: Path,
    quiet: bool,
    fleet_dir: str | None,
) -> None:
    """Serve simulated cabinets in the foreground (Ctrl-C stops)."""
    fleet_dir = fleet_dir or ctx.fleet_dir
    options = ServeOptions(
        cabinets=tuple(cabinets),
        count=count,
        fleet_dir=Path(fleet_dir) if fleet_dir else None,
        state_dir=state_dir,
        ephemeral=ephemeral,
        task_seconds=task_seconds,
        base_address=base_address,
        port=port,
        quiet=quiet,
    )
    sim_serve.serve(options, on_ready=None if quiet else sim_serve.show_ready)


@command.command("status")
@state_dir_option
@json_option
def status(state_dir: Path, as_json: bool) -> None:
    """Show the running simulator and its cabinets."""
    result = runner.status(state_dir)
    if as_json:
        console.emit_json(result)
        return
    if not result["running"]:
        console.info("no simulator running")
        return
    rows = [
        [c["name"], c["url"], "yes" if c["answering"] else "NO", c["fingerprint"]]
        for c in result["cabinets"]
    ]
    console.show(
        console.table(
            f"Simulator pid {result['pid']}",
            ["cabinet", "endpoint", "answering", "fingerprint"],
            rows,
        )
    )


@command.command("down")
@state_dir_option
def down(state_dir: Path) -> None:
    """Stop the background simulator (state is kept unless it was ephemeral)."""
    if runner.stop(state_dir):
        console.info("simulator stopped")
    else:
        console.info("no simulator running")


@command.command("fault")
@click.argument("cabinet")
@click.argument("kind", required=False, type=click.Choice(list(KINDS)))
@click.option(
    "--ms", type=FloatRange(0, 600_000), help="latency: delay in milliseconds (0 to 600000)."
)
@click.option(
    "--rate", type=FloatRange(0, 1), help="error_rate: share of calls answering 503 (0 to 1)."
)
@click.option(
    "--vmid",
    type=click.IntRange(100, 999_999_999),
    help="lock_timeout / move_guest: the guest (100 to 999999999, as Proxmox).",
)
@click.option("--node", help="node_offline / node_online / move_guest: the node.")
@click.option(
    "--count",
    type=click.IntRange(1, 100_000),
    help="task_failure / task_warnings / no_worker_upid / status_400: how many (1 to 100000).",
)
@click.option("--message", help="task_failure: the error text.")
@click.option(
    "--warnings",
    type=click.IntRange(1, 100_000),
    help="task_warnings: n in 'WARNINGS: n' (1 to 100000).",
)
@state_dir_option
@json_option
def fault(
    cabinet: str,
    kind: str | None,
    ms: float | None,
    rate: float | None,
    vmid: int | None,
    node: str | None,
    count: int | None,
    message: str | None,
    warnings: int | None,
    state_dir: Path,
    as_json: bool,
) -> None:
    """Inject a fault into a simulated cabinet (no KIND: show its faults)."""
    spec = None
    if kind:
        given = {
            "ms": ms,
            "rate": rate,
            "vmid": vmid,
            "node": node,
            "count": count,
            "message": message,
            "warnings": warnings,
        }
        spec = {"kind": kind, **{k: v for k, v in given.items() if v is not None}}
    result = runner.fault(cabinet, spec, state_dir)
    if as_json:
        console.emit_json(result)
    else:
        console.show(
            console.table(
                f"Faults of {cabinet}", ["fault", "value"], [[k, v] for k, v in result.items()]
            )
        )


@command.command("coverage")
@click.option("--methods", is_flag=True, help="List every method of the schema.")
@click.option(
    "--usage",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A usage report (.state/sim-usage.json after a test run): methods used per client.",
)
@json_option
def coverage(methods: bool, usage: Path | None, as_json: bool) -> None:
    """Which of the 649 methods of the PVE 9.1 schema the simulator answers; with --usage,
    which ones each client used and any 501 answered."""
    result = runner.coverage(usage)
    if as_json:
        console.emit_json(result)
        return
    if methods:
        rows = [
            [m["method"], m["path"], m["name"], "yes" if m["simulated"] else "501"]
            for m in result["methods"]
        ]
        console.show(console.table("Methods", ["method", "path", "name", "simulated"], rows))
    rows = [[a["area"], a["simulated"], a["total"]] for a in result["areas"]]
    console.show(console.table("Simulated methods per area", ["area", "simulated", "total"], rows))
    share = f"{result['simulated']} of {result['total']} methods simulated ({result['share']:.1%})"
    indexes = result["directory_indexes"]
    console.show(f"{share}, of which {indexes} directory indexes; the others answer 501.")
    if usage is not None:
        _show_usage(result["usage"])


def _show_usage(used: dict[str, Any]) -> None:
    for client in used["clients"]:
        rows = [
            [
                m["method"],
                m["path"],
                m["calls"],
                ", ".join(f"{s}: {n}" for s, n in sorted(m["statuses"].items())),
            ]
            for m in client["methods"]
        ]
        title = f"Methods used by {client['client']} ({len(rows)})"
        console.show(console.table(title, ["method", "path", "calls", "answers"], rows))
    console.show(f"{used['methods_used']} methods used in {used['file']}.")
    reached = used["unimplemented"]
    if reached:
        rows = [[e["method"], e["path"], e["client"], e.get("test", "")] for e in reached]
        console.show(
            console.table(
                "501 answered (not simulated)", ["method", "path", "client", "test"], rows
            )
        )
    else:
        console.show("No call was answered 501.")
