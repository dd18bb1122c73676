"""Driving a cabinet's tenants stack with the Pulumi Automation API.

- One stack per cabinet (stack name = cabinet name), inline program = the same
  `kloudctl.tenants.program.run` that `pulumi/__main__.py` runs.
- Local `file://` backend under `<fleet>/.state/pulumi` by default; secrets encrypted with a
  passphrase generated once into a 0600 file there (read by Pulumi through
  `PULUMI_CONFIG_PASSPHRASE_FILE`; never printed). The token secret reaches the program as
  a Pulumi config *secret*.
- Capacity and power admission runs before Pulumi is touched.
- Engine events become `Step`s for live progress; Pulumi's errors become kloudctl's.
- A run killed mid-update leaves a lock whose process is gone and pending operations:
  the next run removes that stale lock, drops the pending operations (the providers'
  creates take over whatever a killed create left behind), and converges.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kloudctl import files
from kloudctl.answers import UnexpectedAnswer, dig
from kloudctl.capacity import admit, plan_cabinet
from kloudctl.errors import (
    ApplyFailed,
    ExternalError,
    KloudError,
    NotFound,
    StackBusy,
    ToolMissing,
)
from kloudctl.model import Fleet
from kloudctl.processes import pid_alive
from kloudctl.proxmox.client import ApiTarget
from kloudctl.proxmox.target import cabinet_target

PROJECT = "kloudctl-tenants"
SECRET_KEY = "kloudctl:tokenSecret"


@dataclass(frozen=True)
class Step:
    """One resource operation seen in the engine's events."""

    op: str  # create, update, replace, delete, same, refresh, read...
    name: str
    kind: str
    status: str  # planned, done, failed
    seconds: float = 0.0
    detail: str = ""


@dataclass
class RunResult:
    cabinet: str
    action: str  # plan, apply, destroy, refresh
    changes: dict[str, int]
    steps: list[Step] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(n for op, n in self.changes.items() if op not in ("same", "read"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "cabinet": self.cabinet,
            "action": self.action,
            "changes": self.changes,
            "changed": self.changed,
            "seconds": round(self.seconds, 2),
            "steps": [s.__dict__ for s in self.steps],
            "warnings": self.warnings,
        }


# --- where things live --------------------------------------------------------------


@dataclass(frozen=True)
class StatePaths:
    root: Path

    @property
    def backend(self) -> Path:
        return self.root / "backend"

    @property
    def passphrase(self) -> Path:
        return self.root / "passphrase"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def home(self) -> Path:
        return self.root / "home"


def state_paths(fleet_root: Path) -> StatePaths:
    env = os.environ.get("KLOUDCTL_PULUMI_STATE")
    return StatePaths(Path(env) if env else fleet_root / ".state" / "pulumi")


def _ensure_state(paths: StatePaths) -> None:
    for folder in (paths.root, paths.backend, paths.work, paths.home):
        folder.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.root, 0o700)
    if not paths.passphrase.exists():
        files.create_once(
            paths.passphrase, secrets.token_urlsafe(32), mode=0o600, what="Pulumi passphrase"
        )


def _tool_path() -> str:
    """PATH for the Pulumi CLI: the project's tools, this interpreter's venv, the rest."""
    repo = Path(__file__).resolve().parents[2]
    parts = [str(repo / ".tools" / "bin"), str(Path(sys.executable).parent)]
    return os.pathsep.join([*parts, os.environ.get("PATH", "")])


def pulumi_env(paths: StatePaths) -> dict[str, str]:
    return {
        "PULUMI_CONFIG_PASSPHRASE_FILE": str(paths.passphrase),
        "PULUMI_BACKEND_URL": f"file://{paths.backend}",
        "PULUMI_HOME": str(paths.home),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
        "PULUMI_SKIP_CHECKPOINTS": "false",
        "PATH": _tool_path(),
    }


def find_pulumi() -> str:
    path = shutil.which("pulumi", path=_tool_path())
    if path is None:
        raise ToolMissing(
            "the Pulumi CLI is not installed: run `make tools` (it builds it into .tools/bin)"
        )
    return path


