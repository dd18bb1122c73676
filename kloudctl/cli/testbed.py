"""`kloudctl testbed up|status|down|ssh`: test cabinets in podman."""

from __future__ import annotations

import sys

import click

from kloudctl import console
from kloudctl.cli.options import FleetContext, cabinet_names, json_option, pass_fleet
from kloudctl.testbed import bed as testbed


@click.group("testbed")
def command() -> None:
    """Test cabinets: real Debian systems in podman containers."""


@command.command("up")
@click.argument("cabinets", nargs=-1, shell_complete=cabinet_names)
@json_option
@pass_fleet
def up(ctx: FleetContext, cabinets: tuple[str, ...], as_json: bool) -> None:
    """Start test cabinets (all cabinets of the fleet by default)."""
    console.info("testbed: checking podman, building the image if its recipe changed...")
    testbed.up(ctx.fleet(), list(cabinets), state=testbed.state_dir(ctx.root))
    _show(ctx, as_json)


@command.command("status")
@json_option
@pass_fleet
def status(ctx: FleetContext, as_json: bool) -> None:
    """Show the running test cabinets."""
    _show(ctx, as_json)


@command.command("down")
@click.argument("cabinets", nargs=-1, shell_complete=cabinet_names)
@pass_fleet
def down(ctx: FleetContext, cabinets: tuple[str, ...]) -> None:
    """Remove test cabinets (all by default), with their network and side containers."""
    removed = testbed.down(ctx.root, list(cabinets))
    console.info(f"testbed: removed {', '.join(removed) if removed else 'nothing (not up)'}")


@command.command("ssh", context_settings={"ignore_unknown_options": True})
@click.argument("cabinet", shell_complete=cabinet_names)
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
@pass_fleet
def ssh(ctx: FleetContext, cabinet: str, cmd: tuple[str, ...]) -> None:
    """Open a shell (or run CMD) on a test cabinet over SSH."""
    sys.exit(testbed.run_ssh(ctx.root, cabinet, list(cmd)))


def _show(ctx: FleetContext, as_json: bool) -> None:
    rows = testbed.status(ctx.root)
    if as_json:
        console.emit_json(rows)
        return
    if not rows:
        console.info("testbed: no test cabinet is up (`kloudctl testbed up`)")
        return
    console.show(console.table("Test cabinets", list(rows[0]), [list(r.values()) for r in rows]))
