"""`kloudctl federation deploy`, its pieces: which cabinets it runs on (refusals before
anything runs) and how a playbook run's per-host recap becomes lines and an exit code.

The run itself (ansible-runner on test cabinets) is exercised by
tests/federation/test_cabinets_mesh.py, which deploys the mesh through
`kloudctl.federation.deploy.deploy`; here the recaps are built as the runner records them
(`HostRecap`, `Failure`), since the outcomes to map (a failed, an unreachable cabinet)
cannot be produced on demand without cabinets."""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import jinja2
import pytest

from kloudctl.errors import ExternalError, InputError, NotFound, PartialFailure
from kloudctl.failover.ops import Failover
from kloudctl.federation.deploy import api_targets, check, members_to_deploy, summary
from kloudctl.federation.registry import RegistryStore
from kloudctl.federation.roles import role_vars
from kloudctl.hosts import bundle
from kloudctl.hosts.runner import Failure, HostRecap, RunResult
from kloudctl.model import load_fleet
from kloudctl.proxmox.client import Client
from kloudctl.proxmox.target import cabinet_target
from kloudctl.replication import restic as r
from kloudctl.replication.layout import Layout
from kloudctl.replication.restic import Restic
from kloudctl.replication.serve import loopback
from tests.federation.conftest import Federation
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


