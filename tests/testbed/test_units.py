"""Fast tests of the testbed and Ansible plumbing: no container, no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kloudctl.errors import ExternalError, InputError, PartialFailure
from kloudctl.hosts import inventory, secrets
from kloudctl.hosts.runner import RunResult, _record
from kloudctl.model import load_fleet
from kloudctl.testbed import image
from kloudctl.testbed.podman import check_config

REPO = Path(__file__).resolve().parents[2]


# --- podman configuration check -------------------------------------------------------


def test_config_check_names_each_wrong_setting_and_the_fix(tmp_path: Path) -> None:
    conf = tmp_path / "containers.conf"
    conf.write_text('[engine]\nruntime = "crun"\n')
    findings = [str(f) for f in check_config(conf)]
    assert "[engine] runtime is crun; set runtime = runc" in findings
    assert "[engine] cgroup_manager not set; set cgroup_manager = cgroupfs" in findings
    assert "[containers] default_ulimits not set; set default_ulimits = []" in findings


def test_config_check_accepts_the_project_file() -> None:
    assert check_config(REPO / "scripts" / "containers.conf") == []


# --- image recipe -----------------------------------------------------------------------


def test_mirror_is_read_from_deb822_and_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("# nothing\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/security\n"
        "Suites: bookworm-security\nComponents: main\n"
    )
    assert image.host_mirror(tmp_path) == image.Mirror(
        "http://mirror.example/debian", "http://mirror.example/security"
    )
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://other.example/debian bookworm main\n"
    )
    assert image.host_mirror(tmp_path).debian == "http://other.example/debian"


def test_recipe_hash_changes_with_the_recipe_only() -> None:
    mirror = image.Mirror("http://m/debian", None)
    base = image.image_name(mirror=mirror)
    assert base == image.image_name(mirror=mirror)
    assert base.startswith("localhost/kloudctl-debian:12-")
    assert image.image_name(["postfix"], mirror) == base  # already in the recipe
    assert image.image_name(["dovecot-imapd"], mirror) != base
    assert image.image_name(mirror=image.Mirror("http://n/debian", None)) != base


# --- inventory ---------------------------------------------------------------------------


def test_inventory_groups_and_host_vars_come_from_the_model() -> None:
    inv = inventory.build(load_fleet(REPO))
    groups = {name: sorted(g["hosts"]) for name, g in inv["groups"].items()}
    assert groups["proxmox_hosts"] == ["brieux", "mortree", "saint-aubin"]
    assert groups["mail_hosts"] == sorted(c.name for c in load_fleet(REPO) if c.mail is not None)
    assert groups["commune_saint_aubin"] == ["saint-aubin"]
    assert groups["federation_bocage"] == ["brieux", "mortree", "saint-aubin"]
    brieux = inv["hostvars"]["brieux"]
    assert brieux["ansible_host"] == "10.61.63.2"
    assert brieux["proxmox_host__tenant_vlans"] == "100-199"
    assert brieux["power_budget__ups_name"] == "eaton"
    assert brieux["power_budget__spindown_disks"] == ["sda"]


def test_testbed_overlay_changes_only_connection_and_testbed_values(tmp_path: Path) -> None:
    (tmp_path / "secret-vars.json").write_text(
        json.dumps({"brieux": {"power_budget__ups_password": "s"}})
    )
    testbed = {
        "state_dir": str(tmp_path),
        "hosts": {"brieux": {"address": "10.89.7.10"}},
        "hostvars": {"brieux": {"power_budget__ups_host": "10.89.7.3"}},
    }
    inv = inventory.build(load_fleet(REPO), testbed)
    brieux = inv["hostvars"]["brieux"]
    assert brieux["ansible_host"] == "10.89.7.10"
    assert brieux["ansible_ssh_private_key_file"] == str(tmp_path / "id_ed25519")
    assert brieux["power_budget__ups_host"] == "10.89.7.3"
    assert brieux["power_budget__ups_password"] == "s"
    assert brieux["proxmox_host__management_address"] == "10.61.63.2"  # the model's, untouched
    assert inv["hostvars"]["mortree"]["ansible_host"] == "10.61.67.2"


def _ansible_inventory(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KLOUDCTL_FLEET": str(root), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env.pop("KLOUDCTL_TESTBED_STATE", None)
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-inventory"),
            "-i",
            str(REPO / "inventory"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_ansible_inventory_graph_works() -> None:
    proc = _ansible_inventory(REPO, "--graph")
    assert proc.returncode == 0, proc.stderr
    for line in (
        "@proxmox_hosts:",
        "@mail_hosts:",
        "@replication_targets:",
        "@federation_members:",
    ):
        assert line in proc.stdout
    assert "@commune_brieux:" in proc.stdout


def test_broken_cabinet_gives_the_located_error_in_ansible(example_fleet: Path) -> None:
    path = example_fleet / "cabinets" / "brieux.yaml"
    path.write_text(path.read_text().replace("budget_watts: 500", "budget_wats: 500"))
    proc = _ansible_inventory(example_fleet, "--graph")
    assert proc.returncode != 0
    assert "cabinets/brieux.yaml:" in proc.stderr
    assert "power.budget_wats: unknown key; did you mean 'budget_watts'?" in proc.stderr


# --- runner events, recap and exit codes ------------------------------------------------


def _events() -> list[dict[str, object]]:
    return [
        {"event": "playbook_on_task_start", "event_data": {"task": "Install", "role": "base"}},
        {
            "event": "runner_on_ok",
            "event_data": {
                "host": "a",
                "task": "Install",
                "role": "base",
                "res": {"changed": True},
            },
        },
        {
            "event": "runner_on_failed",
            "event_data": {
                "host": "b",
                "task": "Install",
                "role": "base",
                "res": {"msg": "no space left"},
            },
        },
        {
            "event": "runner_on_unreachable",
            "event_data": {
                "host": "c",
                "task": "Gathering Facts",
                "res": {"msg": "ssh: connect timed out"},
            },
        },
        {
            "event": "playbook_on_stats",
            "event_data": {
                "ok": {"a": 3, "b": 1},
                "changed": {"a": 1},
                "failures": {"b": 1},
                "dark": {"c": 1},
            },
        },
    ]


def test_runner_events_give_recap_and_failures() -> None:
    result = RunResult("bootstrap.yml", ["a", "b", "c"])
    seen = []
    for event in _events():
        _record(event, result, seen.append)
    assert [e.kind for e in seen] == ["task_start", "changed", "failed", "unreachable", "stats"]
    assert result.recaps["a"].status == "changed"
    assert result.failed == ["b"] and result.unreachable == ["c"]
    assert [(f.host, f.task, f.message) for f in result.failures] == [
        ("b", "base : Install", "no space left"),
        ("c", "Gathering Facts", "ssh: connect timed out"),
    ]
    with pytest.raises(ExternalError, match="failed on b; unreachable: c"):
        result.raise_for_status()


def test_unreachable_hosts_beside_finished_ones_is_a_partial_failure() -> None:
    result = RunResult("bootstrap.yml", ["a", "c"])
    for event in _events():
        if event["event"] != "runner_on_failed":
            _record(event, result, None)
    result.recaps["b"].failed = 0
    result.recaps.pop("b")
    with pytest.raises(PartialFailure, match="unreachable: c; finished on a") as caught:
        result.raise_for_status()
    assert caught.value.exit_code == 3


def test_every_host_unreachable_is_a_failure_not_a_partial_one() -> None:
    result = RunResult("bootstrap.yml", ["c"])
    for event in _events():
        if event["event"] == "runner_on_unreachable":
            _record(event, result, None)
    _record(
        {"event": "playbook_on_stats", "event_data": {"dark": {"c": 1}, "ok": {}}}, result, None
    )
    assert list(result.recaps) == ["c"] and result.unreachable == ["c"]
    with pytest.raises(ExternalError, match="no host reached; unreachable: c") as caught:
        result.raise_for_status()
    assert not isinstance(caught.value, PartialFailure)
    assert caught.value.exit_code == 1


def test_runner_refuses_a_broken_fleet_before_running(example_fleet: Path) -> None:
    from kloudctl.hosts.runner import run_playbook

    path = example_fleet / "cabinets" / "mortree.yaml"
    path.write_text(path.read_text().replace("name: mortree", "name: Mortree!", 1))
    with pytest.raises(InputError) as caught:
        run_playbook(example_fleet, "bootstrap.yml")
    assert "cabinets/mortree.yaml:" in str(caught.value)


def test_runner_leaves_the_callers_signal_handlers(example_fleet: Path) -> None:
    """ansible-runner installs SIGINT/SIGTERM handlers; a run must give the caller its own
    back (a later Ctrl-C must still raise KeyboardInterrupt). Nothing is contacted: the
    playbook targets only the controller, with a local connection."""
    import signal

    from kloudctl.hosts.runner import run_playbook

    for item in ("ansible.cfg", "inventory", "roles"):
        (example_fleet / item).symlink_to(REPO / item)
    (example_fleet / "playbooks").mkdir()
    (example_fleet / "playbooks" / "noop.yml").write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n"
        "  tasks:\n    - ansible.builtin.debug: {msg: hello}\n"
    )
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    result = run_playbook(example_fleet, "noop.yml", limit=["brieux"])
    assert result.status in ("successful", "failed")  # it ran (no host of the limit matched)
    assert {s: signal.getsignal(s) for s in before} == before


# --- secret store ---------------------------------------------------------------------


def test_secret_store_is_private_and_referenced_not_shown(tmp_path: Path) -> None:
    path = secrets.write(tmp_path, secrets.TOKENS, {"brieux": {"secret": "s3cr3t"}})
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / ".state" / "secrets").stat().st_mode & 0o777 == 0o700
    assert secrets.read(tmp_path, secrets.TOKENS)["brieux"]["secret"] == "s3cr3t"
    assert "s3cr3t" not in secrets.reference(tmp_path, secrets.TOKENS, "brieux")
    path.chmod(0o644)
    with pytest.raises(Exception, match="readable by others"):
        secrets.read(tmp_path, secrets.TOKENS)
