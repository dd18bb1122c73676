"""State folder, generated secrets, the clock, and the monitoring-plugin verdicts."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kloudctl.errors import InputError, KloudError, NotFound, PartialFailure
from kloudctl.replication import status as st
from kloudctl.replication.layout import Layout, now, replicated_cabinets
from kloudctl.replication.status import JobCheck


def test_secrets_are_generated_once_0600_in_a_0700_folder(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "state")
    first = layout.secret("alpha.local.password")
    value = first.read_text()
    assert layout.secret("alpha.local.password").read_text() == value
    assert len(value.strip()) >= 40
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert stat.S_IMODE(layout.secrets.stat().st_mode) == 0o700
    ident = layout.rest_identity("alpha", "beta")
    user, password = ident.read_text().strip().split(":")
    assert user == "alpha" and stat.S_IMODE(ident.stat().st_mode) == 0o600
    assert layout.htpasswd_line("alpha", "beta").startswith("alpha:$2b$10$")
    assert layout.htpasswd_line("alpha", "beta") == layout.htpasswd_line("alpha", "beta")
    assert password not in layout.htpasswd_line("alpha", "beta")


def test_state_folder_default_and_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KLOUDCTL_REPLICATION_STATE", raising=False)
    assert Layout.for_fleet(tmp_path).state == (tmp_path / ".state" / "replication").resolve()
    monkeypatch.setenv("KLOUDCTL_REPLICATION_STATE", str(tmp_path / "env"))
    assert Layout.for_fleet(tmp_path).state == (tmp_path / "env").resolve()
    assert Layout.for_fleet(tmp_path, tmp_path / "opt").state == (tmp_path / "opt").resolve()


def test_bad_endpoints_file_is_an_input_error(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    (tmp_path / "endpoints.json").write_text("{not json")
    with pytest.raises(InputError, match=r"endpoints\.json"):
        layout.endpoints()


def test_peer_without_server_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no rest-server known for cabinet 'beta'"):
        Layout(tmp_path).peer_repo("alpha", "beta")


def test_injected_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLOUDCTL_NOW", "2026-01-01T00:00:00Z")
    assert now() == 1767225600.0
    assert now("100") == 100.0
    with pytest.raises(InputError):
        now("yesterday")


def test_target_selection(tmp_path: Path) -> None:
    from kloudctl.model import load_fleet
    from kloudctl.testbed.fleets import make_fleet

    fleet = load_fleet(make_fleet(tmp_path, ["alpha", "beta", "gamma"]))
    assert replicated_cabinets(fleet, None, True) == ["alpha", "beta", "gamma"]
    assert replicated_cabinets(fleet, "beta", False) == ["beta"]
    with pytest.raises(InputError):
        replicated_cabinets(fleet, None, False)
    with pytest.raises(InputError):
        replicated_cabinets(fleet, "beta", True)


def _job(code: int, lag: float | None, reason: str = "ok") -> JobCheck:
    return JobCheck("alpha", "beta", code, reason, lag, 21600, None, True, 0.1)


def test_summary_line_and_worst_state() -> None:
    code, line = st.summary_line([_job(st.OK, 120.0), _job(st.OK, 3000.0)])
    assert code == st.OK
    assert line == (
        "REPLICATION OK - 2 job(s) replicated, max lag 50m | "
        "'lag_alpha_beta'=120s;10800;21600;0 'lag_alpha_beta'=3000s;10800;21600;0"
    )
    code, line = st.summary_line(
        [_job(st.WARNING, 12000.0, "lag 3h20m past half"), _job(st.UNKNOWN, None)]
    )
    assert code == st.UNKNOWN and "'lag_alpha_beta'=U;" in line
    assert st.summary_line([_job(st.CRITICAL, 1.0), _job(st.UNKNOWN, None)])[0] == st.CRITICAL
    assert st.summary_line([])[0] == st.UNKNOWN


def test_durations_read_like_people_write_them() -> None:
    assert st.format_duration(45) == "45s"
    assert st.format_duration(15000) == "4h10m"
    assert st.format_duration(2 * 86400 + 3 * 3600 + 59) == "2d3h"


def test_read_commands_never_make_the_state_or_a_key(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"replication state folder .*missing does not exist"):
        Layout.for_fleet(tmp_path, tmp_path / "missing", read_only=True)
    assert not (tmp_path / "missing").exists()
    layout = Layout.for_fleet(tmp_path, tmp_path, read_only=True)
    with pytest.raises(
        NotFound, match=r"alpha\.local\.password is missing: `kloudctl replication run`"
    ):
        layout.local_repo("alpha")
    with pytest.raises(NotFound):
        layout.rest_identity("alpha", "beta")
    assert list(tmp_path.iterdir()) == []
    made = Layout(tmp_path).secret("alpha.local.password")  # a run makes it; reads find it
    assert layout.local_repo("alpha").password_file == made


def test_check_without_an_endpoint_is_unknown_with_the_whole_remedy(tmp_path: Path) -> None:
    from kloudctl.model import load_fleet
    from kloudctl.replication.ops import Replicator
    from kloudctl.testbed.fleets import make_fleet

    fleet = load_fleet(make_fleet(tmp_path / "fleet", ["alpha", "beta"]))
    layout = Layout.for_fleet(tmp_path, tmp_path, read_only=True)
    [job] = st.check(Replicator(fleet, layout), ["alpha"])
    assert job.code == st.UNKNOWN and "unreachable" not in job.reason
    assert job.reason.endswith("or start one with `kloudctl replication serve`"), job.reason
    assert len(job.reason) > 120  # was cut at 120 characters, remedy lost
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet"]


def test_a_status_of_errors_is_no_success() -> None:
    ok = {"cabinet": "alpha", "peer": "beta", "local_error": None, "peer_error": None}
    bad = {"cabinet": "beta", "peer": "alpha", "local_error": None, "peer_error": "down"}
    st.raise_for_status([ok])
    with pytest.raises(PartialFailure, match="replication status failed for: beta"):
        st.raise_for_status([ok, bad])
    with pytest.raises(KloudError) as failed:
        st.raise_for_status([bad])
    assert failed.value.exit_code == 1


def test_the_clock_refuses_what_is_not_a_time() -> None:
    for value in ("nan", "inf", "-1", "1e20", "yesterday"):
        with pytest.raises(InputError, match="--now/KLOUDCTL_NOW: expected epoch seconds"):
            now(value)
