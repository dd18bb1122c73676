"""Command builders of the restic runner, against data fixtures (quoting cases included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kloudctl.errors import InputError
from kloudctl.replication import restic
from kloudctl.replication.restic import Repo

CASES = yaml.safe_load((Path(__file__).parent / "fixtures" / "commands.yaml").read_text())


def _repo(location: str) -> Repo:
    return Repo(location, password_file=Path("/nonexistent/pw"))


def build(builder: str, data: dict[str, Any]) -> list[str]:
    if builder == "backup_paths":
        return restic.backup_paths_args(**data)
    if builder == "backup_command":
        return restic.backup_command_args(**data)
    if builder == "forget":
        return restic.forget_args(**data)
    if builder == "init":
        if "from_repo" in data:
            data = {**data, "from_repo": _repo(data["from_repo"])}
        return restic.init_args(**data)
    if builder == "copy":
        return restic.copy_args(_repo(data["from_repo"]))
    if builder == "check":
        return restic.check_args(**data)
    if builder == "restore":
        return restic.restore_args(data["snapshot"], Path(data["target"]), data["includes"])
    if builder == "snapshots":
        return restic.snapshots_args(**data)
    raise AssertionError(builder)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_builder_matches_fixture(case: dict[str, Any]) -> None:
    assert build(case["builder"], case["input"]) == case["argv"]


def test_forget_without_rules_is_refused() -> None:
    with pytest.raises(InputError, match="every snapshot"):
        restic.forget_args(keep={"keep_last": None})


def test_restic_duration_rounds_up_to_hours() -> None:
    assert restic.restic_duration(1) == "1h"
    assert restic.restic_duration(3600) == "1h"
    assert restic.restic_duration(90000) == "1d1h"
    with pytest.raises(InputError):
        restic.restic_duration(0)


def test_repo_needs_exactly_one_password_source() -> None:
    with pytest.raises(InputError):
        Repo("/r")
    with pytest.raises(InputError):
        Repo("/r", password_file=Path("/p"), password_command="cat /p")


def test_argv_never_carries_secrets(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.write_text("brieux:s3cr3t-value\n")
    repo = Repo(
        "rest:https://127.0.0.1:1/brieux/",
        password_file=tmp_path / "pw",
        rest_credentials_file=creds,
        cacert=tmp_path / "ca.pem",
    )
    argv = restic.Restic(binary="restic").argv(repo, ["snapshots"])
    assert argv == [
        "restic",
        "--json",
        "--repo",
        "rest:https://127.0.0.1:1/brieux/",
        "--cacert",
        str(tmp_path / "ca.pem"),
        "snapshots",
    ]
    assert not any("s3cr3t" in a for a in argv)


def test_environment_is_an_allowlist_plus_password_files(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.write_text("brieux:s3cr3t-value\n")
    stray = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "RESTIC_PASSWORD": "stray",
        "RESTIC_PASSWORD_COMMAND": "echo stray",
        "RESTIC_REPOSITORY": "/elsewhere",
        "RESTIC_FROM_PASSWORD": "stray",
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_SECRET_ACCESS_KEY": "x",
        "B2_ACCOUNT_KEY": "x",
        "GOOGLE_APPLICATION_CREDENTIALS": "/x",
        "RCLONE_CONFIG": "/x",
        "KLOUDCTL_DEBUG": "1",
    }
    local = Repo("/srv/local", password_file=tmp_path / "local.pw")
    peer = Repo(
        "rest:https://127.0.0.1:1/brieux/",
        password_command="cat '/a b/peer.pw'",
        rest_credentials_file=creds,
    )
    env = restic.child_environment(peer, from_repo=local, cache_dir=tmp_path / "cache", base=stray)
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "RESTIC_PASSWORD_COMMAND": "cat '/a b/peer.pw'",
        "RESTIC_FROM_PASSWORD_FILE": str(tmp_path / "local.pw"),
        "RESTIC_REST_USERNAME": "brieux",
        "RESTIC_REST_PASSWORD": "s3cr3t-value",
        "RESTIC_CACHE_DIR": str(tmp_path / "cache"),
        "RESTIC_PROGRESS_FPS": "1",
    }


def test_bad_credentials_file_is_an_input_error(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.write_text("no-colon\n")
    with pytest.raises(InputError, match="user:password"):
        restic.read_credentials(creds)
