"""`kloudctl sim up|status|fault|down` end to end: a real background process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from simhelpers import error_of, root_api

from kloudctl.sim.server import Endpoint

ROOT = Path(__file__).resolve().parents[2]


def kloudctl(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-c",
        "from kloudctl.cli import main; main()",
        "--fleet",
        str(ROOT),
        *args,
    ]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"}
    )


@pytest.mark.slow
def test_up_status_fault_down(tmp_path):
    state = ["--state-dir", str(tmp_path)]
    up = kloudctl("sim", "up", "saint-aubin", "--count", "1", "--port", "0", "--base-address", "127.0.0.40",
                  "--task-seconds", "0.05", "--json", *state,
                  "--replication-state", str(tmp_path / "repl"))  # fmt: skip
    assert up.returncode == 0, up.stderr
    try:
        cabinets = {c["name"]: c for c in json.loads(up.stdout)}
        assert set(cabinets) == {"saint-aubin", "sim01"}
        # the fleet's cabinet's storage folders are recorded where the failover reads them
        # (real folders of the simulator's kept state); an anonymous cabinet's are not
        recorded = json.loads((tmp_path / "repl" / "endpoints.json").read_text())["cabinets"]
        local = tmp_path / "saint-aubin" / "storage" / "pve1" / "local"
        assert recorded == {"saint-aubin": {"storages": {"pve1/local": str(local)}}}
        assert cabinets["saint-aubin"]["storages"] == {"pve1/local": str(local)}
        c = cabinets["saint-aubin"]
        assert (
            c["url"].startswith("https://127.0.0.40:") and cabinets["sim01"]["host"] == "127.0.0.41"
        )
        assert len(c["fingerprint"].split(":")) == 32 and c["user"] == "root@pam"
        ep = Endpoint(
            c["name"], c["host"], c["port"], c["fingerprint"], c["password"], tuple(c["nodes"])
        )
        api = root_api(ep)
        assert api.nodes(ep.nodes[0]).qemu(9000).config.get()["name"] == "debian-12-cloud"
        status = json.loads(kloudctl("sim", "status", "--json", *state).stdout)
        assert status["running"] and all(x["answering"] for x in status["cabinets"])
        fault = kloudctl(
            "sim", "fault", "saint-aubin", "error_rate", "--rate", "1", "--json", *state
        )
        assert fault.returncode == 0, fault.stderr
        assert json.loads(fault.stdout)["error_rate"] == 1.0
        assert error_of(api.version.get).status_code == 503
        bad = kloudctl("sim", "fault", "nowhere", "clear", *state)
        assert bad.returncode == 2 and "no simulated cabinet named 'nowhere'" in bad.stderr
        assert kloudctl("sim", "up", "--count", "1", *state).returncode == 1  # already running
    finally:
        down = kloudctl("sim", "down", *state)
    assert down.returncode == 0
    assert not json.loads(kloudctl("sim", "status", "--json", *state).stdout)["running"]
    assert (tmp_path / "saint-aubin" / "state.json").exists()


def test_up_refuses_unknown_cabinet(tmp_path):
    result = kloudctl("sim", "up", "atlantis", "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert "no cabinet named 'atlantis'" in result.stderr


def test_up_hints_name_the_same_state_folder(tmp_path, monkeypatch):
    """`sim down` without the --state-dir of `sim up` would stop another simulator."""
    from kloudctl.sim import runner
    from tests.unit.inprocess import invoke

    started = {"pid": 4242, "cabinets": []}
    monkeypatch.setattr(runner, "start_background", lambda options: started)
    ran = invoke("--fleet", str(ROOT), "sim", "up", "--state-dir", str(tmp_path / "s"))
    assert ran.code == 0, ran.output
    assert f"stop it with: kloudctl sim down --state-dir {tmp_path / 's'}" in ran.stderr
    ran = invoke("--fleet", str(ROOT), "sim", "up")
    assert ran.stderr.rstrip().endswith("stop it with: kloudctl sim down")
    assert runner.option_of(runner.DEFAULT_DIR) == ""


def test_people_see_where_the_root_password_is_never_the_password(tmp_path):
    """The table of `sim up` and `sim status` goes to terminals, logs and CI records: the
    root password stays in the run file (found by the secrets sweep in the demo's output)."""
    state = ["--state-dir", str(tmp_path)]
    up = kloudctl(
        "sim", "up", "--count", "1", "--port", "0", "--base-address", "127.0.0.44", *state
    )
    try:
        assert up.returncode == 0, up.stderr
        run = json.loads((tmp_path / "run.json").read_text())
        [password] = [c["password"] for c in run["cabinets"]]
        assert len(password) >= 12
        status = kloudctl("sim", "status", *state)
        assert status.returncode == 0, status.stderr
        assert "password: in the state folder's run.json (0600)" in up.stdout
        for shown in (up, status):
            assert password not in shown.stdout + shown.stderr
    finally:
        assert kloudctl("sim", "down", *state).returncode == 0
