"""A node's tasks: the list, a task's status and paged log, and stopping it. Who may see a
task: its user (or that user's tokens), or whoever has `Sys.Audit` on its node."""

from __future__ import annotations

from typing import Any

from kloudctl.sim import tasks as taskmod
from kloudctl.sim.api import ApiError, Call, Routes, bad_request

routes = Routes()


def may_see(call: Call, task: dict[str, Any]) -> bool:
    if task["user"] == call.who.authid or (
        task["user"].split("!")[0] == call.who.user and not call.who.token
    ):
        return True
    return call.cab.acl.allowed(call.who, f"/nodes/{task['node']}", ["Sys.Audit"])


def task_row(task: dict[str, Any]) -> dict[str, Any]:
    row = {k: task[k] for k in ("upid", "node", "pid", "pstart", "starttime", "type", "id", "user")}
    if task["status"] == "stopped":
        row["status"] = task["exitstatus"]
        row["endtime"] = task.get("endtime", task["starttime"])
    return row


@routes("GET", "/nodes/{node}/tasks")
def node_tasks(call: Call) -> list[dict[str, Any]]:
    node = call.p("node")
    call.cab.node(node)
    rows = []
    source = call.p("source") or "archive"
    for task in reversed(call.state["tasks"]):
        if task["node"] != node or not may_see(call, task):
            continue
        if source == "active" and task["status"] != "running":
            continue
        if source == "archive" and task["status"] == "running":
            continue
        if call.p("vmid") and task["id"] != str(call.p("vmid")):
            continue
        if call.p("typefilter") and task["type"] != call.p("typefilter"):
            continue
        if call.p("userfilter") and call.p("userfilter") not in task["user"]:
            continue
        if call.p("errors") and task.get("exitstatus") in (None, "OK"):
            continue
        rows.append(task_row(task))
    start, limit = int(call.p("start") or 0), int(call.p("limit") or 50)
    return rows[start : start + limit]


def _task(call: Call) -> dict[str, Any]:
    upid = str(call.p("upid"))
    parsed = taskmod.parse_upid(upid)
    if parsed is None:
        raise bad_request("upid", "unable to parse worker upid")
    task = call.cab.find_task(upid)
    if task is None or task["node"] != call.p("node"):
        raise ApiError(500, f"task '{upid}' does not exist")
    if not may_see(call, task):
        call.cab.acl.check(call.who, f"/nodes/{task['node']}", ["Sys.Audit"])
    return task


@routes("GET", "/nodes/{node}/tasks/{upid}")
def task_index(call: Call) -> list[dict[str, str]]:
    _task(call)
    return [{"name": "log"}, {"name": "status"}]


@routes("GET", "/nodes/{node}/tasks/{upid}/status")
def task_status(call: Call) -> dict[str, Any]:
    task = _task(call)
    if task["upid"] in call.cab.status_400:
        call.cab.status_400.discard(task["upid"])
        raise bad_request(
            "upid", "unable to open file '/var/log/pve/tasks/active' - task not yet registered"
        )
    return taskmod.public(task)


@routes("GET", "/nodes/{node}/tasks/{upid}/log")
def task_log(call: Call) -> list[dict[str, Any]]:
    task = _task(call)
    lines = task["log"]
    start, limit = (
        int(call.p("start") or 0),
        int(call.p("limit") if call.p("limit") is not None else 50),
    )
    return [{"n": i + 1, "t": t} for i, t in enumerate(lines)][start : start + limit]


@routes("DELETE", "/nodes/{node}/tasks/{upid}")
def task_stop(call: Call) -> None:
    task = _task(call)
    if task["status"] == "running":
        call.cab.stop_task(task["upid"])
