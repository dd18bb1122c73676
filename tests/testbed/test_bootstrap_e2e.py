"""End to end: the three example cabinets as test cabinets, bootstrapped for real.

`kloudctl testbed up` (containers, local apt mirror, simulated UPS, simulated Proxmox API
when `kloudctl sim` is there), then `kloudctl cabinet bootstrap` in a subprocess, as a user
runs it. One testbed for the module, removed at the end.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kloudctl.testbed.fleets import make_fleet_root
from tests.conftest import run_kloudctl

pytestmark = [pytest.mark.podman, pytest.mark.slow]

PREFIX = "kloudctl-tbtest"
CABINETS = ["brieux", "mortree", "saint-aubin"]
HAS_SIM = importlib.util.find_spec("kloudctl.sim") is not None


def kl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_kloudctl("--fleet", str(root), *args, env={"KLOUDCTL_TESTBED_PREFIX": PREFIX})


@pytest.fixture(scope="module")
def fleet(testbed_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = make_fleet_root(tmp_path_factory.mktemp("e2e") / "fleet")
    up = kl(root, "testbed", "up", "--json")
    try:
        assert up.returncode == 0, up.stderr
        yield root
    finally:
        down = kl(root, "testbed", "down")
        assert down.returncode == 0, down.stderr
        left = subprocess.run(
            ["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True
        ).stdout
        assert PREFIX not in left


def state(root: Path) -> dict:
    return json.loads((root / ".state" / "testbed" / "testbed.json").read_text())


def on_host(root: Path, cabinet: str, *command: str) -> subprocess.CompletedProcess[str]:
    """Look inside a test cabinet without SSH (so login counts stay meaningful)."""
    container = state(root)["hosts"][cabinet]["container"]
    return subprocess.run(["podman", "exec", container, *command], capture_output=True, text=True)


def ssh_logins(root: Path) -> dict[str, int]:
    counts = {}
    for cabinet in CABINETS:
        proc = on_host(root, cabinet, "journalctl", "-u", "ssh", "--no-pager", "-o", "cat")
        counts[cabinet] = proc.stdout.count("Accepted publickey")
    return counts


@pytest.fixture(scope="module")
def first_run(fleet: Path) -> dict:
    proc = kl(fleet, "cabinet", "bootstrap", *CABINETS, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_three_cabinets_bootstrap_in_parallel(fleet: Path, first_run: dict) -> None:
    assert first_run["failures"] == []
    for cabinet in CABINETS:
        assert first_run["hosts"][cabinet]["status"] == "changed"
        assert first_run["hosts"][cabinet]["failed"] == 0
    # The Proxmox package came through the whole apt path from the local signed repository.
    mirror = state(fleet)["services"]["mirror"]["address"]
    policy = on_host(fleet, "mortree", "apt-cache", "policy", "proxmox-ve").stdout
    assert "Installed: 8.4.0+kloudctl1" in policy and f"http://{mirror} bookworm" in policy
    # The hostname resolves to the management address declared in the model.
    assert on_host(fleet, "saint-aubin", "getent", "hosts", "pve1").stdout.startswith("10.61.65.2 ")
    # Brieux declares a UPS: its NUT client monitors the simulated one, the recorder records.
    assert (
        on_host(fleet, "brieux", "systemctl", "is-active", "nut-monitor").stdout.strip() == "active"
    )
    on_host(fleet, "brieux", "systemctl", "start", "kloudctl-power-record.service")
    draw = on_host(fleet, "brieux", "tail", "-n1", "/var/lib/kloudctl-power/draw.csv").stdout
    assert draw.strip().endswith(",180")
    tokens = {t["cabinet"]: t for t in first_run["tokens"]}
    if HAS_SIM:
        assert {t["status"] for t in tokens.values()} == {"created"}
    else:
        assert {t["status"] for t in tokens.values()} == {"skipped"}
        assert "kloudctl sim" in tokens["brieux"]["detail"]


def test_second_run_changes_nothing(fleet: Path, first_run: dict) -> None:
    proc = kl(fleet, "cabinet", "bootstrap", *CABINETS, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = json.loads(proc.stdout)
    assert second["changed"] == 0, second["hosts"]
    assert {h["status"] for h in second["hosts"].values()} == {"ok"}
    if HAS_SIM:
        from kloudctl.hosts import secrets
        from kloudctl.proxmox.automation import token_works
        from kloudctl.proxmox.client import ApiTarget

        assert {t["status"] for t in second["tokens"]} == {"unchanged"}
        store = secrets.read(fleet, secrets.TOKENS)
        for cabinet in CABINETS:
            entry = store[cabinet]
            assert token_works(
                ApiTarget(
                    entry["endpoint"], entry["fingerprint"], entry["token_id"], entry["secret"]
                )
            )
        assert all(store[c]["secret"] not in proc.stdout + proc.stderr for c in CABINETS)


def test_broken_cabinet_file_stops_before_any_host_is_touched(fleet: Path, first_run: dict) -> None:
    path = fleet / "cabinets" / "mortree.yaml"
    original = path.read_text()
    before = ssh_logins(fleet)
    path.write_text(original.replace("\nhardware:", "\nhardwares:", 1))
    try:
        proc = kl(fleet, "cabinet", "bootstrap", *CABINETS)
    finally:
        path.write_text(original)
    assert proc.returncode == 2
    assert "cabinets/mortree.yaml:" in proc.stderr and "hardwares" in proc.stderr
    assert ssh_logins(fleet) == before


def test_unreachable_host_is_reported_and_the_others_finish(fleet: Path, first_run: dict) -> None:
    # Stop sshd and end its sessions too (Ansible keeps SSH connections open for reuse).
    on_host(fleet, "brieux", "sh", "-c", "systemctl stop ssh.service; pkill -x sshd; true")
    try:
        proc = kl(fleet, "cabinet", "bootstrap", "brieux", "mortree", "--json")
    finally:
        on_host(fleet, "brieux", "systemctl", "start", "ssh.service")
    assert proc.returncode == 3, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["hosts"]["brieux"]["status"] == "unreachable"
    assert result["hosts"]["mortree"]["status"] == "ok"
    assert [(f["host"], f["unreachable"]) for f in result["failures"]] == [("brieux", True)]
    assert "unreachable: brieux" in proc.stderr
