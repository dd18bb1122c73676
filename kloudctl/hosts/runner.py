"""Running playbooks through ansible-runner: live events, a recap, located failures.

`run_playbook()` loads the fleet first (a broken cabinet file raises the foundation's
located `InputError` before any host is touched), runs the playbook with the repository's
ansible.cfg and inventory plugin, streams every event to an optional callback (the CLI
draws live progress from them), and returns a `RunResult`: per-host recap, failures with
host, task and message, unreachable hosts. It raises nothing for failed hosts: the caller
decides (see `RunResult.raise_for_status`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kloudctl.errors import ExternalError, NotFound, PartialFailure
from kloudctl.model import load_fleet
from kloudctl.model.fleet import did_you_mean


@dataclass
class HostRecap:
    host: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        return "changed" if self.changed else "ok"


@dataclass(frozen=True)
class Failure:
    host: str
    task: str
    message: str
    unreachable: bool = False


@dataclass(frozen=True)
class Event:
    """What the progress display needs from one ansible-runner event."""

    kind: str  # task_start, ok, changed, failed, skipped, unreachable, stats
    host: str | None
    task: str | None
    role: str | None = None


@dataclass
class RunResult:
    playbook: str
    hosts: list[str]
    recaps: dict[str, HostRecap] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    rc: int = 0
    status: str = ""
    seconds: float = 0.0

    @property
    def unreachable(self) -> list[str]:
        return sorted(h for h, r in self.recaps.items() if r.unreachable)

    @property
    def failed(self) -> list[str]:
        return sorted(h for h, r in self.recaps.items() if r.failed and not r.unreachable)

    @property
    def changed(self) -> int:
        return sum(r.changed for r in self.recaps.values())

    def raise_for_status(self) -> None:
        """Failed tasks: ExternalError (exit 1). Unreachable hosts only: PartialFailure
        (exit 3) when the others finished, ExternalError (exit 1) when none was reached."""
        if self.failed:
            raise ExternalError(
                f"{self.playbook}: failed on {', '.join(self.failed)}"
                + (f"; unreachable: {', '.join(self.unreachable)}" if self.unreachable else "")
            )
        if self.unreachable:
            done = sorted(set(self.recaps) - set(self.unreachable))
            if not done:  # nothing partial about it: every host was out of reach
                raise ExternalError(
                    f"{self.playbook}: no host reached; unreachable: {', '.join(self.unreachable)}"
                )
            raise PartialFailure(
                f"{self.playbook}: unreachable: {', '.join(self.unreachable)}"
                f"; finished on {', '.join(done)}"
            )
        if self.rc != 0 and not self.recaps:
            raise ExternalError(f"{self.playbook}: ansible-playbook failed (exit {self.rc})")


def _message(res: dict[str, Any]) -> str:
    for key in ("msg", "stderr", "reason"):
        value = res.get(key)
        if value:
            text = str(value).strip()
            return text.splitlines()[0][:300] if key != "msg" else text[:500]
    return "failed (no message)"


def run_playbook(
    root: Path,
    playbook: str,
    *,
    limit: Sequence[str] | None = None,
    testbed_state: Path | None = None,
    extravars: dict[str, Any] | None = None,
    on_event: Callable[[Event], None] | None = None,
    forks: int = 10,
    secret_env: Mapping[str, str] | None = None,
) -> RunResult:
    """Run `playbooks/<playbook>` from the fleet repository `root` on `limit` (cabinets).

    `secret_env`: secrets for the playbook's `env` lookups. Not extra variables: those go on
    ansible-playbook's command line, which any local user can read (`ps`); a process's
    environment only its owner can."""
    import ansible_runner  # imported late: slow, and only needed here

    root = Path(root).resolve()
    fleet = load_fleet(root)  # located InputError before any host is touched
    hosts = list(limit) if limit else [c.name for c in fleet]
    for name in hosts:
        if name not in fleet.cabinets:
            raise NotFound(f"no cabinet named '{name}'{did_you_mean(name, fleet.cabinets)}")
    path = root / "playbooks" / playbook
    if not path.is_file():
        raise NotFound(f"no playbook {path.relative_to(root)}")
    result = RunResult(playbook, hosts, {h: HostRecap(h) for h in hosts})
    bindir = os.path.dirname(sys.executable)
    env = {
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "KLOUDCTL_FLEET": str(root),
        "PATH": f"{bindir}:{os.environ.get('PATH', '')}",
        "ANSIBLE_FORCE_COLOR": "0",
        # ansible-runner turns host key checking off unless told otherwise: keep it on.
        "ANSIBLE_HOST_KEY_CHECKING": "True",
    }
    if testbed_state is not None:
        env["KLOUDCTL_TESTBED_STATE"] = str(Path(testbed_state).resolve())
    env.update(secret_env or {})
    started = time.monotonic()

    def handle(event: dict[str, Any]) -> bool:
        _record(event, result, on_event)
        return True

    # ansible-runner installs its own SIGINT/SIGTERM handlers and leaves them behind: put
    # the caller's back, or Ctrl-C stops raising KeyboardInterrupt for the rest of the process.
    handlers = _signal_handlers()
    with tempfile.TemporaryDirectory(prefix="kloudctl-runner-") as private, handlers:
        runner = ansible_runner.run(
            private_data_dir=private,
            project_dir=str(root),
            playbook=str(path),
            inventory=str(root / "inventory"),
            limit=",".join(hosts),
            envvars=env,
            extravars=extravars or {},
            forks=forks,
            quiet=True,
            event_handler=handle,
            suppress_env_files=True,
            rotate_artifacts=1,
            # Same as a plain ansible-playbook run with our ansible.cfg: facts stay in
            # memory (ansible-runner's default writes a jsonfile fact cache into the
            # throw-away private dir, one JSON dump per host on every fact update) ...
            fact_cache_type="memory",
            # ... and no stdout copy in the artifacts: events reach `handle` directly.
            suppress_output_file=True,
        )
    result.rc = int(runner.rc or 0)
    result.status = str(runner.status)
    result.seconds = time.monotonic() - started
    return result


@contextlib.contextmanager
def _signal_handlers() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread sets handlers, ansible-runner's included
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


_KINDS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


def _record(
    event: dict[str, Any], result: RunResult, on_event: Callable[[Event], None] | None
) -> None:
    name = event.get("event", "")
    data = event.get("event_data") or {}
    host = data.get("host") or data.get("remote_addr")
    task = data.get("task")
    role = data.get("role")
    if name == "playbook_on_task_start":
        if on_event:
            on_event(Event("task_start", None, task, role))
        return
    if name == "runner_on_start":
        if on_event:
            on_event(Event("host_task", host, task, role))
        return
    if name in _KINDS:
        kind = _KINDS[name]
        res = data.get("res") or {}
        if kind == "ok" and res.get("changed"):
            kind = "changed"
        if name == "runner_on_failed" and data.get("ignore_errors"):
            kind = "ok"
        if kind in ("failed", "unreachable") and host:
            result.failures.append(
                Failure(
                    host,
                    f"{role} : {task}" if role else str(task),
                    _message(res),
                    kind == "unreachable",
                )
            )
        if on_event:
            on_event(Event(kind, host, task, role))
        return
    if name == "playbook_on_stats":
        for key, attr in (
            ("ok", "ok"),
            ("changed", "changed"),
            ("failures", "failed"),
            ("dark", "unreachable"),
            ("skipped", "skipped"),
        ):
            for h, count in (data.get(key) or {}).items():
                recap = result.recaps.setdefault(h, HostRecap(h))
                setattr(recap, attr, int(count))
        if on_event:
            on_event(Event("stats", None, None))
