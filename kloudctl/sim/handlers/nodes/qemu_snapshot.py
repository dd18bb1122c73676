"""Snapshots, migration, guest agent addresses, unlink, and the read-only lists that are
empty on a cabinet without LXC, HA, replication or backup jobs."""

from __future__ import annotations

import copy
import time
from typing import Any

from kloudctl.sim.api import ApiError, Call, api, bad_request
from kloudctl.sim.handlers import common as c

V = "/nodes/{node}/qemu/{vmid}"


@api("GET", "/nodes/{node}/lxc")
def lxc_list(call: Call) -> list[Any]:
    call.cab.node(call.p("node"))
    return []  # the simulator runs no containers


@api(
    "GET",
    "/cluster/ha/resources",
    "/cluster/ha/status/current",
    "/cluster/backup",
    "/cluster/replication",
)
def empty_cluster_list(call: Call) -> list[Any]:
    return []


@api("GET", "/nodes/{node}/replication")
def node_replication(call: Call) -> list[Any]:
    call.cab.node(call.p("node"))
    return []


@api("GET", "/nodes/{node}/dns")
def node_dns(call: Call) -> dict[str, Any]:
    call.cab.node(call.p("node"))
    return {"search": f"{call.state['name']}.lan", "dns1": "10.0.0.254"}


@api("GET", "/nodes/{node}/time")
def node_time(call: Call) -> dict[str, Any]:
    call.cab.node(call.p("node"))
    now = int(time.time())
    return {"timezone": "Europe/Paris", "time": now, "localtime": now + 3600}


@api("GET", "/access/domains/{realm}")
def domain(call: Call) -> dict[str, Any]:
    realm = call.state["access"]["domains"].get(call.p("realm"))
    if realm is None:
        raise ApiError(500, f"domain '{call.p('realm')}' does not exist")
    return dict(realm, digest=c.digest_of({"config": realm, "pending": {}}))


# --- snapshots ------------------------------------------------------------------------------


def _snaps(g: dict[str, Any]) -> dict[str, Any]:
    return g.setdefault("snapshots", {})


def _snap(call: Call) -> tuple[dict[str, Any], dict[str, Any]]:
    g = c.guest(call)
    snap = _snaps(g).get(call.p("snapname"))
    if snap is None:
        raise ApiError(500, f"snapshot '{call.p('snapname')}' does not exist")
    return g, snap


@api("GET", V + "/snapshot")
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


@api("POST", V + "/snapshot")
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

    return call.cab.start_task(call, "qmsnapshot", str(g["vmid"]), g["node"], done, lock=g["vmid"])


@api("GET", V + "/snapshot/{snapname}")
def snapshot_index(call: Call) -> list[dict[str, str]]:
    _snap(call)
    return [{"cmd": "rollback"}, {"cmd": "config"}]


@api("DELETE", V + "/snapshot/{snapname}")
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
        call, "qmdelsnapshot", str(g["vmid"]), g["node"], done, lock=g["vmid"]
    )


@api("GET", V + "/snapshot/{snapname}/config")
def snapshot_config(call: Call) -> dict[str, Any]:
    snap = _snap(call)[1]
    return {**snap["config"], "snaptime": snap["snaptime"], "description": snap["description"]}


@api("PUT", V + "/snapshot/{snapname}/config")
def snapshot_config_put(call: Call) -> None:
    snap = _snap(call)[1]
    if call.p("description") is not None:
        snap["description"] = call.p("description")


@api("POST", V + "/snapshot/{snapname}/rollback")
def snapshot_rollback(call: Call) -> str:
    g, snap = _snap(call)
    c.check_config_lock(g)

    def done(task: dict[str, Any]) -> None:
        g["config"] = copy.deepcopy(snap["config"])
        g["pending"].clear()
        g["parent_snapshot"] = call.p("snapname")
        g["status"], g["started"] = ("running", time.time()) if call.p("start") else ("stopped", 0)

    return call.cab.start_task(call, "qmrollback", str(g["vmid"]), g["node"], done, lock=g["vmid"])


# --- migration ------------------------------------------------------------------------------


