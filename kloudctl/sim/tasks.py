"""Tasks as PVE runs them: UPIDs in the exact format, a status, a paged log, an exit status.

`UPID:<node>:<pid 8 hex>:<pstart 8 hex>:<starttime 8 hex>:<type>:<id>:<user>:`; status
`running` then `stopped` with `exitstatus` `OK`, `WARNINGS: n` or the error text (the
log's last line says `TASK OK`, `TASK WARNINGS: n` or `TASK ERROR: <msg>`).
"""

from __future__ import annotations

import re
import time
from typing import Any

_UPID = re.compile(
    r"^UPID:([a-zA-Z0-9][a-zA-Z0-9\-]*):([0-9A-F]{8}):([0-9A-F]{8,9}):([0-9A-F]{8}):([^:\s]+):([^:\s]*):([^:\s]+):$"
)
MAX_TASKS = 500


def make_upid(
    node: str, pid: int, pstart: int, starttime: int, kind: str, ident: str, user: str
) -> str:
    return f"UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{kind}:{ident}:{user}:"


def parse_upid(upid: str) -> dict[str, Any] | None:
    m = _UPID.match(upid)
    if not m:
        return None
    return {
        "node": m.group(1),
        "pid": int(m.group(2), 16),
        "pstart": int(m.group(3), 16),
        "starttime": int(m.group(4), 16),
        "type": m.group(5),
        "id": m.group(6),
        "user": m.group(7),
    }


def new_task(state: dict[str, Any], node: str, kind: str, ident: str, user: str) -> dict[str, Any]:
    state["next_pid"] = pid = int(state.get("next_pid", 4000)) + 1
    now = int(time.time())
    pstart = int(time.monotonic() * 100) % 0xFFFFFFFF
    task = {
        "upid": make_upid(node, pid, pstart, now, kind, ident, user),
        "node": node,
        "pid": pid,
        "pstart": pstart,
        "starttime": now,
        "type": kind,
        "id": ident,
        "user": user,
        "status": "running",
        "log": [],
    }
    tasks = state["tasks"]
    tasks.append(task)
    if len(tasks) > MAX_TASKS:
        del tasks[: len(tasks) - MAX_TASKS]
    return task


def finish(task: dict[str, Any], error: str | None = None, warnings: int = 0) -> None:
    task["status"] = "stopped"
    task["endtime"] = int(time.time())
    if error:
        task["exitstatus"] = error
        task["log"].append(f"TASK ERROR: {error}")
    elif warnings:
        task["exitstatus"] = f"WARNINGS: {warnings}"
        task["log"].extend(["WARN: simulated warning"] * warnings)
        task["log"].append(f"TASK WARNINGS: {warnings}")
    else:
        task["exitstatus"] = "OK"
        task["log"].append("TASK OK")


def public(task: dict[str, Any]) -> dict[str, Any]:
    """A task as `GET .../tasks/{upid}/status` shows it."""
    out = {
        k: task[k]
        for k in ("upid", "node", "pid", "pstart", "starttime", "type", "id", "user", "status")
    }
    if task["status"] == "stopped":
        out["exitstatus"] = task["exitstatus"]
    return out
