"""The kloudctl command line: thin modules over the core, one per command group.

Every module in this package that defines `command` (a click command or group) is added
to the top-level group, so a new noun is one new file.
"""

from __future__ import annotations

import importlib
import pkgutil

import click

from kloudctl import __version__
from kloudctl.cli.boundary import run_with_boundary
from kloudctl.cli.options import FleetContext

_SKIP = {"boundary", "options"}


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="kloudctl")
@click.option(
    "--fleet",
    "fleet_dir",
    envvar="KLOUDCTL_FLEET",
    type=click.Path(file_okay=False, path_type=str),
    help="Fleet folder holding cabinets/ and backups/ (default: found from the current folder).",
)
@click.pass_context
def cli(ctx: click.Context, fleet_dir: str | None) -> None:
    """kloudctl runs a fleet of commune-owned micro-cloud cabinets."""
    ctx.obj = FleetContext(fleet_dir)


for _module in pkgutil.iter_modules(__path__):
    if _module.name in _SKIP:
        continue
    try:
        _imported = importlib.import_module(f"{__name__}.{_module.name}")
    except ModuleNotFoundError as _exc:
        # A cabinet carries a trimmed kloudctl (kloudctl.hosts.bundle): the command groups
        # whose libraries it does not carry are left out. A missing piece of kloudctl
        # itself is a bug, never hidden.
        if (_exc.name or "kloudctl").startswith("kloudctl"):
            raise
        continue
    _command = getattr(_imported, "command", None)
    if isinstance(_command, click.Command):
        cli.add_command(_command)


def main() -> None:
    run_with_boundary(cli)
