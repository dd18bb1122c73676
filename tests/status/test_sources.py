"""What status reads beside the API: the power record over SSH, and replication, for a
cabinet `replication deploy` recorded (its SSH target), with the real OpenSSH client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kloudctl.answers import UnexpectedAnswer
from kloudctl.status.gather import gather, parse_power_line, probes_for, replication_summary
from kloudctl.testbed.simfleet import SimFleet
from tests.status.conftest import closed_port


def test_power_record_lines_as_the_recorder_writes_them() -> None:
    # kloudctl-power-record.j2: `echo "$(date -u +%Y-%m-%dT%H:%M:%SZ),$watts"`
    assert parse_power_line("t", "2026-11-30T04:00:00Z,212\n") == (1796011200.0, 212.0)
    assert parse_power_line("t", "time,watts\n") == (None, None)  # header only: no measure
    assert parse_power_line("t", "") == (None, None)
    for wrong in ("yesterday,212", "2026-11-30T04:00:00Z,lots", "2026-11-30T04:00:00Z,-5"):
        with pytest.raises(UnexpectedAnswer, match="t answered unexpectedly"):
            parse_power_line("t", wrong)


def test_replication_summary_takes_the_worst_lag_and_says_what_is_unknown() -> None:
    rows = [
        {"peer": "a", "lag_seconds": 60.0, "last_check": {"local": {"ok": True}}},
        {"peer": "b", "lag_seconds": 600.0, "last_check": {"peer-b": {"ok": False}}},
    ]
    summary = replication_summary(rows)
    assert summary["state"] == "ok" and summary["lag_seconds"] == 600.0
    assert summary["last_check"] == {"local": {"ok": True}, "peer-b": {"ok": False}}
    rows[1] = {"peer": "b", "lag_seconds": None, "peer_error": "peer b unreachable"}
    summary = replication_summary(rows)
    assert summary["state"] == "unknown" and summary["lag_seconds"] is None
    assert summary["detail"] == "peer b unreachable"


def test_a_deployed_cabinet_that_does_not_answer_over_ssh(sims: SimFleet, tmp_path: Path) -> None:
    """mortree is deployed (an SSH target in the replication state) but its SSH port is
    closed: the API part is reported, the power is 'not measured' with ssh's reason, the
    replication state is unknown with the same reason; the others are not set up."""
    state = tmp_path / "replication"
    state.mkdir()
    options = ["-o", f"Port={closed_port()}", "-o", "ConnectTimeout=3",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no"]  # fmt: skip
    endpoints = {"cabinets": {"mortree": {"ssh": {"address": "127.0.0.1", "options": options}}}}
    (state / "endpoints.json").write_text(json.dumps(endpoints))
    fleet = sims.fleet()
    probes = probes_for(fleet, sims.root, state)
    assert list(probes.ssh) == ["mortree"]
    found = {s.cabinet: s for s in gather(fleet, ["brieux", "mortree"], timeout=8, probes=probes)}
    mortree = found["mortree"]
    assert mortree.reachable  # the API answered
    assert mortree.power["measured_watts"] is None
    assert "ssh root@127.0.0.1 failed" in mortree.power["measured"]
    assert "refused" in mortree.power["measured"].lower()
    assert mortree.replication["state"] == "unknown"
    assert "127.0.0.1" in mortree.replication["detail"]
    assert found["brieux"].replication == {"state": "not set up"}
    assert found["brieux"].power["measured"] == "not measured"
