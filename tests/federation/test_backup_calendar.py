"""The OnCalendar of the cabinets' periodic timers, read back by systemd itself
(`systemd-analyze calendar`): the one function that computes it
(`kloudctl.hosts.timers.on_calendar`) repeats exactly at its period for every period it
gives, and the inventory hands both timers (replication's run, the failover backup) what
it computes, for any declared interval and RPO. A whole day once rendered `00/24:00:00`,
which systemd refuses ("bad unit file setting"): the timer never loaded."""

from __future__ import annotations

import itertools
import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from kloudctl import ansible_inventory
from kloudctl.federation.roles import BACKUP_PERIODS, backup_period
from kloudctl.hosts.timers import (
    CALENDAR_PERIODS,
    DAY,
    HOUR,
    MINUTE,
    WEEK,
    calendar_period,
    on_calendar,
)
from kloudctl.model import load_fleet
from kloudctl.model.types import MAX_DURATION
from kloudctl.testbed.fleets import make_fleet_root
from tests.molecule_support import run_role_assertions

REPO = Path(__file__).resolve().parents[2]


def _elapses(spec: str) -> list[datetime]:
    """The next three moments systemd fires OnCalendar=`spec` at. In UTC: a cabinet's
    local time may skip or repeat an hour twice a year, which is not the period's doing."""
    shown = subprocess.run(
        ["systemd-analyze", "calendar", "--iterations=3", spec],
        capture_output=True, text=True, check=False, env={**os.environ, "TZ": "UTC"},
    )  # fmt: skip
    assert shown.returncode == 0, f"systemd refuses OnCalendar={spec}: {shown.stderr.strip()}"
    moments = []
    for line in shown.stdout.splitlines():
        label, _, value = line.strip().partition(": ")
        if label == "Next elapse" or label.startswith("Iter. #"):
            moments.append(datetime.strptime(value.rsplit(" ", 1)[0], "%a %Y-%m-%d %H:%M:%S"))
    assert len(moments) == 3, (spec, shown.stdout)
    return moments


def _gaps(spec: str) -> set[int]:
    return {int((b - a).total_seconds()) for a, b in itertools.pairwise(_elapses(spec))}


@pytest.mark.parametrize("period", CALENDAR_PERIODS)
def test_every_calendar_the_function_gives_repeats_at_its_period(period: int) -> None:
    spec = on_calendar(period)
    assert _gaps(spec) == {period}, spec


def test_a_day_is_midnight_every_day() -> None:
    assert on_calendar(DAY) == "daily"
    moments = _elapses(on_calendar(DAY))
    assert {(m.hour, m.minute, m.second) for m in moments} == {(0, 0, 0)}
    assert _gaps(on_calendar(DAY)) == {DAY}


def test_systemd_refuses_what_the_role_once_rendered_for_a_day() -> None:
    """The failure the one function replaces, so the check above is one that can fail."""
    with pytest.raises(AssertionError, match="systemd refuses OnCalendar=00/24:00:00"):
        _elapses("00/24:00:00")


def _durations() -> list[int]:
    """Every duration a cabinet file may declare maps to a period through the bounds of
    CALENDAR_PERIODS: these are the values on either side of each bound, and the extremes."""
    around = {p + d for p in CALENDAR_PERIODS for d in (-1, 0, 1)}
    return sorted({1, 59, MAX_DURATION} | {s for s in around if 1 <= s <= MAX_DURATION})


def test_any_declared_duration_runs_at_a_calendar_period_never_longer() -> None:
    for seconds in _durations():
        period = calendar_period(seconds)
        assert period in CALENDAR_PERIODS, seconds
        assert period <= max(seconds, MINUTE), seconds
        # none longer would still fit: the timer runs no more often than it must
        assert not [p for p in CALENDAR_PERIODS if period < p <= seconds], seconds
        assert on_calendar(seconds) == on_calendar(period), seconds
    # the failover backup's periods are calendar periods from 5 minutes to a day
    assert {backup_period(s) for s in _durations()} == set(BACKUP_PERIODS)
    assert set(BACKUP_PERIODS) <= set(CALENDAR_PERIODS)
    assert (min(BACKUP_PERIODS), max(BACKUP_PERIODS)) == (5 * MINUTE, DAY)


# The role's own check of the calendar it is given: its assertions (tasks/assert.yml) run
# for real by ansible-playbook on this machine (local connection; assertions touch nothing).
GOOD = {
    "federation_mesh__kloudctl_bundle": "/tmp/bundles/kloudctl-cabinet-0123abcd.tar.gz",
    "federation_mesh__wireguard_go_src": "/usr/local/bin/wireguard-go",
    "federation_mesh__fleet_dir": "/tmp/fleet",
    "federation_mesh__failover_backup_period": DAY,
    "federation_mesh__failover_backup_on_calendar": on_calendar(DAY),
}