def _pulumi_command() -> Any:
    """The CLI the tools step built (or the one on PATH), as the Automation API wants it."""
    from pulumi import automation as auto

    binary = Path(find_pulumi())
    if binary.parent.name != "bin":
        return None
    return auto.PulumiCommand(root=str(binary.parent.parent))


# --- stale locks and pending operations --------------------------------------------


def stale_locks(paths: StatePaths, cabinet: str) -> tuple[list[Path], list[str]]:
    """Lock files of this stack: (stale ones, descriptions of live ones)."""
    stale, live = [], []
    host = socket.gethostname()
    for lock in paths.backend.glob(f".pulumi/locks/**/{cabinet}/*.json"):
        try:
            info = dig("pulumi", json.loads(lock.read_text()), kind=dict)
            pid = dig("pulumi", info, "pid", kind=int, default=0)
        except (OSError, ValueError, UnexpectedAnswer):
            continue  # not a lock pulumi wrote: pulumi itself will say what is wrong
        # No process has a pid beyond 2**31 (os.kill would overflow): such a lock is stale.
        gone = pid >= 2**31 or (pid > 0 and not pid_alive(pid))
        if info.get("hostname") == host and gone:
            stale.append(lock)
        else:
            live.append(f"pid {pid} on {info.get('hostname')} since {info.get('timestamp')}")
    return stale, live


# --- the driver -----------------------------------------------------------------------


