"""`kloudctl tenants plan|apply|destroy|refresh CABINET`: the tenants stack through Pulumi."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from kloudctl import console
from kloudctl.cli.options import FleetContext, cabinet_names, confirmed, json_option, pass_fleet
from kloudctl.tenants.report import render_result, step_line

if TYPE_CHECKING:
    from kloudctl.tenants.engine import Step

_VERB = {"plan": "planning", "apply": "applying", "destroy": "destroying", "refresh": "refreshing"}


def _run(
    ctx: FleetContext, cabinet: str, action: str, as_json: bool, refresh: bool = False
) -> None:
    from kloudctl.tenants.engine import TenantsStack

    stack = TenantsStack(ctx.fleet(), ctx.root, cabinet)

    def on_step(step: Step) -> None:  # live progress from the engine's events
        if not as_json:
            console.info(step_line(step))

    with console.err.status(f"{_VERB[action]} the tenants of {cabinet}…"):
        result = stack.run(action, on_step=on_step, refresh=refresh)
    if as_json:
        console.emit_json(result.to_dict())
    else:
        render_result(result)


@click.group("tenants")
def command() -> None:
    """Tenants of a cabinet (pools, identities, isolation, guests) through Pulumi."""


def _refreshable(action: str, summary: str) -> click.Command:
    """`plan` and `apply`: the same arguments, one engine action each."""

    @command.command(action, help=summary)
    @click.argument("cabinet", shell_complete=cabinet_names)
    @click.option("--refresh", is_flag=True, help="Read the cabinet's live state first.")
    @json_option
    @pass_fleet
    def run(ctx: FleetContext, cabinet: str, refresh: bool, as_json: bool) -> None:
        _run(ctx, cabinet, action, as_json, refresh)

    return run


plan = _refreshable("plan", "Show what `apply` would change (capacity admission first).")
apply = _refreshable(
    "apply", "Create, update or remove tenants so the cabinet matches its declaration."
)


@command.command("destroy")
@click.argument("cabinet", shell_complete=cabinet_names)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_fleet
def destroy(ctx: FleetContext, cabinet: str, yes: bool, as_json: bool) -> None:
    """Remove every tenant (guests included) that kloudctl created on the cabinet."""
    if not confirmed(f"Destroy every tenant and guest of {cabinet}?", yes=yes):
        console.info("nothing destroyed")
        return
    _run(ctx, cabinet, "destroy", as_json)


@command.command("refresh")
@click.argument("cabinet", shell_complete=cabinet_names)
@json_option
@pass_fleet
def refresh(ctx: FleetContext, cabinet: str, as_json: bool) -> None:
    """Read the cabinet's live state into the stack (drift shows in the next plan)."""
    _run(ctx, cabinet, "refresh", as_json)


@command.command("use-sim")
@click.option(
    "--sim-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="KLOUDCTL_SIM_DIR",
    help="State folder of the running simulator (default: <fleet>/.state/sim).",
)
@pass_fleet
def use_sim(ctx: FleetContext, sim_dir: Path | None) -> None:
    """Point the tenants commands at the running `kloudctl sim` (test cabinets).

    Bootstraps the cabinet's automation user and token on each simulated cabinet (as
    root) and writes the targets file (mode 0600); secrets are not printed.
    """
    from kloudctl.sim.runner import read_run
    from kloudctl.tenants.simtargets import use_simulator

    run = read_run(sim_dir or ctx.root / ".state" / "sim")
    names = use_simulator(ctx.fleet(), ctx.root, run)
    console.info(f"tenants commands now target the simulator for: {', '.join(names)}")
