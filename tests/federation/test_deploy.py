"""`kloudctl federation deploy`, its pieces: which cabinets it runs on (refusals before
anything runs) and how a playbook run's per-host recap becomes lines and an exit code.

The run itself (ansible-runner on test cabinets) is exercised by
tests/federation/test_cabinets_mesh.py, which deploys the mesh through
`kloudctl.federation.deploy.deploy`; here the recaps are built as the runner records them
(`HostRecap`, `Failure`), since the outcomes to map (a failed, an unreachable cabinet)
cannot be produced on demand without cabinets."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from kloudctl.errors import ExternalError, InputError, NotFound, PartialFailure
from kloudctl.federation.deploy import check, members_to_deploy, summary
from kloudctl.hosts.runner import Failure, HostRecap, RunResult
from kloudctl.model import load_fleet
from tests.unit.inprocess import invoke, tree

REPO = Path(__file__).resolve().parents[2]
NAMES = ["brieux", "mortree", "saint-aubin"]


@pytest.fixture
def fleet_root(tmp_path: Path) -> Path:
    """The example fleet, with mortree no longer declaring `federation:`."""
    root = tmp_path / "fleet"
    for folder in ("cabinets", "backups", "playbooks"):
        shutil.copytree(REPO / folder, root / folder)
    path = root / "cabinets/mortree.yaml"
    text = path.read_text()
    cut = re.sub(r"\nfederation:\n(  .*\n)+", "\n", text)
    assert cut != text
    path.write_text(cut)
    return root


def test_every_member_by_default_or_the_members_named() -> None:
    fleet = load_fleet(REPO)
    assert members_to_deploy(fleet, []) == NAMES
    assert members_to_deploy(fleet, ["saint-aubin", "brieux", "saint-aubin"]) == [
        "saint-aubin",
        "brieux",
    ]


def test_an_unknown_cabinet_or_a_non_member_is_refused_before_anything_runs(
    fleet_root: Path,
) -> None:
    fleet = load_fleet(fleet_root)
    assert members_to_deploy(fleet, []) == ["brieux", "saint-aubin"]
    with pytest.raises(NotFound, match=r"no cabinet named 'mortre'.*mortree"):
        members_to_deploy(fleet, ["brieux", "mortre"])
    with pytest.raises(InputError) as refused:
        members_to_deploy(fleet, ["brieux", "mortree"])
    assert str(refused.value) == (
        "cabinet 'mortree' is not a federation member: cabinets/mortree.yaml declares no"
        " `federation:` block (members: brieux, saint-aubin)"
    )
    before = tree(fleet_root)
    ran = invoke("--fleet", str(fleet_root), "federation", "deploy", "mortree", "--no-testbed")
    assert ran.code == 2
    assert "cabinet 'mortree' is not a federation member" in ran.flat()
    ran = invoke("--fleet", str(fleet_root), "federation", "deploy", "lanvallay")
    assert ran.code == 2 and "no cabinet named 'lanvallay'" in ran.flat()
    assert tree(fleet_root) == before


def _result(*recaps: HostRecap, failures: tuple[Failure, ...] = (), rc: int = 0) -> RunResult:
    return RunResult(
        "federation.yml",
        [r.host for r in recaps],
        {r.host: r for r in recaps},
        list(failures),
        rc=rc,
    )


def test_nothing_changed_says_no_change() -> None:
    result = _result(*(HostRecap(h, ok=31) for h in NAMES))
    assert summary(result) == [
        "brieux: no change",
        "mortree: no change",
        "saint-aubin: no change",
        "no change",
    ]
    check(result)


def test_changed_counts_per_cabinet() -> None:
    result = _result(
        HostRecap("brieux", ok=31, changed=3), HostRecap("mortree", ok=31), HostRecap("x", ok=2)
    )
    assert summary(result) == ["brieux: 3 changed", "mortree: no change", "x: no change"]
    check(result)


def test_some_cabinets_failed_others_finished_is_exit_3() -> None:
    result = _result(
        HostRecap("brieux", ok=31, changed=1),
        HostRecap("mortree", ok=4, failed=1),
        HostRecap("saint-aubin", ok=0, unreachable=1),
        failures=(
            Failure("mortree", "Install wg and nftables from Debian", "No package matching"),
            Failure("saint-aubin", "Gathering Facts", "ssh: connect timed out", True),
        ),
        rc=2,
    )
    assert summary(result) == [
        "brieux: 1 changed",
        "mortree: failed: Install wg and nftables from Debian: No package matching",
        "saint-aubin: unreachable: Gathering Facts: ssh: connect timed out",
    ]
    with pytest.raises(PartialFailure) as partial:
        check(result)
    assert partial.value.exit_code == 3
    assert str(partial.value) == (
        "federation.yml: failed on mortree; unreachable: saint-aubin; finished on brieux"
    )


def test_no_cabinet_finished_is_exit_1() -> None:
    result = _result(
        HostRecap("brieux", unreachable=1),
        HostRecap("mortree", failed=1),
        failures=(Failure("brieux", "Gathering Facts", "no route", True),),
        rc=4,
    )
    with pytest.raises(ExternalError) as failed:
        check(result)
    assert failed.value.exit_code == 1
    assert "failed on mortree; unreachable: brieux; no cabinet finished" in str(failed.value)
    # ansible-playbook stopped before any host (a syntax error): no recap counts at all.
    with pytest.raises(ExternalError, match=r"ansible-playbook failed \(exit 4\)"):
        check(_result(HostRecap("brieux"), rc=4))


def test_the_inventory_gives_each_member_its_failover_backup_inputs() -> None:
    """Through the inventory Ansible reads (kloudctl.ansible_inventory): brieux declares a
    failover VM and a 6 h RPO; the others declare none (their timer is absent)."""
    from kloudctl import ansible_inventory

    hostvars = ansible_inventory.build(load_fleet(REPO))["hostvars"]
    from kloudctl.federation.roles import BACKUP_PERIODS

    brieux = {k: v for k, v in hostvars["brieux"].items() if "failover" in k}
    assert brieux == {
        "federation_mesh__failover_vms": ["brieux-web"],
        "federation_mesh__failover_backup_period": 6 * 3600,
    }
    for other in ("mortree", "saint-aubin"):
        assert hostvars[other]["federation_mesh__failover_vms"] == []
        assert hostvars[other]["federation_mesh__failover_backup_period"] in BACKUP_PERIODS


@pytest.mark.parametrize(
    ("rpo", "period"),
    [(60, 300), (1000, 900), (3600, 3600), (5400, 3600), (7 * 3600, 6 * 3600), (3 * 86400, 86400)],
)
def test_the_backup_period_is_the_rpo_rounded_down_to_a_calendar_period(
    rpo: int, period: int
) -> None:
    from kloudctl.federation.roles import backup_period

    assert backup_period(rpo) == period


def test_the_backup_timers_command_on_a_cabinets_kloudctl_says_what_it_lacks(
    tmp_path: Path,
) -> None:
    """What kloudctl-federation-backup.service runs, with the cabinet bundle alone
    (isolated, the system's python3): the bundle carries no Proxmox API client yet, so the
    backup stops with a clear error (exit 1), not a traceback."""
    import subprocess
    import tarfile

    from kloudctl.hosts import bundle

    unpacked = tmp_path / "opt"
    with tarfile.open(bundle.build(tmp_path / "bundles")) as tar:
        tar.extractall(unpacked, filter="data")
    launcher = (
        f"import sys; sys.path.insert(0, {str(unpacked)!r}); "
        "from kloudctl.cli import main; sys.exit(main())"
    )
    done = subprocess.run(
        ["/usr/bin/python3", "-I", "-S", "-c", launcher, "--fleet", str(REPO), "federation",
         "backup", "brieux", "--state-dir", str(tmp_path / "federation"),
         "--replication-state", str(tmp_path / "replication")],
        capture_output=True, text=True, cwd=tmp_path, env={"COLUMNS": "300"},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "this kloudctl lacks the Python module" in done.stderr
    assert "that failover and its backups need (the Proxmox API client)" in done.stderr
