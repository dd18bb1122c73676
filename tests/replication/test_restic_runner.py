"""The restic runner against the real restic: outcomes, retries, environment, streaming."""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from pathlib import Path

import pytest

from kloudctl.errors import (
    RepositoryLocked,
    RepositoryMissing,
    ResticCancelled,
    ResticError,
    WrongPassword,
)
from kloudctl.replication import restic as r
from kloudctl.replication.restic import Outcome, Repo, Restic


@pytest.fixture
def repo(restic_bin: str, tmp_path: Path, password: Path) -> Repo:
    repo = Repo(str(tmp_path / "repo"), password_file=password)
    Restic().run(repo, r.init_args())
    return repo


def test_backup_streams_status_and_summary(repo: Repo, tmp_path: Path) -> None:
    data = tmp_path / "data dir"
    data.mkdir()
    (data / "a file").write_bytes(os.urandom(4096))
    seen: list[str] = []
    result = Restic().run(
        repo,
        r.backup_paths_args([str(data)], host="brieux"),
        on_message=lambda m: seen.append(m["message_type"]),
    )
    assert result.outcome is Outcome.OK
    assert result.summary and result.summary["files_new"] == 1
    assert "summary" in seen
    snaps = r.snapshot_list(Restic().run(repo, r.snapshots_args(host="brieux")).document)
    assert [s["id"] for s in snaps] == [result.summary["snapshot_id"]]


def test_missing_repository_is_typed(restic_bin: str, tmp_path: Path, password: Path) -> None:
    with pytest.raises(RepositoryMissing) as info:
        Restic().run(Repo(str(tmp_path / "none"), password_file=password), ["snapshots"])
    assert info.value.code == 10
    assert "does not exist" in info.value.message


def test_wrong_password_is_never_retried(repo: Repo, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    sleeps: list[float] = []
    runner = Restic(sleep=sleeps.append)
    with pytest.raises(WrongPassword) as info:
        runner.run(Repo(repo.location, password_file=wrong), ["snapshots"])
    assert info.value.code == 12 and sleeps == []


def test_stray_environment_cannot_redirect_restic(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stray RESTIC_PASSWORD_COMMAND would win over our password file: it is scrubbed."""
    monkeypatch.setenv("RESTIC_PASSWORD_COMMAND", "echo wrong")
    monkeypatch.setenv("RESTIC_PASSWORD", "wrong")
    monkeypatch.setenv("RESTIC_REPOSITORY", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    result = Restic().run(repo, ["snapshots"])
    assert result.outcome is Outcome.OK and result.document == []


def test_password_command_works(repo: Repo, password: Path) -> None:
    via_command = Repo(repo.location, password_command=f"cat '{password}'")
    assert Restic().run(via_command, ["snapshots"]).document == []


def test_locked_repository_is_retried_until_free(repo: Repo, tmp_path: Path) -> None:
    """A real lock: a backup streaming from a slow command holds the repository; `prune`
    (exclusive) fails with 11 and the runner retries with backoff until it is free."""
    holder_started = threading.Event()
    runner = Restic(on_start=lambda pid: holder_started.set())
    holder = threading.Thread(
        target=runner.run,
        args=(
            repo,
            r.backup_command_args(["sh", "-c", "sleep 4; echo done"], filename="x", host="h"),
        ),
    )
    holder.start()
    holder_started.wait(10)
    time.sleep(1.5)  # restic has opened the repository and taken its lock
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    result = Restic(lock_backoff=(1.0, 2.0, 4.0, 8.0), sleep=sleep).run(repo, ["prune"])
    holder.join()
    assert result.outcome is Outcome.OK
    assert result.attempts >= 2 and sleeps, "prune should have met the lock at least once"


def test_lock_kept_past_every_retry_is_typed(repo: Repo) -> None:
    started = threading.Event()
    holder = threading.Thread(
        target=Restic(on_start=lambda pid: started.set()).run,
        args=(
            repo,
            r.backup_command_args(["sh", "-c", "sleep 4; echo done"], filename="x", host="h"),
        ),
    )
    holder.start()
    started.wait(10)
    time.sleep(1.5)
    try:
        with pytest.raises(RepositoryLocked):
            Restic(lock_backoff=(0.1,), sleep=time.sleep).run(repo, ["prune"])
    finally:
        holder.join()


def test_ctrl_c_interrupts_restic_and_leaves_no_lock(repo: Repo) -> None:
    """Ctrl-C in kloudctl: restic gets SIGINT, cleans up, and the run ends ResticCancelled."""
    locks = Path(repo.location) / "locks"

    main = threading.main_thread().ident
    assert main is not None

    def interrupt_once_locked() -> None:
        # Ctrl-C while restic holds its lock, as a terminal sends it: a real SIGINT to the
        # main thread, which interrupts its blocking read of restic's output (a simulated
        # interrupt_main() waits for that read to return, which restic's quiet --json
        # backup may not do for a minute).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(locks.iterdir()):
            time.sleep(0.05)
        time.sleep(0.5)
        signal.pthread_kill(main, signal.SIGINT)

    runner = Restic()
    # Python's own Ctrl-C behaviour, whatever a library set before (ansible-runner did).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt_once_locked, daemon=True).start()
    try:
        with pytest.raises(ResticCancelled) as info:
            runner.run(repo, r.backup_command_args(["sleep", "30"], filename="x", host="h"))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert info.value.code == 130
    assert not list((Path(repo.location) / "locks").iterdir()), "restic left its lock behind"


def test_exit_130_is_cancelled(tmp_path: Path, password: Path) -> None:
    with pytest.raises(ResticCancelled):
        Restic(binary=_fake_restic(tmp_path, 130)).run(
            Repo("/r", password_file=password), ["backup"]
        )


def test_failing_stream_command_fails_the_backup(repo: Repo) -> None:
    with pytest.raises(ResticError) as info:
        Restic().run(repo, r.backup_command_args(["sh", "-c", "exit 7"], filename="x", host="h"))
    assert info.value.code == 1
    assert not r.snapshot_list(Restic().run(repo, ["snapshots"]).document)


def _fake_restic(tmp_path: Path, code: int) -> str:
    """Exit 3 needs unreadable source data, which root can read anyway here: a stand-in
    prints restic's real exit-3 lines and exits 3 (the mapping is what is tested)."""
    script = tmp_path / "fake-restic"
    script.write_text(
        "#!/bin/sh\n"
        'echo \'{"message_type":"error","error":{"message":"open /x: permission denied"},'
        '"during":"archival","item":"/x"}\' >&2\n'
        'echo \'{"message_type":"summary","snapshot_id":"abc"}\'\n'
        f'echo \'{{"message_type":"exit_error","code":{code},"message":"Warning: '
        "at least one source file could not be read\"}' >&2\n"
        f"exit {code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_exit_3_is_a_warning_with_the_snapshot_kept(tmp_path: Path, password: Path) -> None:
    runner = Restic(binary=_fake_restic(tmp_path, 3))
    result = runner.run(Repo("/r", password_file=password), ["backup", "/x"])
    assert result.outcome is Outcome.WARNING
    assert result.summary == {"message_type": "summary", "snapshot_id": "abc"}
    assert result.errors[0]["item"] == "/x"


def test_unknown_exit_code_is_a_failure(tmp_path: Path, password: Path) -> None:
    with pytest.raises(ResticError) as info:
        Restic(binary=_fake_restic(tmp_path, 2)).run(Repo("/r", password_file=password), ["backup"])
    assert type(info.value) is ResticError and info.value.code == 2
