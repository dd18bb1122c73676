"""Options and context shared by the command modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import click

from kloudctl.model import Fleet, find_root, load_fleet

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")


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


def cabinet_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion for cabinet names: file names in cabinets/, no validation."""
    try:
        root = FleetContext(ctx.find_root().params.get("fleet_dir")).root
    except Exception:
        return []
    return sorted(
        p.stem for p in (root / "cabinets").glob("*.yaml") if p.stem.startswith(incomplete)
    )