def test_a_failover_cabinets_token_that_cannot_be_read_stops_deploy_before_anything_runs(
    fleet_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """brieux declares a failover VM: its backup timer needs its API token, read on the
    controller by the fleet's resolver; a vault with no password given stops the deploy
    (exit 2, the reference named, nothing written). Saint-aubin declares none: no token."""
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    monkeypatch.delenv("KLOUDCTL_PROXMOX_TARGETS", raising=False)
    fleet = load_fleet(fleet_root)
    assert api_targets(fleet, ["saint-aubin"]) == {}
    with pytest.raises(InputError, match=r"vault:secrets/brieux\.vault\.yml#proxmox_token"):
        api_targets(fleet, ["brieux", "saint-aubin"])
    before = tree(fleet_root)
    ran = invoke("--fleet", str(fleet_root), "federation", "deploy", "brieux", "--no-testbed")
    assert ran.code == 2, ran.flat()
    assert "set ANSIBLE_VAULT_PASSWORD_FILE to open the vault" in ran.flat()
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
        "federation_mesh__failover_backup_on_calendar": "00/6:00:00",
        "federation_mesh__failover_backup_randomized_delay": 600,
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


ROLE = REPO / "roles" / "federation_mesh"


def _render(template: str, values: dict[str, Any]) -> str:
    """One of the role's templates, rendered by Jinja as Ansible's `template` module does
    (the same file; `ansible_managed` is the only variable Ansible itself adds)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    text = (ROLE / "templates" / template).read_text()
    return env.from_string(text).render(ansible_managed="(test)", **values)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_the_backup_timers_command_backs_up_with_the_cabinets_own_kloudctl(
    tmp_path: Path, federation: Federation
) -> None:
    """What kloudctl-federation-backup.service runs, word for word from the rendered unit
    (its ExecStart and its Environment), with the real cabinet bundle alone on the system's
    python3 (-I -S, the role's launcher), reading the targets file the role writes from the
    inputs `federation deploy` gives it. Brieux's Proxmox is a `kloudctl sim` on loopback
    (there is no Proxmox here), its peer mortree a real rest-server: the archive lands in
    brieux's local repository and in its copy on mortree, the same sha256."""
    from tests.federation.test_failover import HOME, HOME_VMID, PEER, VM, cabinet_sim, make_fleet

    root = make_fleet(tmp_path / "fleet")
    federation_state = root / ".state" / "federation"
    federation_state.mkdir(parents=True)
    RegistryStore(federation_state).accept(federation.chain(upto=2), "(test)")
    fleet = load_fleet(root)
    layout = Layout(root / ".state" / "replication")
    built = bundle.build(tmp_path / "bundles")
    version = bundle.version_of(built)
    opt = tmp_path / "opt" / "kloudctl"
    with tarfile.open(built) as tar:
        tar.extractall(opt / version, filter="data")
    with (
        loopback(layout, fleet, [PEER]),
        cabinet_sim(root, HOME, tmp_path / "sim-brieux", "127.0.0.30") as home_sim,
    ):
        simulated = cabinet_target(fleet, HOME)  # the simulator's, from its targets file
        home = Client(simulated, component="test")
        home.post("nodes/pve1/qemu/9000/clone", newid=HOME_VMID, name=VM, full=1)
        home.post(f"nodes/pve1/qemu/{HOME_VMID}/status/start")
        # The role's inputs: the inventory's, then what `federation deploy` passes (its
        # token, read by the controller's resolver: here the simulator's); the cabinet's
        # own address is the simulator's, since brieux's Proxmox is that simulator.
        inputs = role_vars(fleet, fleet.cabinet(HOME))
        assert inputs["federation_mesh__failover_vms"] == [VM]
        assert inputs["federation_mesh__proxmox_endpoint"] == "https://127.0.0.1:8006"
        secrets = api_targets(fleet, [HOME, PEER])
        assert list(secrets) == [HOME]  # mortree declares no failover VM: no token goes
        values = {
            **inputs,
            "federation_mesh__cabinet": HOME,
            "federation_mesh__proxmox_endpoint": simulated.endpoint,
            "federation_mesh__proxmox_api": secrets[HOME],
            "federation_mesh__proxmox_targets_file": str(tmp_path / "etc" / "targets.json"),
            "federation_mesh__fleet_path": str(root),
            "federation_mesh__state_dir": str(federation_state),
            "federation_mesh__replication_state_dir": str(layout.state),
            "federation_mesh__kloudctl_version": version,
        }
        targets = Path(values["federation_mesh__proxmox_targets_file"])
        targets.parent.mkdir()
        targets.write_text(_render("proxmox-targets.json.j2", values))
        unit = _render("kloudctl-federation-backup.service.j2", values)
        launcher = tmp_path / "kloudctl"
        launcher.write_text(_render("kloudctl.j2", values).replace("/opt/kloudctl/", f"{opt}/"))
        launcher.chmod(0o755)
        [environment] = re.findall(r"^Environment=(\S+)=(\S+)$", unit, re.M)
        assert environment == ("KLOUDCTL_PROXMOX_TARGETS", str(targets))
        [exec_start] = re.findall(r"^ExecStart=(.*)$", unit, re.M)
        argv = shlex.split(exec_start)
        assert argv[0] == "/usr/local/bin/kloudctl"
        done = subprocess.run(
            [str(launcher), *argv[1:]],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            # systemd's environment for a service: its PATH (restic among the tools), no HOME
            env={
                "PATH": f"{REPO / '.tools' / 'bin'}:/usr/bin:/bin",
                environment[0]: environment[1],
            },
            timeout=300,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        assert "Traceback" not in done.stderr
        secret = secrets[HOME]["secret"]
        assert secret not in done.stdout + done.stderr
        archive_names = sorted((home_sim.storage_folder("pve1", "local") / "dump").glob("*"))
        [archive] = [a for a in archive_names if a.name.endswith(".vma.zst")]
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        restic = Restic()
        local = r.snapshot_list(
            restic.run(layout.local_repo(HOME), r.snapshots_args(host=HOME, tags=["failover"]))
        )
        [kept] = local
        wanted = {"failover", f"vm:{VM}", f"archive:{archive.name}", f"sha256:{digest}"}
        assert wanted <= set(kept["tags"]), kept["tags"]
        copied = Failover(fleet, layout, federation_state).latest_backup(HOME, VM, PEER)
        assert wanted <= set(copied["tags"]), copied["tags"]
        assert copied.get("original") == kept["id"]  # `restic copy` names its source