class TenantsStack:
    """The tenants stack of one cabinet."""

    def __init__(self, fleet: Fleet, root: Path, cabinet: str) -> None:
        self.fleet = fleet
        self.root = root
        self.cabinet = fleet.cabinet(cabinet)
        self.paths = state_paths(root)

    # the engine is imported lazily: `kloudctl --help` must not pay for it
    def _workspace_opts(self) -> Any:
        from pulumi import automation as auto

        return auto.LocalWorkspaceOptions(
            work_dir=str(self.paths.work),
            pulumi_home=str(self.paths.home),
            env_vars=pulumi_env(self.paths),
            secrets_provider="passphrase",
            project_settings=auto.ProjectSettings(
                name=PROJECT,
                runtime="python",
                backend=auto.ProjectBackend(url=f"file://{self.paths.backend}"),
            ),
            pulumi_command=_pulumi_command(),
        )

    def _program(self) -> Callable[[], None]:
        root = self.root

        def program() -> None:
            from kloudctl.tenants.program import run

            run(default_fleet=root)

        return program

    def stack(self, create: bool) -> Any:
        from pulumi import automation as auto

        _ensure_state(self.paths)
        self.recovered = self._recover_stale_lock()
        try:
            opts = self._workspace_opts()  # checks the CLI's version: runs `pulumi version`
            if create:
                stack = auto.create_or_select_stack(
                    stack_name=self.cabinet.name,
                    project_name=PROJECT,
                    program=self._program(),
                    opts=opts,
                )
            else:
                stack = auto.select_stack(
                    stack_name=self.cabinet.name,
                    project_name=PROJECT,
                    program=self._program(),
                    opts=opts,
                )
            if self.recovered:
                _drop_pending_operations(stack)
        except auto.StackNotFoundError:
            raise NotFound(
                f"no tenants stack for cabinet {self.cabinet.name}: nothing was applied yet"
            ) from None
        except Exception as exc:  # whatever a failing or broken `pulumi` made the API raise
            raise _mapped(exc) from None
        return stack

    def _recover_stale_lock(self) -> bool:
        stale, live = stale_locks(self.paths, self.cabinet.name)
        if live:
            raise StackBusy(
                f"the tenants stack of {self.cabinet.name} is being updated by another run "
                f"({'; '.join(live)}); wait for it to finish"
            )
        for lock in stale:
            lock.unlink()
        return bool(stale)

    def configure(self, stack: Any, target: ApiTarget | None = None) -> None:
        from pulumi import automation as auto

        target = target or cabinet_target(self.fleet, self.cabinet.name)
        try:
            stack.set_all_config(
                {
                    "kloudctl:fleet": auto.ConfigValue(str(self.root)),
                    "kloudctl:endpoint": auto.ConfigValue(target.endpoint),
                    "kloudctl:fingerprint": auto.ConfigValue(target.fingerprint),
                    "kloudctl:tokenId": auto.ConfigValue(target.token_id),
                }
            )
        except Exception as exc:
            raise _mapped(exc) from None
        # The secret goes through standard input, never a command line (`ps` shows those).
        env = {**os.environ, **pulumi_env(self.paths)}
        done = subprocess.run(
            [
                find_pulumi(),
                "config",
                "set",
                "--secret",
                SECRET_KEY,
                "--stack",
                self.cabinet.name,
                "--non-interactive",
            ],
            input=target.secret,
            text=True,
            capture_output=True,
            cwd=self.paths.work,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise ExternalError(f"pulumi config set failed: {_clean(done.stderr)[-300:]}")

    # -- operations ------------------------------------------------------------------

    def admit(self) -> None:
        admit(plan_cabinet(self.cabinet))

    def run(
        self, action: str, on_step: Callable[[Step], None] | None = None, refresh: bool = False
    ) -> RunResult:
        if action in ("plan", "apply"):
            self.admit()  # before Pulumi is touched
        # A secret that cannot be read fails here, before any state or stack is made.
        target = cabinet_target(self.fleet, self.cabinet.name)
        stack = self.stack(create=action in ("plan", "apply"))
        self.configure(stack, target)
        events = _EventCollector(on_step, planned=action == "plan")
        start = time.monotonic()
        try:
            if action == "plan":
                preview = stack.preview(on_event=events, refresh=refresh or None)
                changes = dict(preview.change_summary)
            elif action == "apply":
                up = stack.up(on_event=events, refresh=refresh or None)
                changes = dict(up.summary.resource_changes or {})
            elif action == "destroy":
                result = stack.destroy(on_event=events)
                changes = dict(result.summary.resource_changes or {})
            elif action == "refresh":
                result = stack.refresh(on_event=events)
                changes = dict(result.summary.resource_changes or {})
            else:
                raise KloudError(f"unknown action {action}")
            counts = {str(k): dig("pulumi", changes, k, kind=int) for k in changes}
        except Exception as exc:
            raise _mapped(exc, events) from None
        result_ = RunResult(
            self.cabinet.name,
            action,
            counts,
            events.steps,
            time.monotonic() - start,
            events.warnings,
        )
        if self.recovered:
            result_.warnings.insert(0, "recovered from an interrupted run (stale lock removed)")
        return result_

    def outputs(self) -> dict[str, Any]:
        stack = self.stack(create=False)
        try:
            return {k: v.value for k, v in stack.outputs().items()}
        except Exception as exc:
            raise _mapped(exc) from None


def _drop_pending_operations(stack: Any) -> None:
    """After a killed run: forget its pending operations (creates adopt what they left)."""
    from pulumi import automation as auto

    state = stack.export_stack()
    deployment = dict(state.deployment or {})
    if deployment.get("pending_operations"):
        deployment["pending_operations"] = []
        stack.import_stack(auto.Deployment(version=state.version, deployment=deployment))


class _EventCollector:
    """Turns engine events into Steps; remembers failures and their messages."""

    def __init__(self, on_step: Callable[[Step], None] | None, planned: bool) -> None:
        self.on_step = on_step
        self.planned = planned
        self.steps: list[Step] = []
        self.started: dict[str, float] = {}
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def __call__(self, event: Any) -> None:
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
            self.started[meta.urn] = time.monotonic()
            if self.planned:
                self._step(meta, "planned")
        elif event.res_outputs_event is not None and not self.planned:
            self._step(event.res_outputs_event.metadata, "done")
        elif event.res_op_failed_event is not None:
            self._step(event.res_op_failed_event.metadata, "failed")
        elif event.diagnostic_event is not None:
            diag = event.diagnostic_event
            text = _clean(diag.message)
            if diag.severity == "error" and text:
                self.errors.append(text)
            elif diag.severity == "warning" and text:
                self.warnings.append(text)

    def _step(self, meta: Any, status: str) -> None:
        if meta.type.startswith(_HIDDEN_TYPES):
            return  # the stack, the provider, and the Guest wrapper of each guest's VM
        op = str(getattr(meta.op, "value", meta.op))
        kind = _kind(meta.type, meta.urn)
        name = meta.urn.rsplit("::", 1)[-1]
        seconds = time.monotonic() - self.started.get(meta.urn, time.monotonic())
        step = Step(op, name, kind, status, seconds)
        self.steps.append(step)
        if self.on_step and op != "same":
            self.on_step(step)


_HIDDEN_TYPES = (
    "pulumi:pulumi:Stack",
    "pulumi:providers:",
    "kloudctl:tenants:Guest",
    "kloudctl:tenants:Container",
)
# Resource names end with what they are (see components.Tenant); longest suffix first.
_PROVIDER_KINDS = (
    ("-acl-group", "acl"),
    ("-acl-token", "acl"),
    ("-firewall", "security group"),
    ("-pool", "pool"),
    ("-group", "group"),
    ("-user", "user"),
    ("-token", "token"),
)


def _kind(type_: str, urn: str) -> str:
    if type_ == "pulumi-python:dynamic:Resource":
        name = urn.rsplit("::", 1)[-1]
        for suffix, kind in _PROVIDER_KINDS:
            if name.endswith(suffix):
                return kind
        # a guest's resource is named after it; its parent component says which kind
        return "container" if "kloudctl:tenants:Container$" in urn else "guest"
    return type_.rsplit(":", 1)[-1].lower()


_ANSI = re.compile(r"\x1b\[[0-9;]*m|<\{%[^%]*%\}>")


def _clean(text: str) -> str:
    return _ANSI.sub("", text or "").strip()


def _mapped(exc: Exception, events: _EventCollector | None = None) -> KloudError:
    from pulumi import automation as auto

    if isinstance(exc, KloudError):
        return exc
    if isinstance(exc, json.JSONDecodeError):  # `pulumi ... --json` printed something else
        return UnexpectedAnswer("pulumi", "JSON", exc.doc)
    if isinstance(exc, FileNotFoundError):
        return ToolMissing(f"pulumi cannot be run ({exc.filename or exc}): run `make tools`")
    if isinstance(exc, subprocess.CalledProcessError):  # `pulumi version`, before the API
        command = " ".join(str(a) for a in exc.cmd[1:]) if isinstance(exc.cmd, list) else ""
        return ExternalError(f"pulumi {command} failed (exit {exc.returncode})")
    if isinstance(exc, auto.InvalidVersionError):
        return ExternalError(f"pulumi is not a usable version: {exc}")
    if isinstance(exc, auto.ConcurrentUpdateError):
        return StackBusy("the tenants stack is being updated by another run; wait for it")
    if isinstance(exc, auto.StackNotFoundError):
        return NotFound("no tenants stack for this cabinet: nothing was applied yet")
    if isinstance(exc, auto.CommandError):
        failures = _failures(events.errors if events else [], str(exc))
        if failures:
            return ApplyFailed("; ".join(failures), failures)
        tail = [line for line in _clean(str(exc)).splitlines() if line.strip()][-3:]
        return ExternalError("pulumi failed: " + " / ".join(tail))
    return ExternalError(f"pulumi failed: {type(exc).__name__}: {exc}")


_EXC_PREFIX = re.compile(r"^(?:[\w.]+\.)?(?:[A-Z]\w*(?:Error|Exception|Failed|Failure)): ")


def _failures(errors: list[str], stderr: str) -> list[str]:
    """The resource errors the engine reported, in Proxmox's words (no traceback)."""
    found = []
    for text in errors:
        if "update failed" in text or "one or more errors occurred" in text.lower():
            continue
        lines = [
            line.strip()
            for line in text.splitlines()
            if line.strip()
            and not line.startswith((" ", "\t"))
            and "Traceback (most recent call last)" not in line
        ]
        if not lines:
            continue
        message = lines[-1]
        while _EXC_PREFIX.match(message):
            message = _EXC_PREFIX.sub("", message, count=1)
        found.append(message)
    return found
