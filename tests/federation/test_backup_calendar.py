"""The failover backup timer's OnCalendar, as the federation_mesh role renders it from its
period, read back by systemd itself (`systemd-analyze calendar`): every period the
inventory may give repeats exactly at that period. A whole day once rendered `00/24:00:00`,
which systemd refuses ("bad unit file setting"): the timer never loaded."""

from __future__ import annotations

import itertools
import subprocess
from datetime import datetime
from pathlib import Path

import jinja2
import pytest
import yaml

from kloudctl.federation.roles import BACKUP_PERIODS

REPO = Path(__file__).resolve().parents[2]
VARS = REPO / "roles" / "federation_mesh" / "vars" / "main.yml"


def _on_calendar(period: int) -> str:
    expression = yaml.safe_load(VARS.read_text())["federation_mesh__failover_backup_on_calendar"]
    return jinja2.Template(expression).render(federation_mesh__failover_backup_period=period)


def _elapses(spec: str) -> list[datetime]:
    shown = subprocess.run(
        ["systemd-analyze", "calendar", "--iterations=3", spec],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, f"systemd refuses OnCalendar={spec}: {shown.stderr.strip()}"
    moments = []
    for line in shown.stdout.splitlines():
        label, _, value = line.strip().partition(": ")
        if label == "Next elapse" or label.startswith("Iter. #"):
            moments.append(datetime.strptime(value.rsplit(" ", 1)[0], "%a %Y-%m-%d %H:%M:%S"))
    return moments


@pytest.mark.parametrize("period", BACKUP_PERIODS)
def test_the_timer_repeats_at_its_period(period: int) -> None:
    spec = _on_calendar(period)
    moments = _elapses(spec)
    assert len(moments) == 3, (spec, moments)
    gaps = {int((b - a).total_seconds()) for a, b in itertools.pairwise(moments)}
    assert gaps == {period}, (spec, gaps)
