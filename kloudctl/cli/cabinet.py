"""`kloudctl cabinet list|show`: read the declared fleet."""

from __future__ import annotations

import click

from kloudctl import console
from kloudctl.capacity import plan_cabinet
from kloudctl.cli.options import (
    FleetContext,
    cabinet_names,
    json_option,
    pass_fleet,
    testbed_option,
)
from kloudctl.report.fleet import cabinet_detail, cabinet_rows, render_cabinet
from kloudctl.report.plan import render_plan


@click.group("cabinet")
def command() -> None:
    """Cabinets of the fleet."""


@command.command("list")
@json_option
@pass_fleet
def list_(ctx: FleetContext, as_json: bool) -> None:
    """List the declared cabinets."""
    rows = cabinet_rows(ctx.fleet())
    if as_json:
        console.emit_json(rows)
    else:
        columns = list(rows[0]) if rows else ["cabinet"]
        console.show(console.table("Cabinets", columns, [list(r.values()) for r in rows]))


@command.command("show")
@click.argument("name", shell_complete=cabinet_names)
@json_option
@pass_fleet
def show(ctx: FleetContext, name: str, as_json: bool) -> None:
    """Show one cabinet's declaration and plan."""
    detail = cabinet_detail(ctx.fleet(), name)
    if as_json:
        console.emit_json(detail)
    else:
        render_cabinet(detail)
        render_plan(plan_cabinet(ctx.fleet().cabinet(name)))


@command.command("bootstrap")
@click.argument("cabinets", nargs=-1, required=True, shell_complete=cabinet_names)
@testbed_option("Bootstrap")
@json_option
@pass_fleet
def bootstrap(
    ctx: FleetContext, cabinets: tuple[str, ...], use_testbed: bool | None, as_json: bool
) -> None:
    """Make bare Debian 12 hosts Proxmox VE hosts of the fleet, then their API token.

    Runs the roles base, proxmox_host and power_budget on every CABINET in parallel, then
    creates the automation user and API token through each cabinet's Proxmox API and
    stores the secret in .state/secrets/ (0600). Exit 3 when some hosts were unreachable
    (the others finish).
    """
    from kloudctl.hosts.bootstrap import bootstrap as run_bootstrap
    from kloudctl.report.hosts import Progress, recap_json, render_recap
    from kloudctl.testbed import bed as testbed

    fleet = ctx.fleet()  # located errors before anything runs
    for name in cabinets:
        fleet.cabinet(name)
    state = testbed.target_state(ctx.root, list(cabinets), use_testbed)
    if state:
        console.info(f"testbed: bootstrapping the test cabinets {', '.join(cabinets)}")
    progress = Progress(list(cabinets))
    with progress.shown():
        result = run_bootstrap(ctx.root, list(cabinets), testbed_state=state, on_event=progress)
    if as_json:
        console.emit_json(
            {
                **recap_json(result.run),
                "tokens": [
                    {
                        "cabinet": t.cabinet,
                        "token_id": t.token_id,
                        "status": t.status,
                        "reference": t.reference,
                        "detail": t.detail,
                    }
                    for t in result.tokens
                ],
            }
        )
    else:
        render_recap(result.run)
        if result.tokens:
            console.show(
                console.table(
                    "Automation tokens",
                    ["cabinet", "token", "status", "secret stored at / why"],
                    [
                        [t.cabinet, t.token_id, t.status, t.reference or t.detail]
                        for t in result.tokens
                    ],
                )
            )
    result.raise_for_status()
