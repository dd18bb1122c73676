"""The one restic runner of kloudctl.

Every restic invocation of the project goes through `Restic.run`:

- `--json` always, stdout and stderr streamed line by line and dispatched on `message_type`
  (`status`, `summary`, `error`, `exit_error`, ...); lines that are not JSON are kept as text;
  a command whose stdout is one JSON document (`snapshots`, `stats`) gets it in `document`.
- exit codes become typed outcomes: 0 ok; 3 warning (the snapshot is kept, the result says
  so); 10 `RepositoryMissing`; 11 `RepositoryLocked` after retries with backoff (stale locks
  of killed runs are removed with `unlock` between attempts, live ones are waited for); 12
  `WrongPassword`, never retried; 130 `ResticCancelled`; anything else `ResticError`.
- secrets reach restic only as password files or commands (`RESTIC_PASSWORD_FILE`,
  `RESTIC_PASSWORD_COMMAND`, `RESTIC_FROM_PASSWORD_FILE` for `copy`/`init --from-repo`),
  never as arguments. The child's environment is built from an allowlist, so a stray
  `RESTIC_*`, `AWS_*`, `B2_*`... of the caller can never change which repository or key is
  used. The rest-server identity is read from a 0600 file at run time and handed over as
  `RESTIC_REST_USERNAME`/`RESTIC_REST_PASSWORD` (restic reads it from nowhere else but the
  URL, which would show it in `ps`).

Command builders are pure functions returning argument lists (no shell anywhere).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from kloudctl.answers import UnexpectedAnswer, dig
from kloudctl.errors import (
    ExternalError,
    InputError,
    RepositoryLocked,
    RepositoryMissing,
    ResticCancelled,
    ResticError,
    ResticTimeout,
    ToolMissing,
    WrongPassword,
)
from kloudctl.retry import retrying

# Variables of the caller that restic may see. Everything else is dropped.
ENV_ALLOWLIST = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "TZ")

# How long to wait between attempts when the repository is locked (exit 11).
DEFAULT_LOCK_BACKOFF = (2.0, 8.0, 30.0)


class Outcome(StrEnum):
    OK = "ok"
    WARNING = "warning"  # exit 3: some source data could not be read; the snapshot is kept


@dataclass(frozen=True)
class Repo:
    """Where a repository is and how to open it. Holds paths to secrets, never secrets."""

    location: str  # a local path or `rest:https://host:port/user/`
    password_file: Path | None = None
    password_command: str | None = None
    rest_credentials_file: Path | None = None  # one line `user:password`, 0600
    cacert: Path | None = None
    key_hint: str | None = None  # id of the key the password opens: saves trying the others

    def __post_init__(self) -> None:
        if (self.password_file is None) == (self.password_command is None):
            raise InputError(
                f"repository {self.location}: give exactly one of a password file or command"
            )


@dataclass
class Result:
    command: list[str]
    exit_code: int
    outcome: Outcome
    summary: dict[str, Any] | None = None
    document: Any = None  # the one JSON document on stdout (snapshots, stats...)
    errors: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)  # non-status JSON lines
    last_status: dict[str, Any] | None = None
    text: list[str] = field(default_factory=list)  # stdout/stderr lines that are not JSON
    duration: float = 0.0
    attempts: int = 1


# --------------------------------------------------------------------------------------
# Command builders: pure, tested against data fixtures.


def restic_duration(seconds: int) -> str:
    """restic's `--keep-within` durations know y, m, d, h only: round up to whole hours."""
    if seconds <= 0:
        raise InputError(f"duration must be positive, got {seconds}s")
    hours = -(-seconds // 3600)
    days, hours = divmod(hours, 24)
    out = (f"{days}d" if days else "") + (f"{hours}h" if hours else "")
    return out


def backup_paths_args(
    paths: Sequence[str], *, host: str, tags: Sequence[str] = (), excludes: Sequence[str] = ()
) -> list[str]:
    if not paths:
        raise InputError("backup needs at least one path")
    args = ["backup", "--host", host]
    for tag in tags:
        args += ["--tag", tag]
    for pattern in excludes:
        args += ["--exclude", pattern]
    # `--` so that a path starting with a dash is never read as an option.
    return [*args, "--", *paths]


def backup_command_args(
    command: Sequence[str], *, filename: str, host: str, tags: Sequence[str] = ()
) -> list[str]:
    """Stream a command's stdout into a snapshot (`--stdin-from-command`); its failure aborts."""
    if not command:
        raise InputError("backup from a command needs the command")
    args = ["backup", "--host", host, "--stdin-filename", filename]
    for tag in tags:
        args += ["--tag", tag]
    return [*args, "--stdin-from-command", "--", *command]


def init_args(*, from_repo: Repo | None = None, copy_chunker_params: bool = False) -> list[str]:
    args = ["init"]
    if from_repo is not None:
        args += ["--from-repo", from_repo.location]
        if copy_chunker_params:
            args.append("--copy-chunker-params")
    elif copy_chunker_params:
        raise InputError("--copy-chunker-params needs --from-repo")
    return args


def copy_args(from_repo: Repo, snapshot_ids: Sequence[str] = ()) -> list[str]:
    return ["copy", "--from-repo", from_repo.location, *snapshot_ids]


def snapshots_args(*, host: str | None = None, tags: Sequence[str] = ()) -> list[str]:
    args = ["snapshots"]
    if host:
        args += ["--host", host]
    for tag in tags:
        args += ["--tag", tag]
    return args


def forget_args(
    *,
    keep: Mapping[str, int | None] | None = None,
    keep_within: Mapping[str, int | None] | None = None,
    prune: bool = True,
) -> list[str]:
    """`forget` by count (`keep_last: 8`) or by age in seconds (`keep_within: 604800`)."""
    args = ["forget", "--group-by", "host,tags"]
    rules = 0
    for name, count in (keep or {}).items():
        if count is not None:
            args += [f"--{name.replace('_', '-')}", str(count)]
            rules += 1
    for name, seconds in (keep_within or {}).items():
        if seconds is not None:
            args += [f"--{name.replace('_', '-')}", restic_duration(seconds)]
            rules += 1
    if rules == 0:
        raise InputError("forget without any keep rule would remove every snapshot")
    if prune:
        args.append("--prune")
    return args


def check_args(*, read_data_subset: str | None = None) -> list[str]:
    args = ["check"]
    if read_data_subset:
        args.append(f"--read-data-subset={read_data_subset}")
    return args


def stats_args(mode: str = "raw-data") -> list[str]:
    return ["stats", "--mode", mode]


def restore_args(snapshot: str, target: Path, includes: Sequence[str] = ()) -> list[str]:
    args = ["restore", snapshot, "--target", str(target)]
    for pattern in includes:
        args += ["--include", pattern]
    return args


# --------------------------------------------------------------------------------------
# The runner.


def find_restic() -> str:
    found = shutil.which("restic")
    if not found:
        raise ToolMissing("restic is not on PATH; `make tools` builds it into .tools/bin")
    return found


def child_environment(
    repo: Repo,
    *,
    from_repo: Repo | None = None,
    cache_dir: Path | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment restic gets: the allowlist of `base`, then our own variables."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if k in ENV_ALLOWLIST}
    env.setdefault("PATH", os.defpath)
    env.update(_password_env(repo, prefix=""))
    if from_repo is not None:
        env.update(_password_env(from_repo, prefix="FROM_"))
    if repo.rest_credentials_file is not None:
        user, password = read_credentials(repo.rest_credentials_file)
        env["RESTIC_REST_USERNAME"] = user
        env["RESTIC_REST_PASSWORD"] = password
    if from_repo is not None and from_repo.rest_credentials_file is not None:
        raise InputError("the source of a copy must be a local repository")
    if cache_dir is not None:
        env["RESTIC_CACHE_DIR"] = str(cache_dir)
    # restic's progress lines: one a second is plenty for a log and cheap to parse.
    env["RESTIC_PROGRESS_FPS"] = "1"
    return env


def _password_env(repo: Repo, *, prefix: str) -> dict[str, str]:
    if repo.password_file is not None:
        return {f"RESTIC_{prefix}PASSWORD_FILE": str(repo.password_file)}
    assert repo.password_command is not None
    return {f"RESTIC_{prefix}PASSWORD_COMMAND": repo.password_command}


def read_credentials(path: Path) -> tuple[str, str]:
    try:
        line = path.read_text().strip()
    except OSError as exc:
        raise InputError(
            f"{path}: cannot read the rest-server credentials: {exc.strerror}"
        ) from None
    user, sep, password = line.partition(":")
    if not sep or not user or not password:
        raise InputError(f"{path}: expected one line `user:password`")
    return user, password


MessageHandler = Callable[[dict[str, Any]], None]


@dataclass
class Restic:
    """Runs restic against one repository (and, for copy/init, a source repository)."""

    binary: str | None = None
    cache_dir: Path | None = None
    lock_backoff: Sequence[float] = DEFAULT_LOCK_BACKOFF
    sleep: Callable[[float], None] = time.sleep
    on_start: Callable[[int], None] | None = None  # told the pid of each restic started

    def argv(self, repo: Repo, args: Sequence[str], *, from_repo: Repo | None = None) -> list[str]:
        binary = self.binary or find_restic()
        argv = [binary, "--json", "--repo", repo.location]
        if repo.cacert is not None:
            argv += ["--cacert", str(repo.cacert)]
        if repo.key_hint:
            argv += ["--key-hint", repo.key_hint]
        return [*argv, *args]

    def run(
        self,
        repo: Repo,
        args: Sequence[str],
        *,
        from_repo: Repo | None = None,
        on_message: MessageHandler | None = None,
        retry_locked: bool = True,
        stdin: int | None = subprocess.DEVNULL,
        timeout: float | None = None,
    ) -> Result:
        """Run one restic command; return its Result or raise the typed error."""
        argv = self.argv(repo, args, from_repo=from_repo)
        env = child_environment(repo, from_repo=from_repo, cache_dir=self.cache_dir)
        name = args[0] if args else "?"
        attempts = 0
        started = time.monotonic()

        def once() -> Result:
            nonlocal attempts
            attempts += 1
            result = self._once(argv, env, on_message, stdin, name, timeout)
            result.attempts = attempts
            result.duration = time.monotonic() - started
            return _outcome(args[0] if args else "", result)

        def unlock(_exc: Exception, _pause: float) -> None:
            # A lock left by a killed run (its process is gone, or it is 30 minutes old)
            # blocks every exclusive lock until removed: `unlock` removes only those.
            if name != "unlock":
                self._once(self.argv(repo, ["unlock"]), env, None, subprocess.DEVNULL, "unlock")

        return retrying(
            once,
            retry_if=lambda exc: isinstance(exc, RepositoryLocked),
            pauses=self.lock_backoff if retry_locked else (),
            before_retry=unlock,
            sleep=self.sleep,
        )

    def _once(
        self,
        argv: list[str],
        env: dict[str, str],
        on_message: MessageHandler | None,
        stdin: int | None,
        name: str,
        timeout: float | None = None,
    ) -> Result:
        result = Result(command=list(argv), exit_code=-1, outcome=Outcome.OK)
        lock = threading.Lock()

        def dispatch(line: str, stream: str) -> None:
            line = line.rstrip("\n")
            if not line:
                return
            try:
                data = json.loads(line)
            except ValueError:
                with lock:
                    result.text.append(line)
                return
            with lock:
                if isinstance(data, dict) and "message_type" in data:
                    kind = data["message_type"]
                    if kind == "status":
                        result.last_status = data
                    elif kind == "summary":
                        result.summary = data
                        result.messages.append(data)
                    elif kind in ("error", "exit_error"):
                        result.errors.append(data)
                        result.messages.append(data)
                    else:
                        result.messages.append(data)
                elif stream == "stdout":
                    result.document = data
                else:
                    result.text.append(line)
            if on_message is not None and isinstance(data, dict) and "message_type" in data:
                on_message(data)

        try:
            proc = subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise ToolMissing(f"{argv[0]} not found; `make tools` builds restic") from None
        except OSError as exc:  # not executable, not a program (exec format error)...
            raise ExternalError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        assert proc.stdout is not None and proc.stderr is not None
        if self.on_start is not None:
            self.on_start(proc.pid)

        def pump(stream: IO[str], name: str) -> None:
            for line in stream:
                dispatch(line, name)

        reader = threading.Thread(target=pump, args=(proc.stderr, "stderr"), daemon=True)
        reader.start()
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)

        timer = threading.Timer(timeout, expire) if timeout else None
        if timer is not None:
            timer.start()
        try:
            pump(proc.stdout, "stdout")
            result.exit_code = proc.wait()
            if expired.is_set():
                raise ResticTimeout(name, f"no answer within {timeout:.0f}s")
        except KeyboardInterrupt:
            # restic cleans up (removes its lock) on SIGINT; give it a moment.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise ResticCancelled(name, "interrupted") from None
        finally:
            if timer is not None:
                timer.cancel()
            reader.join(timeout=30)
        return result


def _message(result: Result) -> str:
    for err in reversed(result.errors):
        if err.get("message_type") == "exit_error" and _first_line(err.get("message")):
            return _first_line(err.get("message"))
    for err in reversed(result.errors):
        # restic 0.18 puts an item's error under `error.message`; older ones `message`.
        nested = dig("restic", err, "error", "message", default=None)
        msg = _first_line(err.get("message")) or _first_line(nested)
        if msg:
            return msg
    if result.text:
        return result.text[-1].strip()
    return "no message"


def _first_line(message: object) -> str:
    lines = str(message).strip().splitlines() if message else []
    return lines[0] if lines else ""


_BY_CODE: dict[int, type[ResticError]] = {
    10: RepositoryMissing,
    11: RepositoryLocked,
    12: WrongPassword,
    130: ResticCancelled,
}


def _outcome(command: str, result: Result) -> Result:
    code = result.exit_code
    if code == 0:
        # restic 0.18 `forget` exits 0 when the server refuses to delete (append-only),
        # printing only `unable to remove ...`: a refusal must not pass for success.
        refused = command == "forget" and any("unable to remove" in t for t in result.text)
        result.outcome = Outcome.WARNING if refused else Outcome.OK
        return result
    if code == 3:
        result.outcome = Outcome.WARNING
        return result
    cls = _BY_CODE.get(code)
    if cls is None:
        raise ResticError(command, _message(result), code)
    raise cls(command, _message(result))


SNAPSHOTS = "restic snapshots"


def document(result: Result, tool: str, kind: type) -> Any:
    """The one JSON document restic printed (`snapshots`, `key list`, `stats`), of `kind`;
    UnexpectedAnswer quoting what it printed instead."""
    if result.document is None:
        raise UnexpectedAnswer(tool, "one JSON document on its output", "\n".join(result.text))
    return dig(tool, result.document, kind=kind)


def parse_time(value: str) -> float:
    """restic's snapshot times (RFC 3339 with nanoseconds) as epoch seconds."""
    value = value.replace("Z", "+00:00")
    head, sep, rest = value.partition(".")
    if sep:  # Python wants at most 6 fractional digits
        frac = ""
        i = 0
        while i < len(rest) and rest[i].isdigit():
            frac += rest[i]
            i += 1
        value = f"{head}.{frac[:6]}{rest[i:]}"
    return datetime.fromisoformat(value).timestamp()


def snapshot_list(answer: Result | Any) -> list[dict[str, Any]]:
    """`snapshots --json` answers an array (or, grouped, an array of groups): give the
    Result, or its document.

    Every snapshot returned has a string `id` and `short_id`, a `time` that `parse_time`
    reads, and `original` only when it is a string: callers index them without checking.
    Anything else is UnexpectedAnswer: an empty list would pass for "nothing replicated".
    """
    if isinstance(answer, Result):
        answer = document(answer, SNAPSHOTS, list)
    if not isinstance(answer, list):
        raise UnexpectedAnswer(SNAPSHOTS, "a list of snapshots", answer)
    out: list[dict[str, Any]] = []
    for item in answer:
        if isinstance(item, dict) and "snapshots" in item:
            out += [_snapshot(s) for s in dig(SNAPSHOTS, item, "snapshots", kind=list)]
        else:
            out.append(_snapshot(item))
    return out


def _snapshot(item: Any) -> dict[str, Any]:

    snap_id = dig(SNAPSHOTS, item, "id", kind=str)
    time_ = dig(SNAPSHOTS, item, "time", kind=str)
    try:
        parse_time(time_)
    except (ValueError, OverflowError):
        raise UnexpectedAnswer(SNAPSHOTS, "an RFC 3339 time in each snapshot", item) from None
    snap = {
        **item,
        "id": snap_id,
        "short_id": dig(SNAPSHOTS, item, "short_id", kind=str, default=snap_id[:8]),
        "time": time_,
    }
    original = dig(SNAPSHOTS, item, "original", kind=(str, type(None)), default=None)
    if original is None:
        snap.pop("original", None)
    return snap
