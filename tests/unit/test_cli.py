"""CLI conventions: exit codes, --json, no tracebacks, version and completion."""

from __future__ import annotations

import json


def test_version(kloudctl) -> None:
    result = kloudctl("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("kloudctl, version ")


def test_cabinet_list_json(kloudctl, repo) -> None:
    result = kloudctl("--fleet", str(repo), "cabinet", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["cabinet"] for r in rows] == ["brieux", "mortree", "saint-aubin"]
    brieux = rows[0]
    assert brieux["commune"] == "Brieux" and brieux["mail_domains"] == "brieux.fr, mortree.fr"


def test_cabinet_show_json_carries_plan_and_no_secret(kloudctl, repo) -> None:
    result = kloudctl("--fleet", str(repo), "cabinet", "show", "brieux", "--json")
    assert result.returncode == 0, result.stderr
    detail = json.loads(result.stdout)
    assert detail["cabinet"]["commune"]["population"] == 1500
    assert detail["plan"]["admitted"] is True
    assert detail["cabinet"]["proxmox"]["token"]["secret"].startswith("vault:")


def test_cabinet_show_human(kloudctl, repo) -> None:
    result = kloudctl("--fleet", str(repo), "cabinet", "show", "saint-aubin")
    assert result.returncode == 0, result.stderr
    assert "Saint-Aubin" in result.stdout and "garage-martin" in result.stdout


def test_unknown_cabinet_exit_2_with_suggestion(kloudctl, repo) -> None:
    result = kloudctl("--fleet", str(repo), "cabinet", "show", "brieu")
    assert result.returncode == 2
    assert "no cabinet named 'brieu'; did you mean 'brieux'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_error_is_exit_2(kloudctl) -> None:
    result = kloudctl("cabinet", "frobnicate")
    assert result.returncode == 2


def test_plan_json(kloudctl, repo) -> None:
    result = kloudctl("--fleet", str(repo), "plan", "mortree", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["admitted"] and plan["power"]["fits"]
    assert {t["name"] for t in plan["tenants"]} == {"council", "pharmacie-du-bourg", "club-foot"}
    # --offline is the default, still accepted for compatibility: the very same plan
    offline = kloudctl("--fleet", str(repo), "plan", "mortree", "--offline", "--json")
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout) == plan


def test_validate_files_individually(kloudctl, repo) -> None:
    result = kloudctl("validate", str(repo / "cabinets" / "brieux.yaml"), str(repo / "backups"))
    assert result.returncode == 0, result.stderr


def test_completion_script(kloudctl) -> None:
    result = kloudctl("completion", "bash")
    assert result.returncode == 0
    assert "_KLOUDCTL_COMPLETE" in result.stdout


def test_not_a_fleet_is_input_error_without_traceback(kloudctl, tmp_path) -> None:
    (tmp_path / "cabinets").write_text("a file where the folder should be")
    result = kloudctl("--fleet", str(tmp_path), "validate")
    assert result.returncode == 2
    assert "no 'cabinets/' folder: not a fleet" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_traceback_without_locals(kloudctl, tmp_path) -> None:
    result = kloudctl("--fleet", str(tmp_path), "validate", env={"KLOUDCTL_DEBUG": "1"})
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert "root = " not in result.stderr  # rich/pretty tracebacks with locals never used
