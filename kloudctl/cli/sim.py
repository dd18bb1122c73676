"""`kloudctl sim up|status|down|serve|fault|coverage`: the Proxmox VE API simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kloudctl import console
from kloudctl.cli.options import FleetContext, json_option, pass_fleet
from kloudctl.sim import runner
from kloudctl.sim.faults import KINDS

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=runner.DEFAULT_DIR,
    envvar="KLOUDCTL_SIM_DIR",
    show_default=True,
    help="Folder of the simulator's state, certificates and run file.",
)


def _fleet_or_none(ctx: FleetContext, names: list[str]) -> Any:
    try:
        fleet = ctx.fleet()
    except Exception:
        if names:
            raise
        return None
    return fleet


def _show_endpoints(cabinets: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        console.emit_json(cabinets)
        return
    for c in cabinets:
        console.show(f"[bold]{c['name']}[/]  {c['url']}  nodes: {', '.join(c['nodes'])}")
        console.show(f"  user: {c['user']}  password: {c['password']}")
        console.show(f"  fingerprint: {c['fingerprint']}")


@click.group("sim")
def command() -> None:
    """Proxmox VE 9.1 API simulator: test cabinets in seconds."""


def _serve_args(f: Any) -> Any:
    f = click.argument("cabinets", nargs=-1)(f)
    f = click.option(
        "--count",
        type=click.IntRange(0, 250),
        default=0,
        help="Anonymous cabinets to add (sim01...).",
    )(f)
    f = click.option("--ephemeral", is_flag=True, help="Keep no state across restarts.")(f)
    f = click.option(
        "--task-seconds",
        type=click.FloatRange(0, 3600),
        default=1.0,
        show_default=True,
        help="How long a task runs.",
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
        default=runner.DEFAULT_PORT,
        show_default=True,
        help="Port of every cabinet (0: any free port).",
    )(f)
    return state_dir_option(f)


@command.command("up")
@_serve_args
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
    as_json: bool,
) -> None:
    """Start simulated cabinets in the background (named from the fleet, or --count N)."""
    names = list(cabinets)
    if names:
        fleet = ctx.fleet()
        for name in names:
            fleet.cabinet(name)  # unknown names fail here, before anything starts
    args = [
        *names,
        "--count",
        str(count),
        "--task-seconds",
        str(task_seconds),
        "--base-address",
        base_address,
        "--port",
        str(port),
    ]
    if ephemeral:
        args.append("--ephemeral")
    if ctx.fleet_dir:
        args = ["--fleet", ctx.fleet_dir, *args]
    run = runner.start_background(args, state_dir)
    _show_endpoints(run["cabinets"], as_json)
    if not as_json:
        console.info(f"simulator pid {run['pid']}; stop it with: kloudctl sim down")


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
    if fleet_dir:
        ctx = FleetContext(fleet_dir)
    names = runner.cabinet_names(list(cabinets), count)
    fleet = _fleet_or_none(ctx, list(cabinets))

    def ready(run: dict[str, Any]) -> None:
        if not quiet:
            _show_endpoints(run["cabinets"], False)
            console.info("serving; Ctrl-C stops")

    runner.serve_forever(
        names,
        fleet,
        state_dir=state_dir,
        ephemeral=ephemeral,
        task_seconds=task_seconds,
        base=base_address,
        port=port,
        on_ready=ready,
    )


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
@click.option("--ms", type=float, help="latency: delay in milliseconds.")
@click.option("--rate", type=float, help="error_rate: share of calls answering 503 (0..1).")
@click.option("--vmid", type=int, help="lock_timeout / move_guest: the guest.")
@click.option("--node", help="node_offline / node_online / move_guest: the node.")
@click.option(
    "--count",
    type=int,
    help="task_failure / task_warnings / no_worker_upid / status_400: how many.",
)
@click.option("--message", help="task_failure: the error text.")
@click.option("--warnings", type=int, help="task_warnings: n in 'WARNINGS: n'.")
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
@json_option
def coverage(methods: bool, as_json: bool) -> None:
    """Which of the 649 methods of the PVE 9.1 schema the simulator answers."""
    result = runner.coverage()
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
