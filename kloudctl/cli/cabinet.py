"""`kloudctl cabinet list|show`: read the declared fleet."""

from __future__ import annotations

import click

from kloudctl import console
from kloudctl.capacity import plan_cabinet
from kloudctl.cli.options import FleetContext, cabinet_names, json_option, pass_fleet
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
