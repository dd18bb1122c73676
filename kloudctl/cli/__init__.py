"""The kloudctl command line: thin modules over the core, one per command group.

Every module in this package that defines `command` (a click command or group) is a
command group, loaded only when it is run (click's lazy-loading pattern): a run imports
the one group it needs, not all of them (the simulator's aiohttp, Pulumi, ...), so it
starts fast. `GROUPS` names each group with its short help, so `kloudctl --help` lists them
all without importing any; tests/unit/test_cli_lazy.py checks it against the modules.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from kloudctl import ON_CABINET, __version__
from kloudctl.cli.boundary import run_with_boundary
from kloudctl.cli.options import FleetContext
from kloudctl.errors import KloudError

#: Command groups that could not be imported on the controller: name -> why.
UNLOADABLE: dict[str, str] = {}
#: Every command group (its module's name) and its short help, as `--help` lists them.
GROUPS: dict[str, str] = {
    "cabinet": "Cabinets of the fleet.",
    "completion": "Print the completion script (e.g.",
    "federation": "Neighbouring communes' cabinets: signed registry, invites, joining, members'"
    " own updates (measured capacity, renewed certificate), failover.",
    "mail": "Residents' mailboxes on the communes' domains.",
    "plan": "Plan a cabinet from its declaration alone (no cabinet contacted): capacity and"
    " power admission, VMID ranges, address plan, and replication peers chosen with"
    " `peers: auto`.",
    "replication": "Continuous encrypted copies of each cabinet on its peer (restic +"
    " rest-server).",
    "report": "A report the town council can read (French by default): HTML, Markdown or JSON.",
    "sim": "Proxmox VE 9.1 API simulator: test cabinets in seconds.",
    "status": "Reachability, versions, guests by tenant, capacity, power, replication, mail"
    " and federation of each cabinet, read in parallel.",
    "tenant": "One tenant of a cabinet.",
    "tenants": "Tenants of a cabinet (pools, identities, isolation, guests) through Pulumi.",
    "testbed": "Test cabinets: real Debian systems in podman containers.",
    "validate": "Validate cabinet and backup-policy files (default: the whole fleet).",
}
#: Groups that act on the whole fleet from the controller (Pulumi stacks, podman test
#: cabinets, simulators): a cabinet's kloudctl leaves them out even where their libraries
#: happen to load, so its operator is never offered a command meant for the controller.
CONTROLLER_ONLY = frozenset({"sim", "tenant", "tenants", "testbed"})


def _unloadable(name: str, why: str) -> click.Command:
    """Stands for a group that cannot be imported on the controller: named, so that
    `kloudctl <group> ...` reaches the error rather than "no such command"."""

    def refuse(**_: Any) -> None:
        raise KloudError(
            f"kloudctl is not installed completely: cannot load the commands `{name}` ({why})"
            " (`make setup` installs the locked dependencies)"
        )

    return click.Command(
        name,
        callback=refuse,
        help=f"Cannot be loaded: {why}.",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )


class LazyGroup(click.Group):
    """Imports a command group's module when the group is run, never before."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        if ON_CABINET:
            # The bundle leaves out some groups' libraries: list only what loads here.
            return [n for n in sorted(GROUPS) if self.get_command(ctx, n) is not None]
        return sorted(GROUPS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in GROUPS or (ON_CABINET and cmd_name in CONTROLLER_ONLY):
            return None
        try:
            module = importlib.import_module(f"{__name__}.{cmd_name}")
        except ImportError as exc:
            # A missing piece of kloudctl itself is a bug, never hidden.
            if isinstance(exc, ModuleNotFoundError) and (exc.name or "kloudctl").startswith(
                "kloudctl"
            ):
                raise
            # A cabinet carries a trimmed kloudctl (kloudctl.hosts.bundle): the groups whose
            # libraries it does not carry are left out. On the controller every group must
            # load: running one that does not is an error naming it and why.
            if ON_CABINET and isinstance(exc, ModuleNotFoundError):
                return None
            UNLOADABLE[cmd_name] = str(exc)
            command = _unloadable(cmd_name, str(exc))
        else:
            command = module.command
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if ON_CABINET:  # what loads on this cabinet, as click lists it
            super().format_commands(ctx, formatter)
            return
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = [(n, click.Command(n, help=GROUPS[n]).get_short_help_str(limit)) for n in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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


def main() -> None:
    run_with_boundary(cli)
