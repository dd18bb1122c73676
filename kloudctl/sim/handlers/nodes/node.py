"""The nodes themselves: `/nodes`, a node's status, version, DNS (read and written) and
time, and its LXC and replication lists (empty: the simulator runs no containers and no
replication)."""

from __future__ import annotations

from typing import Any

from kloudctl.sim.api import Call, Routes
from kloudctl.sim.handlers import common as c
from kloudctl.sim.state import PVE_VERSION

routes = Routes()


@routes("GET", "/nodes")
def list_nodes(call: Call) -> list[dict[str, Any]]:
    out = []
    fp = call.cab.endpoint.fingerprint if call.cab.endpoint else ""
    for name, n in call.state["nodes"].items():
        entry: dict[str, Any] = {
            "node": name,
            "status": "online" if n["online"] else "offline",
            "level": "",
            "ssl_fingerprint": fp,
        }
        if n["online"] and call.cab.acl.allowed(call.who, f"/nodes/{name}", ["Sys.Audit"]):
            u = c.node_usage(call, name)
            entry.update(
                {k: u[k] for k in ("cpu", "maxcpu", "mem", "maxmem", "disk", "maxdisk", "uptime")}
            )
        out.append(entry)
    return out


@routes("GET", "/nodes/{node}/status")
def node_status(call: Call) -> dict[str, Any]:
    node = call.p("node")
    n = call.cab.node(node)
    u = c.node_usage(call, node)
    return {
        "cpu": u["cpu"],
        "cpuinfo": {
            "cores": n["cores"],
            "cpus": n["cores"],
            "sockets": 1,
            "model": "Simulated CPU (kloudctl sim)",
            "mhz": "2400.000",
        },
        "memory": {
            "total": u["maxmem"],
            "used": u["mem"],
            "free": u["maxmem"] - u["mem"],
            "available": u["maxmem"] - u["mem"],
        },
        "swap": {"total": 0, "used": 0, "free": 0},
        "rootfs": {
            "total": u["maxdisk"],
            "used": u["disk"],
            "free": u["maxdisk"] - u["disk"],
            "avail": u["maxdisk"] - u["disk"],
        },
        "loadavg": [f"{u['cpu'] * n['cores']:.2f}", "0.50", "0.40"],
        "uptime": u["uptime"],
        "pveversion": f"pve-manager/{PVE_VERSION['version']}/{PVE_VERSION['repoid']}",
        "kversion": "Linux 6.17.2-1-pve #1 SMP PREEMPT_DYNAMIC",
        "current-kernel": {
            "sysname": "Linux",
            "release": "6.17.2-1-pve",
            "version": "#1 SMP PREEMPT_DYNAMIC",
            "machine": "x86_64",
        },
        "boot-info": {"mode": "efi", "secureboot": 0},
        "idle": 0,
        "wait": 0,
    }


@routes("GET", "/nodes/{node}/version")
def node_version(call: Call) -> dict[str, Any]:
    call.cab.node(call.p("node"))
    return dict(PVE_VERSION)


@routes("GET", "/nodes/{node}/replication")
def node_replication(call: Call) -> list[Any]:
    call.cab.node(call.p("node"))
    return []
