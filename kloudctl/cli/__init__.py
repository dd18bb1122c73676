"""The kloudctl command line: thin modules over the core, one per command group.

Every module in this package that defines `command` (a click command or group) is added
to the top-level group, so a new noun is one new file.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import click

from kloudctl import CABINET_MARKER, __version__
from kloudctl.cli.boundary import run_with_boundary
from kloudctl.cli.options import FleetContext
from kloudctl.errors import KloudError

_SKIP = {"boundary", "options"}
#: Running from the trimmed kloudctl a cabinet carries (kloudctl.hosts.bundle marks it).
ON_CABINET = (Path(__file__).resolve().parent.parent / CABINET_MARKER).is_file()
#: Command groups that could not be imported on the controller: name -> why.
UNLOADABLE: dict[str, str] = {}


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
    if UNLOADABLE:
        broken = "; ".join(f"`{name}` ({why})" for name, why in sorted(UNLOADABLE.items()))
        raise KloudError(
            f"kloudctl is not installed completely: cannot load the commands {broken}"
            " (`make setup` installs the locked dependencies)"
        )
    ctx.obj = FleetContext(fleet_dir)


for _module in pkgutil.iter_modules(__path__):
    if _module.name in _SKIP:
        continue
    try:
        _imported = importlib.import_module(f"{__name__}.{_module.name}")
    except ImportError as _exc:
        # A missing piece of kloudctl itself is a bug, never hidden.
        if isinstance(_exc, ModuleNotFoundError) and (_exc.name or "kloudctl").startswith(
            "kloudctl"
        ):
            raise
        # A cabinet carries a trimmed kloudctl (kloudctl.hosts.bundle): the command groups
        # whose libraries it does not carry are left out. On the controller every group
        # must load: any command then fails, saying which group and why.
        if not (ON_CABINET and isinstance(_exc, ModuleNotFoundError)):
            UNLOADABLE[_module.name] = str(_exc)
            # named, so that `kloudctl <group> ...` reaches the error rather than "no such
            # command"; the group's callback above refuses before anything runs
            cli.add_command(
                click.Command(
                    _module.name,
                    help=f"Cannot be loaded: {_exc}.",
                    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                    add_help_option=False,
                )
            )
        continue
    _command = getattr(_imported, "command", None)
    if isinstance(_command, click.Command):
        cli.add_command(_command)


def main() -> None:
    run_with_boundary(cli)
