"""`kloudctl federation deploy`: the federation's mesh onto the member cabinets.

1. The fleet is loaded first (located errors, nothing touched); every cabinet named must
   exist and declare `federation:` (the inventory's `federation_members`); none named
   means every member.
2. kloudctl for cabinets (kloudctl.hosts.bundle) is built from this very installation.
3. `playbooks/federation.yml` runs on them through `hosts/runner.py`: wg, nftables,
   wireguard-go, kloudctl, the mesh interface, the registry sync timer, the federation's
   endpoint, and the failover backup timer where the cabinet declares failover VMs. No key
   passes: each cabinet makes its own at `federation init` or `join`. The one secret that
   does: where a cabinet declares failover VMs, its own Proxmox API token (read here by the
   fleet's resolver, through `cabinet_target`), which its backup timer needs; it goes to
   Ansible in the environment (`API_TARGETS_ENV`), never on a command line, and the role
   writes it into a 0600 targets file with `no_log`.
4. The outcome: per cabinet, how many tasks changed something; exit 1 when no cabinet
   finished, 3 when some failed (or were unreachable) and others finished.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kloudctl.errors import ExternalError, InputError, PartialFailure
from kloudctl.federation.roles import failover_vm_names
from kloudctl.hosts import bundle
from kloudctl.hosts.runner import Event, RunResult, run_playbook
from kloudctl.model import Fleet, load_fleet
from kloudctl.proxmox.target import cabinet_target

PLAYBOOK = "federation.yml"
#: JSON {cabinet: {fingerprint, token_id, secret}} the playbook reads (`env` lookup).
API_TARGETS_ENV = "KLOUDCTL_FEDERATION_API_TARGETS"


def members_to_deploy(fleet: Fleet, names: list[str]) -> list[str]:
    """The cabinets to deploy: `names` (each known and a federation member), else every
    cabinet that declares `federation:`. InputError (NotFound) before anything runs."""
    members = [c.name for c in fleet if c.federation is not None]
    if not names:
        if not members:
            raise InputError("no cabinet of this fleet declares `federation:`: nothing to deploy")
        return members
    chosen: list[str] = []
    for name in names:
        cabinet = fleet.cabinet(name)  # NotFound (exit 2) naming the unknown cabinet
        if cabinet.federation is None:
            raise InputError(
                f"cabinet '{name}' is not a federation member: cabinets/{name}.yaml declares"
                f" no `federation:` block (members: {', '.join(members) or 'none'})"
            )
        if name not in chosen:
            chosen.append(name)
    return chosen


def api_targets(fleet: Fleet, names: list[str]) -> dict[str, dict[str, str]]:
    """The Proxmox API token of each of `names` that declares failover VMs, as its backup
    timer uses it on the cabinet (the endpoint is the role's: the cabinet's own address).
    A secret that cannot be read is an InputError naming its reference, before anything runs."""
    out = {}
    for name in names:
        if failover_vm_names(fleet.cabinet(name)):
            target = cabinet_target(fleet, name)
            out[name] = {
                "fingerprint": target.fingerprint,
                "token_id": target.token_id,
                "secret": target.secret,
            }
    return out


@dataclass(frozen=True)
class HostOutcome:
    host: str
    status: str  # ok, changed, failed, unreachable
    changed: int


def outcomes(result: RunResult) -> list[HostOutcome]:
    return [
        HostOutcome(r.host, r.status, r.changed)
        for r in sorted(result.recaps.values(), key=lambda r: r.host)
    ]


def summary(result: RunResult) -> list[str]:
    """One line per cabinet ("N changed", "no change", "failed: TASK: MESSAGE"), then
    "no change" alone when the whole run changed nothing."""
    failures = {f.host: f for f in result.failures}
    lines = []
    for item in outcomes(result):
        if item.status in ("failed", "unreachable"):
            failure = failures.get(item.host)
            said = f": {failure.task}: {failure.message}" if failure else ""
            lines.append(f"{item.host}: {item.status}{said}")
        else:
            counted = f"{item.changed} changed" if item.changed else "no change"
            lines.append(f"{item.host}: {counted}")
    if not result.failures and result.recaps and result.changed == 0:
        lines.append("no change")
    return lines


def check(result: RunResult) -> None:
    """ExternalError (exit 1) when no cabinet finished, PartialFailure (exit 3) when some
    failed or were unreachable and the others finished; nothing when all finished."""
    bad = sorted(set(result.failed) | set(result.unreachable))
    if not bad:
        if result.rc != 0 and not any(r.ok or r.changed for r in result.recaps.values()):
            raise ExternalError(f"{result.playbook}: ansible-playbook failed (exit {result.rc})")
        return
    said = []
    if result.failed:
        said.append(f"failed on {', '.join(result.failed)}")
    if result.unreachable:
        said.append(f"unreachable: {', '.join(result.unreachable)}")
    done = sorted(set(result.recaps) - set(bad))
    if not done:
        raise ExternalError(f"{result.playbook}: {'; '.join(said)}; no cabinet finished")
    raise PartialFailure(f"{result.playbook}: {'; '.join(said)}; finished on {', '.join(done)}")


def deploy(
    root: Path,
    cabinets: list[str],
    *,
    bundles: Path,
    testbed_state: Path | None = None,
    extravars: dict[str, Any] | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> RunResult:
    """Run the federation's playbook on `cabinets` (every member when empty); the run's
    result, unchecked (`check` maps it to an exit code, `summary` to lines)."""
    fleet = load_fleet(root)
    names = members_to_deploy(fleet, cabinets)
    targets = api_targets(fleet, names)
    built = bundle.build(bundles)
    return run_playbook(
        root,
        PLAYBOOK,
        limit=names,
        testbed_state=testbed_state,
        extravars={**(extravars or {}), "kloudctl_bundle": str(built)},
        on_event=on_event,
        secret_env={API_TARGETS_ENV: json.dumps(targets)},
    )
