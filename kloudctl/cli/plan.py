"""`kloudctl plan CABINET`: capacity, power, VMID ranges and addresses, from the declaration."""

from __future__ import annotations

import click

from kloudctl import console
from kloudctl.capacity import admit, plan_cabinet
from kloudctl.cli.options import (
    FleetContext,
    cabinet_names,
    federation_state_option,
    json_option,
    pass_fleet,
)
from kloudctl.federation.peers import state_folder
from kloudctl.report.plan import render_peer_choice, render_plan


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
@federation_state_option
@pass_fleet
def command(ctx: FleetContext, cabinet: str, as_json: bool, federation_state: str | None) -> None:
    """Plan a cabinet from its declaration alone (no cabinet contacted): capacity and power
    admission, VMID ranges, address plan, and replication peers chosen with `peers: auto`."""
    loaded = ctx.fleet().loaded(cabinet)
    plan = plan_cabinet(loaded.model, loaded.source)
    rep = loaded.model.replication
    auto = rep is not None and rep.auto_peers
    folder = state_folder(ctx.root, federation_state)
    choice = resolution = None
    if auto:
        # Imported here: `plan` stays light where the federation is not used.
        from kloudctl.federation.choice import planned_peers
        from kloudctl.federation.peers import NoEligiblePeer, PeerResolver

        choice = planned_peers(folder, loaded.model)
        if choice is not None:
            try:  # what replication would use now: the recorded (sticky) choice, or a new one
                resolution = PeerResolver(ctx.fleet(), folder).resolve(cabinet)
            except NoEligiblePeer:
                resolution = None  # the table says why no member qualifies
    if as_json:
        data = plan.to_dict()
        if auto:
            data["replication_peers"] = (
                {**choice.to_dict(), "effective": resolution.to_dict() if resolution else None}
                if choice
                else None
            )
        console.emit_json(data)
    else:
        render_plan(plan)
        if auto:
            render_peer_choice(choice, folder, resolution)
    admit(plan)
