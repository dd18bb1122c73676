"""Conformance with a real third-party client: the community.proxmox collection (shipped in
the pinned `ansible` package) drives the simulator through its own modules, in one real
`ansible-playbook` run (ansible-runner, as kloudctl runs Ansible), and each module's
outcome must match the table of docs/sim.md: a module listed `pass` ran and every one of
its assertions held; `fail` ran and failed (when the simulator learns what it lacks, the
test says the table must change); `pending` and `cannot apply` are not run. Every module
of the collection's `proxmox` action group is in the table.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import ansible_collections.community.proxmox as collection
import ansible_runner
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(__file__).parent / "community_proxmox" / "conformance.yml"
TABLE_ROW = re.compile(r"^\| `community\.proxmox\.(\w+)` \| (pass|fail|pending|cannot apply) \|")


def action_group() -> list[str]:
    runtime = Path(next(iter(collection.__path__))) / "meta" / "runtime.yml"
    return sorted(yaml.safe_load(runtime.read_text())["action_groups"]["proxmox"])


def documented() -> dict[str, str]:
    rows = {}
    for line in (REPO / "docs" / "sim.md").read_text().splitlines():
        m = TABLE_ROW.match(line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


@pytest.fixture(scope="module")
def outcomes(pve_sim, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Module name → the failures of its tasks (empty: every task and assertion held)."""
    ep = pve_sim["brieux"]
    work = tmp_path_factory.mktemp("community-proxmox")
    iso = work / "conformance.iso"
    iso.write_bytes(b"\0" * 64 * 1024)
    (work / "runner").mkdir()
    # its modules send proxmoxer's User-Agent: name them in the simulator's usage log
    with pve_sim.clients_named("ansible:community.proxmox"):
        run = ansible_runner.run(
            private_data_dir=str(work / "runner"),
            playbook=str(PLAYBOOK),
            inventory=f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}",
            extravars={
                "pve_host": ep.host,
                "pve_port": ep.port,
                "pve_password": ep.root_password,
                "iso_path": str(iso),
            },
            envvars={"ANSIBLE_CONFIG": str(PLAYBOOK.parent / "ansible.cfg")},
            quiet=True,
            timeout=900,
        )
    results: dict[str, list[str]] = defaultdict(list)
    for event in run.events:
        data: dict[str, Any] = event.get("event_data") or {}
        task = str(data.get("task") or "")
        module = task.split(":", 1)[0]
        if event.get("event") == "runner_on_ok":
            results.setdefault(module, [])  # the module ran
        elif event.get("event") == "runner_on_failed":
            res = data.get("res") or {}
            results[module].append(f"{task}: {res.get('msg') or res}")
    assert run.rc == 0 or results, (run.status, run.stdout.read()[-4000:])
    return dict(results)


def test_every_module_of_the_collection_is_in_the_table() -> None:
    table = documented()
    assert sorted(table) == action_group(), "docs/sim.md's table and the collection differ"


@pytest.mark.parametrize("module", action_group())
def test_module_outcome_matches_the_table(module: str, outcomes: dict[str, list[str]]) -> None:
    status = documented()[module]
    if status in ("pending", "cannot apply"):
        assert module not in outcomes, f"{module} ran: list it as pass or fail in docs/sim.md"
        return
    assert module in outcomes, f"{module} is listed '{status}' but the playbook never ran it"
    failures = outcomes[module]
    if status == "pass":
        assert not failures, "\n".join(failures)
    else:
        assert failures, f"{module} now passes: list it as pass in docs/sim.md"
