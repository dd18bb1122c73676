"""A guest's snapshots: list, take (without RAM state), read and edit, roll back, delete.
The same handlers serve LXC containers (`nodes/lxc.py` records them under `/lxc/`)."""

from __future__ import annotations

import copy
import time
from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes, bad_request
from kloudctl.sim.handlers import common as c

routes = Routes()
V = "/nodes/{node}/qemu/{vmid}"


def _snaps(g: dict[str, Any]) -> dict[str, Any]:
    return g.setdefault("snapshots", {})


def _snap(call: Call) -> tuple[dict[str, Any], dict[str, Any]]:
    g = c.guest(call)
    snap = _snaps(g).get(call.p("snapname"))
    if snap is None:
        raise ApiError(500, f"snapshot '{call.p('snapname')}' does not exist")
    return g, snap


@routes("GET", V + "/snapshot")
def snapshot_list(call: Call) -> list[dict[str, Any]]:
    g = c.guest(call)
    out = []
    for name, snap in _snaps(g).items():
        entry = {
            "name": name,
            "description": snap["description"],
            "snaptime": snap["snaptime"],
            "vmstate": 0,
        }
        if snap.get("parent"):
            entry["parent"] = snap["parent"]
        out.append(entry)
    current: dict[str, Any] = {"name": "current", "description": "You are here!"}
    if g.get("parent_snapshot"):
        current["parent"] = g["parent_snapshot"]
    return [*out, current]


@routes("POST", V + "/snapshot")
def snapshot_create(call: Call) -> str:
    g = c.guest(call)
    c.check_config_lock(g)
    name = call.p("snapname")
    if name == "current" or name in _snaps(g):
        raise bad_request("snapname", f"snapshot name '{name}' already used")
    if call.p("vmstate"):
        raise ApiError(501, "snapshots with RAM state are not simulated by kloudctl sim")

    def done(task: dict[str, Any]) -> None:
        _snaps(g)[name] = {
            "description": call.p("description", ""),
            "snaptime": int(time.time()),
            "parent": g.get("parent_snapshot"),
            "config": copy.deepcopy(g["config"]),
        }
        g["parent_snapshot"] = name

    return call.cab.start_task(
        call.who, c.task_kind(call, "qmsnapshot"), str(g["vmid"]), g["node"], done, lock=g["vmid"]
    )


@routes("GET", V + "/snapshot/{snapname}")
def snapshot_index(call: Call) -> list[dict[str, str]]:
    _snap(call)
    return [{"cmd": "rollback"}, {"cmd": "config"}]


@routes("DELETE", V + "/snapshot/{snapname}")
def snapshot_delete(call: Call) -> str:
    g, snap = _snap(call)
    name = call.p("snapname")

    def done(task: dict[str, Any]) -> None:
        for other in _snaps(g).values():
            if other.get("parent") == name:
                other["parent"] = snap.get("parent")
        if g.get("parent_snapshot") == name:
            g["parent_snapshot"] = snap.get("parent")
        _snaps(g).pop(name, None)

    return call.cab.start_task(
        call.who,
        c.task_kind(call, "qmdelsnapshot"),
        str(g["vmid"]),
        g["node"],
        done,
        lock=g["vmid"],
    )


@routes("GET", V + "/snapshot/{snapname}/config")
def snapshot_config(call: Call) -> dict[str, Any]:
    snap = _snap(call)[1]
    return {**snap["config"], "snaptime": snap["snaptime"], "description": snap["description"]}


@routes("PUT", V + "/snapshot/{snapname}/config")
def snapshot_config_put(call: Call) -> None:
    snap = _snap(call)[1]
    if call.p("description") is not None:
        snap["description"] = call.p("description")


@routes("POST", V + "/snapshot/{snapname}/rollback")
def snapshot_rollback(call: Call) -> str:
    g, snap = _snap(call)
    c.check_config_lock(g)

    def done(task: dict[str, Any]) -> None:
        g["config"] = copy.deepcopy(snap["config"])
        g["pending"].clear()
        g["parent_snapshot"] = call.p("snapname")
        g["status"], g["started"] = ("running", time.time()) if call.p("start") else ("stopped", 0)

    return call.cab.start_task(
        call.who, c.task_kind(call, "qmrollback"), str(g["vmid"]), g["node"], done, lock=g["vmid"]
    )
