"""The Automation API driver's own logic, without running Pulumi."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
from pathlib import Path

import pytest

from kloudctl.errors import AdmissionRefused, StackBusy
from kloudctl.model import load_fleet
from kloudctl.tenants.engine import (
    StatePaths,
    TenantsStack,
    _ensure_state,
    _failures,
    stale_locks,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fleet_copy(tmp_path):
    shutil.copytree(ROOT / "cabinets", tmp_path / "cabinets")
    shutil.copytree(ROOT / "backups", tmp_path / "backups")
    return tmp_path


def test_passphrase_is_generated_once_0600(tmp_path):
    paths = StatePaths(tmp_path / "pulumi")
    _ensure_state(paths)
    first = paths.passphrase.read_text()
    assert len(first) >= 32
    assert stat.S_IMODE(paths.passphrase.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.root.stat().st_mode) == 0o700
    _ensure_state(paths)
    assert paths.passphrase.read_text() == first


def _lock(paths: StatePaths, stack: str, pid: int) -> Path:
    folder = paths.backend / ".pulumi/locks/organization/kloudctl-tenants" / stack
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / f"{pid}.json"
    lock.write_text(
        json.dumps(
            {"pid": pid, "hostname": socket.gethostname(), "username": "t", "timestamp": "x"}
        )
    )
    return lock


def test_a_dead_process_lock_is_stale_a_live_one_is_not(tmp_path):
    paths = StatePaths(tmp_path)
    dead = 2**22 + 12345  # above pid_max defaults: no such process
    stale = _lock(paths, "brieux", dead)
    live = _lock(paths, "brieux", os.getpid())
    found, alive = stale_locks(paths, "brieux")
    assert found == [stale]
    assert len(alive) == 1 and str(os.getpid()) in alive[0]
    live.unlink()


def test_live_lock_refuses_with_stack_busy(fleet_copy, monkeypatch):
    monkeypatch.setenv("KLOUDCTL_PULUMI_STATE", str(fleet_copy / "state"))
    stack = TenantsStack(load_fleet(fleet_copy), fleet_copy, "brieux")
    _lock(stack.paths, "brieux", os.getpid())
    with pytest.raises(StackBusy, match="another run"):
        stack._recover_stale_lock()


def test_admission_refuses_before_pulumi_is_touched(fleet_copy, monkeypatch):
    monkeypatch.setenv("KLOUDCTL_PULUMI_STATE", str(fleet_copy / "state"))
    path = fleet_copy / "cabinets" / "mortree.yaml"
    path.write_text(path.read_text().replace("quota: {vcpu: 6,", "quota: {vcpu: 6000,"))
    stack = TenantsStack(load_fleet(fleet_copy), fleet_copy, "mortree")
    with pytest.raises(AdmissionRefused, match="vCPU"):
        stack.run("apply")
    assert not (fleet_copy / "state").exists()  # no state, no passphrase, no Pulumi run


def test_resource_failures_keep_proxmox_words_not_tracebacks():
    diag = (
        "Exception: Traceback (most recent call last):\n"
        '  File "/x/provider.py", line 10, in create\n'
        "    raise TaskFailed(upid, exitstatus)\n"
        "kloudctl.proxmox.client.TaskFailed: Proxmox task qmresize 1000 failed: "
        "storage 'local-lvm' is full\n"
    )
    (message,) = _failures([diag], "")
    assert message == "Proxmox task qmresize 1000 failed: storage 'local-lvm' is full"
    assert _failures(["update failed"], "") == []
