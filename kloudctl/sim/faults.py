"""Faults a test can inject into a cabinet, through the control endpoint (outside /api2)
or `kloudctl sim fault`.

Kinds (each per cabinet, cleared with `clear`):
- `latency` (ms): every API answer is delayed;
- `error_rate` (0..1): that share of API calls answer 503;
- `lock_timeout` (vmid, or none for all guests): config changes fail with PVE's lock timeout;
- `task_failure` (count, message): the next tasks end with `TASK ERROR: <message>`;
- `task_warnings` (count, warnings): the next tasks end `WARNINGS: n`;
- `no_worker_upid` (count): the next task-starting calls fail with `got no worker upid`;
- `status_400` (count): the next tasks answer 400 on their first status read;
- `node_offline` (node): the node stops answering (595) and shows offline;
- `node_online` (node): back online;
- `move_guest` (vmid, node): the guest moves to another node, as HA relocation does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = (
    "latency",
    "error_rate",
    "lock_timeout",
    "task_failure",
    "task_warnings",
    "no_worker_upid",
    "status_400",
    "node_offline",
    "node_online",
    "move_guest",
    "clear",
)


@dataclass
class Faults:
    latency_ms: float = 0.0
    error_rate: float = 0.0
    lock_timeout: list[int] = field(default_factory=list)
    lock_timeout_all: bool = False
    task_failures: int = 0
    task_failure_message: str = "simulated failure"
    task_warnings: int = 0
    task_warning_count: int = 1
    no_worker_upid: int = 0
    status_400: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def locked(self, vmid: int) -> bool:
        return self.lock_timeout_all or vmid in self.lock_timeout


class FaultError(ValueError):
    """A fault specification refused: answered 400 by the control endpoint
    (`server.handle_control`); internal to the simulator, see kloudctl.sim.errors."""


def _int(spec: dict[str, Any], key: str, default: int | None = None) -> int:
    value = spec.get(key, default)
    if value is None:
        raise FaultError(f"fault needs '{key}'")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise FaultError(f"'{key}' must be an integer, got {value!r}") from None


def apply(faults: Faults, spec: dict[str, Any]) -> str | None:
    """Apply a fault to the settings; returns the action left to the cabinet (node/guest)."""
    kind = spec.get("kind")
    if kind not in KINDS:
        raise FaultError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
    if kind == "latency":
        faults.latency_ms = float(spec.get("ms", spec.get("value", 0)))
    elif kind == "error_rate":
        rate = float(spec.get("rate", spec.get("value", 0)))
        if not 0 <= rate <= 1:
            raise FaultError("rate must be between 0 and 1")
        faults.error_rate = rate
    elif kind == "lock_timeout":
        if spec.get("vmid") is None:
            faults.lock_timeout_all = True
        else:
            faults.lock_timeout.append(_int(spec, "vmid"))
    elif kind == "task_failure":
        faults.task_failures += _int(spec, "count", 1)
        faults.task_failure_message = str(spec.get("message") or "simulated failure")
    elif kind == "task_warnings":
        faults.task_warnings += _int(spec, "count", 1)
        faults.task_warning_count = _int(spec, "warnings", 1)
    elif kind == "no_worker_upid":
        faults.no_worker_upid += _int(spec, "count", 1)
    elif kind == "status_400":
        faults.status_400 += _int(spec, "count", 1)
    elif kind == "clear":
        fresh = Faults()
        faults.__dict__.update(fresh.__dict__)
    else:
        return str(kind)
    return None
