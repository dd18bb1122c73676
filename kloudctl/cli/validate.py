"""`kloudctl validate [PATHS]`: check declarations, report every problem at once."""

from __future__ import annotations

from pathlib import Path

import click

from kloudctl import console
from kloudctl.cli.options import FleetContext, federation_state_option, json_option, pass_fleet
from kloudctl.errors import InputError, Problem
from kloudctl.federation.membership import peer_problems
from kloudctl.model import Fleet
from kloudctl.model.validate import validate_paths


@click.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@json_option
@federation_state_option
@pass_fleet
def command(
    ctx: FleetContext, paths: tuple[str, ...], as_json: bool, federation_state: str | None
) -> None:
    """Validate cabinet and backup-policy files (default: the whole fleet)."""

    def federation_peers(fleet: Fleet, files: list[Path] | None) -> list[Problem]:
        folder = Path(federation_state) if federation_state else fleet.root / ".state/federation"
        return peer_problems(fleet, files, folder)

    try:
        summary = validate_paths(list(paths), ctx.fleet_dir, checks=[federation_peers])
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
