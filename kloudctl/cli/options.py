"""Options and context shared by the command modules."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import click

from kloudctl import console
from kloudctl.errors import InputError
from kloudctl.model import Fleet, find_root, load_fleet
from kloudctl.model.loader import declared_names

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
federation_state_option = click.option(
    "--federation-state",
    envvar="KLOUDCTL_FEDERATION_STATE",
    type=click.Path(file_okay=False),
    help="The federation state folder, holding the registry this commune verified"
    " (default: <fleet>/.state/federation).",
)
prometheus_textfile_option = click.option(
    "--prometheus-textfile",
    metavar="PATH",
    # checked by kloudctl.files, not click: each command says what a wrong path answers
    help="Also write metrics here (a regular file, or a new one in an existing folder).",
)


@dataclass
class FleetContext:
    fleet_dir: str | None
    _fleet: Fleet | None = field(default=None, repr=False)

    @cached_property
    def root(self) -> Path:
        return Path(self.fleet_dir).resolve() if self.fleet_dir else find_root(Path.cwd())

    def fleet(self) -> Fleet:
        if self._fleet is None:
            self._fleet = load_fleet(self.root)
        return self._fleet


pass_fleet = click.make_pass_decorator(FleetContext)


def testbed_option(verb: str) -> Any:
    """`--testbed/--no-testbed` of the commands that run playbooks on cabinets."""
    return click.option(
        "--testbed/--no-testbed",
        "use_testbed",
        default=None,
        help=f"{verb} the test cabinets (default: when `kloudctl testbed up` runs them).",
    )


def cabinet_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion for cabinet names: readable files in cabinets/, no validation."""
    try:
        root = FleetContext(ctx.find_root().params.get("fleet_dir")).root
    except Exception:
        return []
    return [name for name in declared_names(root) if name.startswith(incomplete)]


def confirmed(question: str, *, yes: bool) -> bool:
    """Ask QUESTION [y/N] on stderr unless `yes` (--yes); False when declined, and the
    caller says that nothing was done (exit 0: a declined prompt is not an interruption).
    Nothing to read an answer from (no terminal, empty stdin) is exit 2: use --yes."""
    if yes:
        return True
    console.ask(f"{question} [y/N]: ")
    try:
        answer = sys.stdin.readline() if sys.stdin is not None else ""
    except (OSError, UnicodeDecodeError):
        answer = ""
    if not answer:
        console.info("")
        raise InputError("no answer to the confirmation (no terminal?): add --yes to go ahead")
    return answer.strip().lower() in ("y", "yes")


class FloatRange(click.FloatRange):
    """click's FloatRange, which also refuses nan (no comparison with a bound catches it)."""

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        number: float = super().convert(value, param, ctx)
        if number != number:
            self.fail(f"{value!r} is not a number", param, ctx)
        return number
