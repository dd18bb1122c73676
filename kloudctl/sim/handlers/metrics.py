"""Metrics: RRD data of nodes, guests and storages (`.../rrddata`), the metric servers
PVE pushes to (`/cluster/metrics/server`) and the pull-style export
(`/cluster/metrics/export`).

The simulator keeps no sampled history: each RRD row is worked out from the state at that
time as far as the state tells it. A guest counts from the moment it was started
(`started`), so starting or stopping guests moves the node's CPU and memory curves, and a
guest's own curve is zero before its start. Rows are spaced as PVE's RRAs are (one minute
for `hour`, 30 minutes for `day`, ...), 70 of them, the last at the current step.
"""

from __future__ import annotations

import time
from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes
from kloudctl.sim.handlers import common as c
from kloudctl.sim.handlers import sections
from kloudctl.sim.state import GiB

routes = Routes()
N = "/nodes/{node}"

STEP = {
    "hour": 60,
    "day": 1800,
    "week": 10800,
    "month": 43200,
    "year": 604800,
    "decade": 7 * 604800,
}
ROWS = 70


def _times(call: Call) -> list[int]:
    step = STEP[call.p("timeframe")]
    last = int(time.time()) // step * step
    return [last - step * i for i in range(ROWS - 1, -1, -1)]


def _peak(call: Call) -> float:
    """MAX rows sit above AVERAGE ones: the simulator has no spikes, only their bound."""
    return 1.25 if call.p("cf") == "MAX" else 1.0


def _running_in(call: Call, g: dict[str, Any], t: int) -> bool:
    """Whether a guest ran during the step starting at `t` (a row covers [t, t + step):
    the last row is the step under way)."""
    step = STEP[call.p("timeframe")]
    return g["status"] == "running" and bool(g["started"]) and g["started"] < t + step


@routes("GET", N + "/rrddata")
def node_rrddata(call: Call) -> list[dict[str, Any]]:
    node = call.p("node")
    n = call.cab.node(node)
    usage = c.node_usage(call, node)
    guests = [g for g in call.state["guests"].values() if g["node"] == node]
    peak = _peak(call)
    rows = []
    for t in _times(call):
        up = [g for g in guests if _running_in(call, g, t)]
        vcpus = sum(c.cpus(g) for g in up)
        cpu = min(1.0, (0.01 + vcpus * 0.05 / n["cores"]) * peak)
        mem = min(n["memory"], 2 * GiB + sum(int(c.memory_bytes(g) * 0.42) for g in up))
        rows.append(
            {
                "time": t,
                "cpu": round(cpu, 6),
                "maxcpu": n["cores"],
                "iowait": round(min(1.0, 0.001 + 0.002 * len(up)) * peak, 6),
                "loadavg": round(vcpus * 0.05 * peak, 4),
                "memtotal": n["memory"],
                "memused": int(mem * min(peak, 1.05)),
                "swaptotal": 8 * GiB,
                "swapused": 0,
                "roottotal": usage["maxdisk"],
                "rootused": usage["disk"],
                "netin": round(sum(1200.0 for _ in up) * peak, 2),
                "netout": round(sum(800.0 for _ in up) * peak, 2),
            }
        )
    return rows


def _guest_rrddata(call: Call) -> list[dict[str, Any]]:
    g = c.guest(call)
    peak = _peak(call)
    mem, disk = c.memory_bytes(g), c.boot_disk_size(g)
    rows = []
    for t in _times(call):
        up = _running_in(call, g, t)
        rows.append(
            {
                "time": t,
                "cpu": round(0.03 * peak, 6) if up else 0,
                "maxcpu": c.cpus(g),
                "mem": int(mem * 0.42 * peak) if up else 0,
                "maxmem": mem,
                "disk": 0,
                "maxdisk": disk,
                "netin": round(1200.0 * peak, 2) if up else 0,
                "netout": round(800.0 * peak, 2) if up else 0,
                "diskread": round(4096.0 * peak, 2) if up else 0,
                "diskwrite": round(2048.0 * peak, 2) if up else 0,
            }
        )
    return rows


routes("GET", N + "/qemu/{vmid}/rrddata")(_guest_rrddata)
routes("GET", N + "/lxc/{vmid}/rrddata")(_guest_rrddata)


@routes("GET", N + "/storage/{storage}/rrddata")
def storage_rrddata(call: Call) -> list[dict[str, Any]]:
    node, sid = call.p("node"), call.p("storage")
    call.cab.node(node)
    if sid not in call.state["storages"]:
        raise ApiError(500, f"storage '{sid}' does not exist")
    status = c.storage_status(call, node, sid)
    vols = call.state["volumes"].get(f"{node}/{sid}", {}).values()
    rows = []
    for t in _times(call):
        step = STEP[call.p("timeframe")]
        used = sum(v["size"] for v in vols if v.get("ctime", 0) < t + step)
        rows.append({"time": t, "total": status["total"], "used": used})
    return rows


# --- metric servers and export -----------------------------------------------------------------

SERVERS = sections.SectionStore(
    store="metric-servers",
    key="id",
    what="metric server",
    secrets=("token",),
    defaults={"disable": 0},
)
sections.register(
    routes, "/cluster/metrics/server", "/cluster/metrics/server/{id}", SERVERS, create_on_item=True
)


@routes("GET", "/cluster/metrics/export")
def export(call: Call) -> dict[str, Any]:
    now = int(time.time())
    wanted = set(c.split_ids(call.p("node-list"))) or set(call.state["nodes"])
    data: list[dict[str, Any]] = []

    def add(ident: str, metric: str, kind: str, value: float) -> None:
        data.append({"id": ident, "metric": metric, "timestamp": now, "type": kind, "value": value})

    for node in sorted(wanted & set(call.state["nodes"])):
        u = c.node_usage(call, node)
        add(f"node/{node}", "cpu_current", "gauge", float(u["cpu"]))
        add(f"node/{node}", "cpu_max", "gauge", float(u["maxcpu"]))
        add(f"node/{node}", "mem_used", "gauge", float(u["mem"]))
        add(f"node/{node}", "mem_total", "gauge", float(u["maxmem"]))
        add(f"node/{node}", "uptime", "gauge", float(u["uptime"]))
    for g in sorted(call.state["guests"].values(), key=lambda g: g["vmid"]):
        if g["node"] not in wanted:
            continue
        s = c.live_status(call, g)
        ident = f"{c.guest_type(g)}/{g['vmid']}"
        add(ident, "cpu_current", "gauge", float(s["cpu"]))
        add(ident, "mem_used", "gauge", float(s["mem"]))
        add(ident, "mem_total", "gauge", float(s["maxmem"]))
        add(ident, "net_in", "counter", float(s["netin"]))
        add(ident, "net_out", "counter", float(s["netout"]))
    start = int(call.p("start-time") or 0)
    return {"data": [d for d in data if d["timestamp"] > start]}
