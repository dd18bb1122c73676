"""A QEMU guest's runtime status and power: current status, start, stop, shutdown,
reboot, reset, suspend, resume (pending config changes apply at the next start or
restart)."""

from __future__ import annotations

import time
from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes
from kloudctl.sim.handlers import common as c

routes = Routes()
V = "/nodes/{node}/qemu/{vmid}"


@routes("GET", V + "/status")
def status_index(call: Call) -> list[dict[str, str]]:
    c.guest(call)
    return [
        {"subdir": s}
        for s in ("current", "start", "stop", "reset", "shutdown", "suspend", "reboot", "resume")
    ]


@routes("GET", V + "/status/current")
def status_current(call: Call) -> dict[str, Any]:
    g = c.guest(call)
    out = c.live_status(call, g)
    out["ha"] = {"managed": 0}
    if g["config"].get("agent"):
        out["agent"] = 1
    return out


def _power(call: Call, kind: str, want: str | None, check: str | None) -> str:
    g = c.guest(call)
    vmid = g["vmid"]
    c.check_config_lock(g, bool(call.p("skiplock")))
    if kind in ("qmstart",) and g["config"].get("template"):
        raise ApiError(500, "you can't start a vm if it's a template")
    if check == "stopped" and g["status"] == "running":
        raise ApiError(500, f"VM {vmid} already running")
    if check == "running" and g["status"] != "running":
        raise ApiError(500, f"VM {vmid} not running")
    if kind == "qmstart":
        node = call.state["nodes"][g["node"]]
        used = sum(
            c.memory_bytes(o)
            for o in call.state["guests"].values()
            if o["node"] == g["node"] and o["status"] == "running"
        )
        if used + c.memory_bytes(g) > node["memory"]:
            raise ApiError(500, f"start failed: not enough memory on node '{g['node']}'")

    def done(task: dict[str, Any]) -> None:
        if want == "running" and g["status"] != "running":
            c.apply_pending(g)
            g["status"], g["started"] = "running", time.time()
        elif want == "stopped":
            c.apply_pending(g)
            g["status"], g["started"] = "stopped", 0
        elif want == "restart":
            c.apply_pending(g)
            g["started"] = time.time()

    return call.cab.start_task(call.who, kind, str(vmid), g["node"], done, lock=vmid)


@routes("POST", V + "/status/start")
def start(call: Call) -> str:
    return _power(call, "qmstart", "running", "stopped")


@routes("POST", V + "/status/stop")
def stop(call: Call) -> str:
    return _power(call, "qmstop", "stopped", None)


@routes("POST", V + "/status/shutdown")
def shutdown(call: Call) -> str:
    return _power(call, "qmshutdown", "stopped", "running")


@routes("POST", V + "/status/reboot")
def reboot(call: Call) -> str:
    return _power(call, "qmreboot", "restart", "running")


@routes("POST", V + "/status/reset")
def reset(call: Call) -> str:
    return _power(call, "qmreset", "restart", "running")


@routes("POST", V + "/status/suspend")
def suspend(call: Call) -> str:
    return _power(call, "qmsuspend", None, "running")


@routes("POST", V + "/status/resume")
def resume(call: Call) -> str:
    return _power(call, "qmresume", None, "running")
