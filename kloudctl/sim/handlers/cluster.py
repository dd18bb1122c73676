"""The cluster as a whole: `/version`, `/cluster/resources`, `/cluster/status`, the next
free VMID, the cluster's task list, its options, and the HA, backup and replication lists
(empty: a cabinet runs no HA resources, backup or replication jobs)."""

from __future__ import annotations

import json
import time
from typing import Any

from kloudctl.sim.api import ApiError, Call, Raw, Routes, bad_request
from kloudctl.sim.handlers import common as c
from kloudctl.sim.handlers.nodes.tasks import may_see, task_row
from kloudctl.sim.state import PVE_VERSION

routes = Routes()

#: pvestatd refreshes the guests' and nodes' figures that `/cluster/resources` shows every
#: 10 s; an answer is reused within that period (until the state changes), never longer, so
#: uptime and usage move as on a real cabinet.
STATUS_PERIOD = 10.0
_clock = time.monotonic  # the tests move it on rather than wait a period


@routes("GET", "/version")
def version(call: Call) -> dict[str, Any]:
    return dict(PVE_VERSION)


@routes("GET", "/cluster/resources")
def resources(call: Call) -> Raw:
    period = int(_clock() // STATUS_PERIOD)
    key = ("resources", call.who.authid, call.p("type"), period)
    cached = call.cab.cache.get(key)
    if cached is not None:
        return Raw(cached)
    kind = call.p("type")
    acl = call.cab.acl
    admin = call.who.user == "root@pam" and not call.who.token
    out: list[dict[str, Any]] = []
    if kind in (None, "vm"):
        pools = {
            vmid: name
            for name, p in call.state["access"]["pools"].items()
            for vmid in p.get("vms", [])
        }
        for g in call.state["guests"].values():
            if not admin and not acl.allowed(call.who, f"/vms/{g['vmid']}", ["VM.Audit"]):
                continue
            entry = {
                "id": f"{c.guest_type(g)}/{g['vmid']}",
                "type": c.guest_type(g),
                "node": g["node"],
                **c.live_status(call, g),
            }
            entry["template"] = 1 if g["config"].get("template") else 0
            if g["vmid"] in pools:
                entry["pool"] = pools[g["vmid"]]
            entry.pop("qmpstatus", None)
            entry.pop("pid", None)
            entry.pop("cpus", None)
            entry["maxcpu"] = c.cpus(g)
            out.append(entry)
    for node, n in call.state["nodes"].items():
        if kind in (None, "node") and (
            admin or acl.allowed(call.who, f"/nodes/{node}", ["Sys.Audit"])
        ):
            u = c.node_usage(call, node)
            entry = {
                "id": f"node/{node}",
                "type": "node",
                "node": node,
                "status": "online" if n["online"] else "offline",
                "level": "",
                "cgroup-mode": 2,
            }
            if n["online"]:
                entry.update(
                    {
                        k: u[k]
                        for k in ("cpu", "maxcpu", "mem", "maxmem", "disk", "maxdisk", "uptime")
                    }
                )
            out.append(entry)
        if kind in (None, "storage"):
            for storage in call.state["storages"]:
                if not admin and not acl.allowed(
                    call.who,
                    f"/storage/{storage}",
                    ["Datastore.Audit", "Datastore.AllocateSpace"],
                    any_=True,
                ):
                    continue
                s = c.storage_status(call, node, storage)
                out.append(
                    {
                        "id": f"storage/{node}/{storage}",
                        "type": "storage",
                        "node": node,
                        "storage": storage,
                        "status": "available" if n["online"] else "unknown",
                        "plugintype": s["type"],
                        "content": s["content"],
                        "shared": s["shared"],
                        "disk": s["used"],
                        "maxdisk": s["total"],
                    }
                )
        if kind in (None, "sdn") and (
            admin or acl.allowed(call.who, "/sdn/zones/localnetwork", ["SDN.Audit"])
        ):
            out.append(
                {
                    "id": f"sdn/{node}/localnetwork",
                    "type": "sdn",
                    "sdn": "localnetwork",
                    "node": node,
                    "status": "ok",
                }
            )
    if kind is None:
        for name in sorted(call.state["access"]["pools"]):
            if admin or acl.allowed(call.who, f"/pool/{name}", ["Pool.Audit"]):
                out.append({"id": f"/pool/{name}", "type": "pool", "pool": name})
    answer = Raw.of(json.dumps(out, separators=(",", ":")).encode())
    cache = call.cab.cache
    for stale in [k for k in cache if k[0] == "resources" and k[-1] != key[-1]]:
        del cache[stale]
    cache[key] = answer.body
    return answer


@routes("GET", "/cluster/status")
def cluster_status(call: Call) -> list[dict[str, Any]]:
    nodes = call.state["nodes"]
    out: list[dict[str, Any]] = [
        {
            "type": "cluster",
            "id": "cluster",
            "name": call.state["cluster"],
            "nodes": len(nodes),
            "quorate": 1,
            "version": 3,
        }
    ]
    for i, (name, n) in enumerate(nodes.items()):
        out.append(
            {
                "type": "node",
                "id": f"node/{name}",
                "name": name,
                "ip": n["ip"],
                "online": 1 if n["online"] else 0,
                "local": 1 if i == 0 else 0,
                "nodeid": n["nodeid"],
                "level": "",
            }
        )
    return out


@routes("GET", "/cluster/nextid")
def nextid(call: Call) -> int:
    """Like PVE, this reserves nothing: two callers may get the same ID."""
    guests = call.state["guests"]
    if call.p("vmid") is not None:
        vmid = int(call.p("vmid"))
        if str(vmid) in guests:
            raise bad_request("vmid", f"VM {vmid} already exists")
        return vmid
    vmid = 100
    while str(vmid) in guests:
        vmid += 1
    return vmid


@routes("GET", "/cluster/tasks")
def cluster_tasks(call: Call) -> list[dict[str, Any]]:
    return [task_row(t) for t in reversed(call.state["tasks"]) if may_see(call, t)]


@routes("GET", "/cluster/options")
def cluster_options(call: Call) -> dict[str, Any]:
    return {"keyboard": "fr", "next-id": "lower=100", **call.state.get("cluster_options", {})}


@routes("PUT", "/cluster/options")
def cluster_options_put(call: Call) -> None:
    options = call.state.setdefault("cluster_options", {})
    for key in c.split_ids(call.p("delete")):
        options.pop(key, None)
    options.update({k: v for k, v in call.params.items() if k != "delete" and v is not None})


# --- HA, backup, replication -----------------------------------------------------------


@routes("GET", "/cluster/ha/groups")
def ha_groups(call: Call) -> None:
    raise ApiError(500, "ha groups have been migrated to rules")


@routes("GET", "/cluster/ha/status/current")
def empty_cluster_list(call: Call) -> list[Any]:
    return []
