"""The council's report computed from a history written here: uptime leaving out declared
maintenance, energy, incidents, periods without samples, escaping of hostile names, bad
input; and the fleet report. Expectations are computed by hand in the comments."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from kloudctl.council import render_html, render_md, samples
from kloudctl.council import report as cabinet_report
from kloudctl.model.loader import load_fleet
from tests.council.conftest import HOUR, T0, write_history

DAY = 86400.0


def _day_of_samples(fleet: Path) -> None:
    """24 hourly samples from T0 (2026-11-01 00:00 UTC); 10:00 and 11:00 unreachable;
    measured power 200 W throughout."""
    rows = [
        {"cabinet": "brieux", "taken_at": T0 + i * HOUR, "reachable": 0 if i in (10, 11) else 1,
         "error": "connection refused" if i in (10, 11) else None,
         "power_measured_watts": 200.0, "power_estimated_watts": 150.0,
         "replication_state": "ok", "replication_lag_seconds": 2 * HOUR,
         "storage_used_bytes": 100 * 1024**3, "storage_total_bytes": 1000 * 1024**3}
        for i in range(24)
    ]  # fmt: skip
    write_history(fleet / "history.sqlite", rows)


def _with_maintenance(fleet: Path) -> None:
    # 10:00-11:00 UTC written as Paris time: the hour of the first unreachable sample.
    path = fleet / "cabinets" / "brieux.yaml"
    text = path.read_text().replace(
        "2026-11-14T07:00:00+01:00, end: 2026-11-14T09:00:00+01:00",
        "2026-11-01T11:00:00+01:00, end: 2026-11-01T12:00:00+01:00",
    )
    path.write_text(text)


def _build(fleet: Path, now: float, period: float = DAY, lang: str = "fr") -> dict:
    cabinet = load_fleet(fleet).cabinet("brieux")
    found = samples.read(fleet / "history.sqlite", "brieux", before=now)
    return cabinet_report.build(cabinet, found, period_seconds=period, lang=lang, now=now)


def test_uptime_leaves_out_declared_maintenance(fleet_copy: Path) -> None:
    _day_of_samples(fleet_copy)
    _with_maintenance(fleet_copy)
    r = _build(fleet_copy, T0 + DAY)
    # Each sample stands for 1 h: 24 h known, 1 h of it in maintenance (10:00-11:00, while
    # unreachable); up 22 h of the 23 h counted = 95.65 %.
    assert r["uptime"]["known_hours"] == 24.0
    assert r["uptime"]["maintenance_hours"] == 1.0
    assert r["uptime"]["percent"] == 95.65
    # 200 W measured x 24 h = 4.8 kWh, against 500 W x 24 h = 12 kWh.
    assert r["energy"]["kwh"] == 4.8
    assert r["energy"]["budget_kwh"] == 12.0
    assert r["energy"]["measured"] is True
    assert r["incidents"] == [{"kind": "unreachable", "detail": "connection refused",
                               "start": "2026-11-01 10:00", "end": "2026-11-01 11:00"}]  # fmt: skip
    # Last sample 23:00 with a 2 h lag, report at 24:00: the copy is 3 hours old.
    assert r["backups"]["age_seconds"] == 3 * HOUR
    assert render_html.backup_lines(r, "fr") == [
        "La dernière copie de sécurité hors de la commune date de 3 heures."
    ]
    assert r["summary"].startswith("À surveiller : 1 incident(s) sur la période.")
    assert "mairie@brieux.fr" in r["summary"]


def test_without_maintenance_the_outage_counts(fleet_copy: Path) -> None:
    _day_of_samples(fleet_copy)
    r = _build(fleet_copy, T0 + DAY)
    # The example's maintenance is on 2026-11-14: outside this day. 22 h up of 24 h.
    assert r["uptime"]["maintenance_hours"] == 0.0
    assert r["uptime"]["percent"] == 91.67


def test_a_stopped_cron_is_a_gap_not_uptime(fleet_copy: Path) -> None:
    _day_of_samples(fleet_copy)
    # Two days after the last sample: it stands for 2 h at most (twice the hourly gap).
    r = _build(fleet_copy, T0 + 3 * DAY, period=3 * DAY)
    assert r["uptime"]["known_hours"] == 24.0 + 1.0  # 23 samples x 1 h, the last x 2 h


def test_period_without_samples_says_so(fleet_copy: Path) -> None:
    _day_of_samples(fleet_copy)
    r = _build(fleet_copy, T0 + 40 * DAY, period=7 * DAY)
    assert r["samples_in_period"] == 0
    assert r["summary"] == "Aucune mesure enregistrée sur la période."
    assert r["uptime"]["percent"] is None
    assert r["energy"]["kwh"] is None
    html = render_html.cabinet(r)
    assert "Aucune mesure enregistrée sur la période." in html
    en = _build(fleet_copy, T0 + 40 * DAY, period=7 * DAY, lang="en")
    assert en["summary"] == "No measurement recorded over the period."


def test_hostile_tenant_name_is_escaped(fleet_copy: Path) -> None:
    rows = [{"cabinet": "brieux", "taken_at": T0 + i * HOUR, "replication_state": "ok",
             "tenants": [{"tenant": "<script>alert(1)</script>", "declared": 0,
                          "vcpu_reserved": 1, "ram_reserved_bytes": 1, "disk_reserved_bytes": 1}]}
            for i in range(3)]  # fmt: skip
    write_history(fleet_copy / "history.sqlite", rows)
    r = _build(fleet_copy, T0 + 3 * HOUR)
    html = render_html.cabinet(r)
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    md = render_md.cabinet(r)
    assert "\\<script\\>alert\\(1\\)\\</script\\>" in md


def _cli(fleet: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kloudctl", "--fleet", str(fleet), "report", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_bad_input_exits_2_and_writes_nothing(fleet_copy: Path) -> None:
    _day_of_samples(fleet_copy)
    h = str(fleet_copy / "history.sqlite")
    for args, message in [
        (["brieux", "--period", "30x", "--history", h], "--period: expected a length such as 30d"),
        (["brieux", "--period", "500d", "--history", h], "--period: expected from 1h to 400d"),
        (["nowhere", "--history", h], "nowhere"),
        (["--history", h], "give one cabinet name, or --all"),
        (["--all", "--usage", "--history", h], "--usage is per cabinet"),
    ]:
        result = _cli(fleet_copy, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr
        assert "Traceback" not in result.stderr
    assert not (fleet_copy / ".state").exists()


def test_missing_history_is_a_clear_error(fleet_copy: Path) -> None:
    result = _cli(fleet_copy, "brieux")
    assert result.returncode == 2, result.stderr
    assert "run `kloudctl status` first" in result.stderr
    assert not (fleet_copy / ".state" / "status").exists()


def test_not_a_history_names_the_file(fleet_copy: Path) -> None:
    bogus = fleet_copy / "bogus.sqlite"
    bogus.write_text("not sqlite at all " * 100)
    result = _cli(fleet_copy, "brieux", "--history", str(bogus))
    assert result.returncode != 0
    assert str(bogus) in result.stderr and "Traceback" not in result.stderr


def test_default_html_path_and_markdown(fleet_copy: Path) -> None:
    now = time.time()
    rows = [{"cabinet": "brieux", "taken_at": now - 3 * HOUR + i * HOUR,
             "replication_state": "ok", "replication_lag_seconds": 600.0,
             "power_estimated_watts": 100.0} for i in range(3)]  # fmt: skip
    write_history(fleet_copy / "history.sqlite", rows)
    h = str(fleet_copy / "history.sqlite")
    result = _cli(fleet_copy, "brieux", "--history", h)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path == fleet_copy / ".state" / "reports" / "brieux.fr.html"
    assert "Tout va bien" in path.read_text()
    md = _cli(fleet_copy, "brieux", "--history", h, "--format", "md", "--lang", "en")
    assert md.stdout.startswith("# Report of the brieux cabinet — Brieux")
    assert "**All is well: the cabinet worked normally over the period.**" in md.stdout


def test_fleet_report_one_line_per_commune(fleet_copy: Path) -> None:
    now = time.time()
    rows = []
    for i in range(4):
        t = now - 4 * HOUR + i * HOUR
        rows.append(
            {
                "cabinet": "brieux",
                "taken_at": t,
                "vcpu_capacity": 64.0,
                "cpu_used_cores": 4.0,
                "power_measured_watts": 250.0,
                "replication_state": "ok",
                "replication_lag_seconds": 60.0,
            }
        )
        rows.append({"cabinet": "mortree", "taken_at": t, "reachable": 0, "error": "refused"})
    # saint-aubin: never sampled
    write_history(fleet_copy / "history.sqlite", rows)
    h = str(fleet_copy / "history.sqlite")
    result = _cli(fleet_copy, "--all", "--history", h, "--format", "json")
    assert result.returncode == 0, result.stderr
    lines = {r["cabinet"]: r for r in json.loads(result.stdout)["cabinets"]}
    assert set(lines) == {"brieux", "mortree", "saint-aubin"}
    assert lines["brieux"]["health"] == "ok"
    assert lines["brieux"]["vcpu_left"] == 60.0  # 64 - 4
    assert lines["brieux"]["power_watts"] == 250.0
    # 4 samples x 1 h (the last: from 1 h ago until now) x 250 W = 1 kWh
    assert lines["brieux"]["energy_kwh"] == 1.0
    assert lines["mortree"]["health"] == "down"
    assert lines["mortree"]["uptime_percent"] == 0.0
    assert lines["saint-aubin"]["health"] == "none"
    html = _cli(fleet_copy, "--all", "--history", h)
    assert html.returncode == 0, html.stderr
    page = Path(html.stdout.strip()).read_text()
    assert page.count("<tr>") == 4  # header + 3 communes
    assert 'id="fleet"' in page