def _local_disks(call: Call, g: dict[str, Any]) -> list[dict[str, Any]]:
    disks = []
    for key, value in g["config"].items():
        if not c.DISK_KEYS.match(key):
            continue
        vol, opts = c.disk_volume(str(value))
        storage = vol.split(":", 1)[0]
        if ":" not in vol or call.state["storages"].get(storage, {}).get("shared"):
            continue
        size = c.parse_size(opts["size"])[1] if "size" in opts else 0
        disks.append(
            {
                "volid": vol,
                "size": size,
                "cdrom": int(opts.get("media") == "cdrom"),
                "is_unused": int(key.startswith("unused")),
            }
        )
    return disks


@api("GET", V + "/migrate")
def migrate_precondition(call: Call) -> dict[str, Any]:
    g = c.guest(call)
    others = [n for n, d in call.state["nodes"].items() if n != g["node"] and d["online"]]
    return {
        "running": int(g["status"] == "running"),
        "allowed_nodes": others,
        "local_disks": _local_disks(call, g),
        "local_resources": [],
        "mapped-resources": [],
        "mapped-resource-info": {},
        "has-dbus-vmstate": 0,
    }


@api("POST", V + "/migrate")
def migrate(call: Call) -> str:
    g = c.guest(call)
    c.check_config_lock(g)
    target = call.p("target")
    tnode = call.cab.node(target)
    if target == g["node"]:
        raise bad_request("target", "target is local node.")
    if not tnode["online"]:
        raise ApiError(500, f"target node '{target}' is not online")
    if g["status"] == "running" and not call.p("online"):
        raise ApiError(500, "can't migrate running VM without --online")
    if _local_disks(call, g) and not call.p("with-local-disks"):
        raise ApiError(500, "can't migrate VM with local disks without --with-local-disks")
    source = g["node"]

    def done(task: dict[str, Any]) -> None:
        for vol in c.guest_volumes(g):
            storage = vol.split(":", 1)[0]
            src = call.state["volumes"].get(f"{source}/{storage}", {})
            if vol in src:
                call.state["volumes"].setdefault(f"{target}/{storage}", {})[vol] = src.pop(vol)
        g["node"] = target
        task["log"].append(f"migration finished successfully ({source} -> {target})")

    return call.cab.start_task(call, "qmigrate", str(g["vmid"]), source, done, lock=g["vmid"])


# --- guest agent, unlink ----------------------------------------------------------------------


@api("GET", V + "/agent/network-get-interfaces")
def agent_interfaces(call: Call) -> dict[str, Any]:
    g = c.guest(call)
    if g["status"] != "running":
        raise ApiError(500, f"VM {g['vmid']} is not running")
    if not str(g["config"].get("agent", "0")).split(",")[0].endswith("1"):
        raise ApiError(500, "No QEMU guest agent configured")
    loopback = {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}
    result = [{"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [loopback]}]
    for key in sorted(k for k in g["config"] if c.NET_KEY.match(k)):
        idx = key[3:]
        mac = str(g["config"][key]).split(",")[0].split("=")[-1]
        ipcfg = dict(
            p.split("=", 1)
            for p in str(g["config"].get(f"ipconfig{idx}", "")).split(",")
            if "=" in p
        )
        addrs = []
        if ipcfg.get("ip") and ipcfg["ip"] != "dhcp":
            ip, _, prefix = ipcfg["ip"].partition("/")
            addrs.append({"ip-address": ip, "ip-address-type": "ipv4", "prefix": int(prefix or 24)})
        result.append({"name": f"eth{idx}", "hardware-address": mac.lower(), "ip-addresses": addrs})
    return {"result": result}


@api("PUT", V + "/unlink")
def unlink(call: Call) -> None:
    g = c.guest(call)
    c.check_config_lock(g)
    for key in str(call.p("idlist")).replace(";", ",").split(","):
        value = g["config"].pop(key, None)
        if value is None:
            continue
        vol, _ = c.disk_volume(str(value))
        if call.p("force") or key.startswith("unused"):
            storage = vol.split(":", 1)[0]
            call.state["volumes"].get(f"{g['node']}/{storage}", {}).pop(vol, None)
        else:
            n = 0
            while f"unused{n}" in g["config"]:
                n += 1
            g["config"][f"unused{n}"] = vol
