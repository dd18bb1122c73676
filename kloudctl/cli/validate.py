"""`kloudctl validate [PATHS]`: check declarations, report every problem at once."""

from __future__ import annotations

import click

from kloudctl import console
from kloudctl.cli.options import FleetContext, json_option, pass_fleet
from kloudctl.errors import InputError
from kloudctl.model.validate import validate_paths


@click.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@json_option
@pass_fleet
def command(ctx: FleetContext, paths: tuple[str, ...], as_json: bool) -> None:
    """Validate cabinet and backup-policy files (default: the whole fleet)."""
    try:
        summary = validate_paths(list(paths), ctx.fleet_dir)
    except InputError as exc:
        if as_json:  # the problems for machines; stderr and the exit code as for every error
            console.emit_json({"valid": False, "problems": [p.as_dict() for p in exc.problems]})
        raise
    if as_json:
        console.emit_json(summary)
    else:
        console.show(
            f"ok: {summary['cabinets']} cabinet(s), {summary['policies']} backup policy(ies) valid"
        )