def _role_assertions(
    tmp_path: Path, role: str = "federation_mesh", **overrides: object
) -> subprocess.CompletedProcess[str]:
    return run_role_assertions(
        tmp_path, role, {**(GOOD if role == "federation_mesh" else {}), **overrides}
    )


@pytest.mark.parametrize(
    ("interval", "rpo", "run_every", "backup_every"),
    [
        ("1m", "5m", MINUTE, 5 * MINUTE),
        ("45m", "90m", 30 * MINUTE, HOUR),
        ("1h", "6h", HOUR, 6 * HOUR),
        ("7h", "1d", 6 * HOUR, DAY),  # the one-day failover backup
        ("3d", "30d", DAY, DAY),
        ("7d", "3650d", WEEK, DAY),
    ],
)
def test_the_inventory_gives_both_timers_the_one_calendar(
    tmp_path: Path, interval: str, rpo: str, run_every: int, backup_every: int
) -> None:
    """Through the inventory Ansible reads: brieux's policy interval schedules its
    replication run, its RPO its failover backup (it declares a failover VM)."""
    root = make_fleet_root(tmp_path / "fleet")
    policy = root / "backups" / "standard.yaml"
    text = policy.read_text().replace("interval: 1h\n", f"interval: {interval}\n")
    policy.write_text(text.replace("rpo: 6h\n", f"rpo: {rpo}\n"))
    cabinet = root / "cabinets" / "brieux.yaml"
    cabinet.write_text(cabinet.read_text().replace("  rpo: 6h\n", f"  rpo: {rpo}\n"))

    brieux = ansible_inventory.build(load_fleet(root))["hostvars"]["brieux"]
    run = brieux["replication_source__run_on_calendar"]
    backup = brieux["federation_mesh__failover_backup_on_calendar"]
    assert brieux["federation_mesh__failover_backup_period"] == backup_every
    assert (run, backup) == (on_calendar(run_every), on_calendar(backup_every))
    assert _gaps(run) == {run_every}, run
    assert _gaps(backup) == {backup_every}, backup
    # and the role accepts the failover backup's inputs as given (its delay below its period)
    given = {k: v for k, v in brieux.items() if k.startswith("federation_mesh__failover_backup")}
    assert set(given) == {
        "federation_mesh__failover_backup_period",
        "federation_mesh__failover_backup_on_calendar",
        "federation_mesh__failover_backup_randomized_delay",
    }
    done = _role_assertions(tmp_path, **given)
    assert done.returncode == 0, done.stdout[-2000:]


@pytest.mark.parametrize(
    "calendar", ["", "daily\n", "hourly\nExecStart=/bin/sh", " daily", 3600, ["hourly"]]
)
def test_the_role_refuses_a_calendar_of_the_wrong_shape_first(
    tmp_path: Path, calendar: object
) -> None:
    done = _role_assertions(tmp_path, federation_mesh__failover_backup_on_calendar=calendar)
    assert done.returncode == 2, done.stdout[-2000:]
    assert "its OnCalendar (a non-empty one-line calendar expression" in done.stdout


REPLICATION_CALENDAR = "must each be an OnCalendar (a non-empty one-line calendar expression"


@pytest.mark.parametrize(
    ("which", "calendar"),
    [
        ("run", ""),
        ("run", "hourly\nExecStart=/bin/sh"),
        ("check", " daily"),
        ("check", 3600),
        ("run", ["hourly"]),
    ],
)
def test_replications_role_refuses_a_calendar_of_the_wrong_shape_first(
    tmp_path: Path, which: str, calendar: object
) -> None:
    done = _role_assertions(
        tmp_path, "replication_source", **{f"replication_source__{which}_on_calendar": calendar}
    )
    assert done.returncode == 2, done.stdout[-2000:]
    assert REPLICATION_CALENDAR in done.stdout


def test_replications_role_takes_the_inventorys_calendars(tmp_path: Path) -> None:
    """The calendars the inventory gives pass the role's first check: the play goes on to the
    next assertion (which, given nothing else here, is the one that refuses)."""
    brieux = ansible_inventory.build(load_fleet(make_fleet_root(tmp_path / "fleet")))["hostvars"][
        "brieux"
    ]
    given = {k: v for k, v in brieux.items() if k.endswith("_on_calendar") and "replication" in k}
    assert set(given) == {"replication_source__run_on_calendar"}
    done = _role_assertions(tmp_path, "replication_source", **given)
    assert REPLICATION_CALENDAR not in done.stdout
    assert "Check the cabinet, the controller's files and the peers" in done.stdout
    assert done.returncode == 2, done.stdout[-2000:]
