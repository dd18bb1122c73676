"""The QEMU guest agent's read commands (ping, info, host name, OS, time, time zone,
vCPUs, users, file systems), answered from the guest's config while it runs with the
agent enabled; `agent/network-get-interfaces` is `qemu.py`'s."""

from __future__ import annotations

import time
from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes
from kloudctl.sim.handlers import common as c

routes = Routes()
A = "/nodes/{node}/qemu/{vmid}/agent"


def _agent(call: Call) -> dict[str, Any]:
    g = c.guest(call)
    if g["status"] != "running":
        raise ApiError(500, f"VM {g['vmid']} is not running")
    if not str(g["config"].get("agent", "0")).split(",")[0].endswith("1"):
        raise ApiError(500, "No QEMU guest agent configured")
    return g


@routes("POST", A + "/ping")
def ping(call: Call) -> dict[str, Any]:
    _agent(call)
    return {"result": {}}


@routes("GET", A + "/info")
def info(call: Call) -> dict[str, Any]:
    _agent(call)
    commands = ("guest-ping", "guest-info", "guest-get-host-name", "guest-get-osinfo")
    supported = [{"name": n, "enabled": True, "success-response": True} for n in commands]
    return {"result": {"version": "7.2.0", "supported_commands": supported}}


@routes("GET", A + "/get-host-name")
def host_name(call: Call) -> dict[str, Any]:
    g = _agent(call)
    return {"result": {"host-name": c.guest_name(g)}}


@routes("GET", A + "/get-osinfo")
def osinfo(call: Call) -> dict[str, Any]:
    _agent(call)
    return {
        "result": {
            "id": "debian",
            "name": "Debian GNU/Linux",
            "pretty-name": "Debian GNU/Linux 12 (bookworm)",
            "version": "12 (bookworm)",
            "version-id": "12",
            "kernel-release": "6.1.0-28-amd64",
            "machine": "x86_64",
        }
    }


@routes("GET", A + "/get-time")
def get_time(call: Call) -> dict[str, Any]:
    _agent(call)
    return {"result": time.time_ns()}


@routes("GET", A + "/get-timezone")
def get_timezone(call: Call) -> dict[str, Any]:
    _agent(call)
    return {"result": {"zone": "CET", "offset": 3600}}


@routes("GET", A + "/get-vcpus")
def get_vcpus(call: Call) -> dict[str, Any]:
    g = _agent(call)
    return {"result": [{"logical-id": i, "online": True} for i in range(c.cpus(g))]}


@routes("GET", A + "/get-users")
def get_users(call: Call) -> dict[str, Any]:
    g = _agent(call)
    user = g["config"].get("ciuser")
    return {"result": [{"user": user, "login-time": g["started"]}] if user else []}


@routes("GET", A + "/get-fsinfo")
def get_fsinfo(call: Call) -> dict[str, Any]:
    g = _agent(call)
    size = c.boot_disk_size(g)
    root = {
        "name": "sda1",
        "mountpoint": "/",
        "type": "ext4",
        "total-bytes": size,
        "used-bytes": size // 5,
        "disk": [{"bus-type": "scsi", "target": 0, "unit": 0}],
    }
    return {"result": [root]}
