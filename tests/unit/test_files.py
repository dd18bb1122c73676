"""The one writer of files (`kloudctl.files`): only regular files or new names in existing
folders, atomic replacement, modes, and stores that read commands never create."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from kloudctl import files
from kloudctl.errors import InputError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_its_mode_and_no_temporary_file_stays(tmp_path: Path) -> None:
    path = files.write_atomic(tmp_path / "new.json", "{}\n", mode=0o600)
    assert path.read_text() == "{}\n" and _mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.json"]


def test_an_existing_file_keeps_its_mode_when_asked_else_gets_the_given_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "metrics.prom"
    path.write_text("old\n")
    path.chmod(0o640)
    files.write_atomic(path, b"new\n", keep_mode=True)
    assert path.read_text() == "new\n" and _mode(path) == 0o640
    files.write_atomic(path, "secret\n", mode=0o600)
    assert _mode(path) == 0o600


@pytest.mark.parametrize("path", ["/dev/full", "/dev/null"])
def test_a_device_is_never_replaced(path: str) -> None:
    with pytest.raises(InputError, match=f"{path} is a device, not a regular file"):
        files.writable_file(path, "--prometheus-textfile")
    assert stat.S_ISCHR(os.lstat(path).st_mode)


def test_a_folder_a_link_and_a_pipe_are_refused_and_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("kept\n")
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    for name, kind in [
        ("link", "a symbolic link"),
        ("folder", "a folder"),
        ("pipe", "a named pipe"),
    ]:
        with pytest.raises(InputError, match=f"is {kind}, not a regular file"):
            files.write_atomic(tmp_path / name, "x")
    assert target.read_text() == "kept\n" and (tmp_path / "link").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "link", "pipe", "target"]


def test_a_missing_folder_is_named_and_not_created(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"folder .*typo does not exist: create it first"):
        files.write_atomic(tmp_path / "typo" / "out.json", "x")
    with pytest.raises(InputError, match="is not a folder"):
        (tmp_path / "file").write_text("")
        files.writable_file(tmp_path / "file" / "out.json")
    assert not (tmp_path / "typo").exists()


def test_a_folder_where_files_cannot_be_made_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"/proc/x: cannot create a file in /proc"):
        files.write_atomic("/proc/x", "x")


def test_odd_paths_are_input_errors() -> None:
    with pytest.raises(InputError, match="empty"):
        files.writable_file("", "--output")
    with pytest.raises(InputError, match="NUL"):
        files.writable_file("a\0b", "--output")


def test_create_once_never_overwrites_and_one_racer_wins_whole(tmp_path: Path) -> None:
    path = tmp_path / "key"
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(files.create_once(path, f"{i}" * 40)))
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    content = path.read_text()
    assert len(content) == 40 and len(set(content)) == 1 and _mode(path) == 0o600
    assert files.create_once(path, "other") is False and path.read_text() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]


def test_a_store_read_must_exist(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"state folder .*nowhere does not exist: run it first"):
        files.existing_store(tmp_path / "nowhere", "state folder", "run it first", folder=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is not a folder"):
        files.existing_store(tmp_path / "file", "state folder", "fix it", folder=True)
    with pytest.raises(InputError, match="is a folder, not a file"):
        files.existing_store(tmp_path, "key file", "fix it")
    assert files.existing_store(tmp_path / "file", "key file", "fix it") == tmp_path / "file"
    assert not (tmp_path / "nowhere").exists()
