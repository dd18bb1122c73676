"""The federation_mesh role's inputs computed from the fleet, for the Ansible inventory.

A member that declares failover VMs (level-1 VMs with `failover: true`) gets the failover
backup timer: `kloudctl federation backup` on a schedule, so a failover's recovery point
is at most about one period old. The period is the cabinet's replication RPO (its own, or
its backup policy's), rounded down to a period systemd's calendar repeats evenly (one that
divides an hour or a day), from 5 minutes to a day; the role gets the period and its
OnCalendar, computed here by `kloudctl.hosts.timers.on_calendar` (as replication's timer).

Its kloudctl reaches its own Proxmox API on the host itself (`own_api_endpoint`: loopback,
the declared port; the certificate is pinned by its fingerprint, so the address does not
matter to trust), with the token `federation deploy` passes (never an inventory value).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kloudctl.hosts.timers import CALENDAR_PERIODS, DAY, MINUTE, on_calendar
from kloudctl.model import Cabinet, Fleet

#: Periods (seconds) of the failover backup: those a calendar timer repeats evenly, from 5
#: minutes (each run archives every failover VM) to a day.
BACKUP_PERIODS = tuple(p for p in CALENDAR_PERIODS if 5 * MINUTE <= p <= DAY)


def failover_vm_names(cabinet: Cabinet) -> list[str]:
    """The VMs that may move to a peer: level-1 (the council's), declared `failover: true`."""
    return [vm.name for t in cabinet.tenants if t.level == 1 for vm in t.vms if vm.failover]


def backup_period(seconds: int) -> int:
    """The longest calendar-friendly period not longer than `seconds` (the RPO)."""
    return max((p for p in BACKUP_PERIODS if p <= seconds), default=BACKUP_PERIODS[0])


def own_api_endpoint(cabinet: Cabinet) -> str:
    """The cabinet's Proxmox API as the cabinet itself reaches it: on loopback."""
    return f"https://127.0.0.1:{urlsplit(cabinet.proxmox.endpoint).port or 8006}"


def role_vars(fleet: Fleet, cabinet: Cabinet) -> dict[str, Any]:
    if cabinet.federation is None:
        return {}
    out: dict[str, Any] = {
        "federation_mesh__failover_vms": failover_vm_names(cabinet),
        "federation_mesh__proxmox_endpoint": own_api_endpoint(cabinet),
    }
    policy = fleet.policy_for(cabinet)
    rep = cabinet.replication
    rpo = (rep.rpo if rep and rep.rpo else None) or (policy.rpo if policy else None)
    if rpo:
        period = backup_period(rpo)
        out["federation_mesh__failover_backup_period"] = period
        out["federation_mesh__failover_backup_on_calendar"] = on_calendar(period)
        # Members start their runs apart (not all copying to their peers at once), yet each
        # run stays within its period: the role's default of 10 min, less for short periods.
        out["federation_mesh__failover_backup_randomized_delay"] = min(10 * MINUTE, period // 2)
    return out
