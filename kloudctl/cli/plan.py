"""`kloudctl plan CABINET`: capacity, power, VMID ranges and addresses, from the declaration."""

from __future__ import annotations

import click

from kloudctl import console
from kloudctl.capacity import admit, plan_cabinet
from kloudctl.cli.options import FleetContext, cabinet_names, json_option, pass_fleet
from kloudctl.report.plan import render_plan


@click.command("plan")
@click.argument("cabinet", shell_complete=cabinet_names)
@click.option(
    "--offline",
    is_flag=True,
    expose_value=False,
    help="The default, kept for compatibility: the plan always comes from the declaration "
    "alone (no cabinet contacted). Live planning of tenants is `kloudctl tenants plan`.",
)
@json_option
@pass_fleet
def command(ctx: FleetContext, cabinet: str, as_json: bool) -> None:
    """Plan a cabinet from its declaration alone (no cabinet contacted): capacity and power
    admission, VMID ranges, address plan."""
    loaded = ctx.fleet().loaded(cabinet)
    plan = plan_cabinet(loaded.model, loaded.source)
    if as_json:
        console.emit_json(plan.to_dict())
    else:
        render_plan(plan)
    admit(plan)
