"""The fleet as Ansible sees it: hosts and groups (`kloudctl.hosts.inventory`) plus each
area's role inputs. The inventory plugin (`inventory/plugins/kloudctl_fleet.py`) and kloudctl
itself both read it from here, so nothing about a host is computed twice.

It sits above the areas it gathers: `hosts` knows nothing of replication, and replication
deploys through `hosts` (see docs/architecture.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kloudctl.federation import roles as federation_roles
from kloudctl.hosts import inventory
from kloudctl.hosts.inventory import Template
from kloudctl.model import Fleet
from kloudctl.replication import roles as replication_roles

#: One entry per area whose roles take inputs computed from the fleet.
ROLE_VARS = (replication_roles.role_vars, federation_roles.role_vars)

__all__ = ["ROLE_VARS", "Template", "build", "load"]


def build(fleet: Fleet, testbed: dict[str, Any] | None = None) -> dict[str, Any]:
    return inventory.build(fleet, testbed, ROLE_VARS)


def load(root: Path, testbed: dict[str, Any] | None = None) -> dict[str, Any]:
    return inventory.load(root, testbed, ROLE_VARS)
