"""Cluster, nodes, storage, tasks, node network, SDN and version."""

from __future__ import annotations

import json
import time
from typing import Any

from kloudctl.sim import tasks as taskmod
from kloudctl.sim.api import ApiError, Call, Raw, api, bad_request
from kloudctl.sim.handlers import common as c
from kloudctl.sim.state import PVE_VERSION, GiB, MiB

BOOT = time.time()


@api("GET", "/version")
def version(call: Call) -> dict[str, Any]:
    return dict(PVE_VERSION)


@api("GET", "/nodes/{node}/version")
def node_version(call: Call) -> dict[str, Any]:
    call.cab.node(call.p("node"))
    return dict(PVE_VERSION)


# --- accounting ---------------------------------------------------------------------------


def node_usage(call: Call, node: str) -> dict[str, Any]:
    n = call.state["nodes"][node]
    running = [
        g for g in call.state["guests"].values() if g["node"] == node and g["status"] == "running"
    ]
    mem = 2 * GiB + sum(c.memory_bytes(g) for g in running)
    vcpus = sum(c.cpus(g) for g in running)
    disk_total = sum(d["size"] for d in n["disks"])
    disk_used = sum(
        v["size"]
        for k, vols in call.state["volumes"].items()
        if k.startswith(node + "/")
        for v in vols.values()
    )
    return {
        "cpu": round(min(1.0, 0.01 + vcpus * 0.05 / n["cores"]), 4),
        "maxcpu": n["cores"],
        "mem": min(mem, n["memory"]),
        "maxmem": n["memory"],
        "disk": 8 * GiB,
        "maxdisk": 100 * GiB,
        "disk_total": disk_total,
        "disk_used": disk_used,
        "uptime": int(time.time() - BOOT) + 86400,
        "vcpus": vcpus,
    }


def _storage_status(call: Call, node: str, storage: str) -> dict[str, Any]:
    st = call.state["storages"][storage]
    n = call.state["nodes"][node]
    disks = sorted(n["disks"], key=lambda d: -d["size"])
    total = int(disks[0]["size"] * (0.1 if st["type"] == "dir" else 0.85)) if disks else 0
    used = sum(v["size"] for v in call.state["volumes"].get(f"{node}/{storage}", {}).values())
    return {
        "storage": storage,
        "type": st["type"],
        "content": st["content"],
        "shared": st.get("shared", 0),
        "active": 1,
        "enabled": 1,
        "total": total,
        "used": used,
        "avail": max(0, total - used),
        "used_fraction": round(used / total, 6) if total else 0,
    }


# --- cluster ----------------------------------------------------------------------------------


@api("GET", "/cluster/resources")
def resources(call: Call) -> Raw:
    key = ("resources", call.who.authid, call.p("type"))
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
                "id": f"qemu/{g['vmid']}",
                "type": "qemu",
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
            entry["hastate"] = None
            entry.pop("hastate")
            out.append(entry)
    for node, n in call.state["nodes"].items():
        if kind in (None, "node") and (
            admin or acl.allowed(call.who, f"/nodes/{node}", ["Sys.Audit"])
        ):
            u = node_usage(call, node)
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
                s = _storage_status(call, node, storage)
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
    call.cab.cache[key] = answer.body
    return answer


@api("GET", "/cluster/status")
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


@api("GET", "/cluster/nextid")
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


@api("GET", "/cluster/tasks")
def cluster_tasks(call: Call) -> list[dict[str, Any]]:
    return [_task_row(t) for t in reversed(call.state["tasks"]) if _may_see(call, t)]


@api("GET", "/cluster/ha/groups")
def ha_groups(call: Call) -> None:
    raise ApiError(500, "ha groups have been migrated to rules")


@api("GET", "/cluster/ha/rules")
def ha_rules(call: Call) -> list[Any]:
    return []


@api("GET", "/cluster/options")
def cluster_options(call: Call) -> dict[str, Any]:
    return {"keyboard": "fr", "next-id": "lower=100"}


# --- nodes ------------------------------------------------------------------------------------


@api("GET", "/nodes")
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
            u = node_usage(call, name)
            entry.update(
                {k: u[k] for k in ("cpu", "maxcpu", "mem", "maxmem", "disk", "maxdisk", "uptime")}
            )
        out.append(entry)
    return out


@api("GET", "/nodes/{node}/status")
def node_status(call: Call) -> dict[str, Any]:
    node = call.p("node")
    n = call.cab.node(node)
    u = node_usage(call, node)
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


# --- storage ----------------------------------------------------------------------------------


@api("GET", "/storage")
def storage_config_list(call: Call) -> list[dict[str, Any]]:
    out = []
    for sid, st in sorted(call.state["storages"].items()):
        if call.p("type") and st["type"] != call.p("type"):
            continue
        if call.cab.acl.allowed(
            call.who, f"/storage/{sid}", ["Datastore.Audit", "Datastore.AllocateSpace"], any_=True
        ):
            out.append({"storage": sid, **st, "digest": c.digest_of({"config": st, "pending": {}})})
    return out


@api("POST", "/storage")
def storage_create(call: Call) -> dict[str, Any]:
    sid = call.p("storage")
    if sid in call.state["storages"]:
        raise ApiError(500, f"create storage failed: storage ID '{sid}' already defined")
    if call.p("type") not in ("dir", "lvmthin", "lvm", "nfs", "zfspool"):
        raise ApiError(501, f"storage type '{call.p('type')}' is not simulated by kloudctl sim")
    st = {k: v for k, v in call.params.items() if k not in ("storage",) and v is not None}
    st.setdefault("content", "images,rootdir" if st["type"] != "dir" else "iso,vztmpl,backup")
    st["shared"] = int(st.get("shared", 1 if st["type"] == "nfs" else 0))
    call.state["storages"][sid] = st
    return {"storage": sid, "type": st["type"]}


@api("GET", "/storage/{storage}")
def storage_read(call: Call) -> dict[str, Any]:
    st = call.state["storages"].get(call.p("storage"))
    if st is None:
        raise ApiError(500, f"storage '{call.p('storage')}' does not exist")
    return {
        "storage": call.p("storage"),
        **st,
        "digest": c.digest_of({"config": st, "pending": {}}),
    }


@api("PUT", "/storage/{storage}")
def storage_update(call: Call) -> dict[str, Any]:
    st = call.state["storages"].get(call.p("storage"))
    if st is None:
        raise ApiError(500, f"storage '{call.p('storage')}' does not exist")
    for k, v in call.params.items():
        if k not in ("storage", "delete", "digest"):
            st[k] = v
    for k in str(call.p("delete") or "").split(","):
        st.pop(k, None)
    return {"storage": call.p("storage"), "type": st["type"]}


@api("DELETE", "/storage/{storage}")
def storage_delete(call: Call) -> None:
    sid = call.p("storage")
    if call.state["storages"].pop(sid, None) is None:
        raise ApiError(500, f"storage '{sid}' does not exist")


@api("GET", "/nodes/{node}/storage")
def node_storage(call: Call) -> list[dict[str, Any]]:
    node = call.p("node")
    call.cab.node(node)
    out = []
    want = set(str(call.p("content") or "").split(",")) - {""}
    for sid in sorted(call.state["storages"]):
        if call.p("storage") and call.p("storage") != sid:
            continue
        if not call.cab.acl.allowed(
            call.who, f"/storage/{sid}", ["Datastore.Audit", "Datastore.AllocateSpace"], any_=True
        ):
            continue
        s = _storage_status(call, node, sid)
        if want and not want & set(s["content"].split(",")):
            continue
        out.append(s)
    return out


def _node_storage(call: Call) -> tuple[str, str]:
    node, sid = call.p("node"), call.p("storage")
    call.cab.node(node)
    if sid not in call.state["storages"]:
        raise ApiError(500, f"storage '{sid}' does not exist")
    return node, sid


@api("GET", "/nodes/{node}/storage/{storage}/status")
def node_storage_status(call: Call) -> dict[str, Any]:
    node, sid = _node_storage(call)
    s = _storage_status(call, node, sid)
    s.pop("storage")
    s.pop("used_fraction")
    return s


@api("GET", "/nodes/{node}/storage/{storage}/content")
def storage_content(call: Call) -> list[dict[str, Any]]:
    node, sid = _node_storage(call)
    out = []
    for volid, v in sorted(call.state["volumes"].get(f"{node}/{sid}", {}).items()):
        if call.p("content") and v["content"] != call.p("content"):
            continue
        if call.p("vmid") and v.get("vmid") != call.p("vmid"):
            continue
        if v.get("vmid") and not call.cab.acl.allowed(
            call.who, f"/storage/{sid}", ["Datastore.Audit", "Datastore.AllocateSpace"], any_=True
        ):
            continue
        entry = {
            "volid": volid,
            "size": v["size"],
            "format": v["format"],
            "content": v["content"],
            "ctime": v.get("ctime", 0),
        }
        if v.get("vmid"):
            entry["vmid"] = v["vmid"]
        if "/" in volid.split(":", 1)[1]:
            entry["parent"] = volid.split(":", 1)[1].split("/")[0]
        out.append(entry)
    return out


@api("POST", "/nodes/{node}/storage/{storage}/content")
def storage_alloc(call: Call) -> str:
    node, sid = _node_storage(call)
    vmid, name = call.p("vmid"), str(call.p("filename"))
    if not name.startswith(f"vm-{vmid}-"):
        raise bad_request("filename", f"illegal name '{name}' - should be 'vm-{vmid}-*'")
    volid = f"{sid}:{name}"
    vols = call.state["volumes"].setdefault(f"{node}/{sid}", {})
    if volid in vols:
        raise ApiError(500, f"volume '{volid}' already exists")
    size = c.parse_size(str(call.p("size")) + ("" if str(call.p("size"))[-1:].isalpha() else "K"))[
        1
    ]
    vols[volid] = {
        "size": size,
        "format": call.p("format") or "raw",
        "content": "images",
        "vmid": vmid,
        "ctime": int(time.time()),
    }
    return volid


def _volume(call: Call) -> tuple[dict[str, Any], str]:
    node, sid = _node_storage(call)
    vol = str(call.p("volume"))
    volid = vol if ":" in vol else f"{sid}:{vol}"
    vols = call.state["volumes"].get(f"{node}/{sid}", {})
    if volid not in vols:
        raise ApiError(500, f"volume '{volid}' does not exist")
    return vols, volid


@api("GET", "/nodes/{node}/storage/{storage}/content/{volume}")
def volume_info(call: Call) -> dict[str, Any]:
    vols, volid = _volume(call)
    v = vols[volid]
    return {
        "path": f"/dev/pve/{volid.split(':', 1)[1]}",
        "size": v["size"],
        "used": v["size"],
        "format": v["format"],
    }


@api("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}")
def volume_delete(call: Call) -> str:
    vols, volid = _volume(call)
    v = vols[volid]
    if v.get("vmid") and str(v["vmid"]) in call.state["guests"]:
        g = call.state["guests"][str(v["vmid"])]
        if volid in c.guest_volumes(g):
            raise ApiError(500, f"volume '{volid}' is in use by VM {v['vmid']}")

    def done(task: dict[str, Any]) -> None:
        vols.pop(volid, None)

    return call.cab.start_task(call, "imgdel", "", call.p("node"), done)


@api("POST", "/nodes/{node}/storage/{storage}/upload")
def upload(call: Call) -> str:
    node, sid = _node_storage(call)
    content = call.p("content")
    if content not in call.state["storages"][sid]["content"].split(","):
        raise ApiError(500, f"storage '{sid}' does not support '{content}' content")
    name = str(call.p("filename"))
    sub = {"iso": "iso", "vztmpl": "vztmpl", "import": "import"}[content]
    volid = f"{sid}:{sub}/{name}"
    size = call.cab.upload_size

    def done(task: dict[str, Any]) -> None:
        call.state["volumes"].setdefault(f"{node}/{sid}", {})[volid] = {
            "size": size,
            "format": name.rsplit(".", 1)[-1],
            "content": content,
            "ctime": int(time.time()),
        }

    return call.cab.start_task(call, "imgcopy", "", node, done)


# --- tasks ------------------------------------------------------------------------------------


def _may_see(call: Call, task: dict[str, Any]) -> bool:
    if task["user"] == call.who.authid or (
        task["user"].split("!")[0] == call.who.user and not call.who.token
    ):
        return True
    return call.cab.acl.allowed(call.who, f"/nodes/{task['node']}", ["Sys.Audit"])


def _task_row(task: dict[str, Any]) -> dict[str, Any]:
    row = {k: task[k] for k in ("upid", "node", "pid", "pstart", "starttime", "type", "id", "user")}
    if task["status"] == "stopped":
        row["status"] = task["exitstatus"]
        row["endtime"] = task.get("endtime", task["starttime"])
    return row


@api("GET", "/nodes/{node}/tasks")
def node_tasks(call: Call) -> list[dict[str, Any]]:
    node = call.p("node")
    call.cab.node(node)
    rows = []
    source = call.p("source") or "archive"
    for task in reversed(call.state["tasks"]):
        if task["node"] != node or not _may_see(call, task):
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
        rows.append(_task_row(task))
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
    if not _may_see(call, task):
        call.cab.acl.check(call.who, f"/nodes/{task['node']}", ["Sys.Audit"])
    return task


@api("GET", "/nodes/{node}/tasks/{upid}")
def task_index(call: Call) -> list[dict[str, str]]:
    _task(call)
    return [{"name": "log"}, {"name": "status"}]


@api("GET", "/nodes/{node}/tasks/{upid}/status")
def task_status(call: Call) -> dict[str, Any]:
    task = _task(call)
    if task["upid"] in call.cab.status_400:
        call.cab.status_400.discard(task["upid"])
        raise bad_request(
            "upid", "unable to open file '/var/log/pve/tasks/active' - task not yet registered"
        )
    return taskmod.public(task)


@api("GET", "/nodes/{node}/tasks/{upid}/log")
def task_log(call: Call) -> list[dict[str, Any]]:
    task = _task(call)
    lines = task["log"]
    start, limit = (
        int(call.p("start") or 0),
        int(call.p("limit") if call.p("limit") is not None else 50),
    )
    return [{"n": i + 1, "t": t} for i, t in enumerate(lines)][start : start + limit]


@api("DELETE", "/nodes/{node}/tasks/{upid}")
def task_stop(call: Call) -> None:
    task = _task(call)
    if task["status"] == "running":
        call.cab.stop_task(task["upid"])


# --- node network -----------------------------------------------------------------------------

_NET_KEYS = (
    "type",
    "address",
    "netmask",
    "cidr",
    "gateway",
    "bridge_ports",
    "bridge_vlan_aware",
    "bridge_vids",
    "autostart",
    "comments",
    "mtu",
    "vlan-id",
    "vlan-raw-device",
    "slaves",
    "bond_mode",
    "address6",
    "cidr6",
    "gateway6",
    "netmask6",
)


def _ifaces(call: Call) -> dict[str, Any]:
    node = call.p("node")
    call.cab.node(node)
    return call.state["network"].setdefault(node, {})


@api("GET", "/nodes/{node}/network")
def network_list(call: Call) -> list[dict[str, Any]]:
    ifaces = _ifaces(call)
    kind = call.p("type")
    out = []
    for _name, iface in sorted(ifaces.items()):
        if kind == "any_bridge" and iface["type"] not in ("bridge", "OVSBridge"):
            continue
        if kind and kind != "any_bridge" and kind != "any_local_bridge" and iface["type"] != kind:
            continue
        out.append(dict(iface))
    return out


def _iface_from_params(call: Call, iface: dict[str, Any]) -> None:
    for key in _NET_KEYS:
        if call.p(key) is not None:
            iface[key] = call.p(key)
    if call.p("cidr"):
        addr, _, mask = str(call.p("cidr")).partition("/")
        iface.update(address=addr, netmask=mask, method="static")
    elif call.p("address"):
        iface["method"] = "static"
        if iface.get("netmask"):
            iface["cidr"] = f"{iface['address']}/{iface['netmask']}"
    iface.setdefault("method", "manual")
    iface["families"] = ["inet"]
    iface["pending"] = 1


@api("POST", "/nodes/{node}/network")
def network_create(call: Call) -> None:
    ifaces = _ifaces(call)
    name = call.p("iface")
    if name in ifaces:
        raise ApiError(500, f"interface '{name}' already exists")
    kind = call.p("type")
    if kind == "vlan" and "." not in name and not call.p("vlan-raw-device"):
        raise bad_request("vlan-raw-device", "vlan-raw-device is missing")
    for port in str(call.p("bridge_ports") or "").split():
        if port not in ifaces:
            raise bad_request("bridge_ports", f"unable to find bridge port '{port}'")
    iface: dict[str, Any] = {"iface": name, "active": 0}
    _iface_from_params(call, iface)
    ifaces[name] = iface
    call.state["network_pending"][call.p("node")] = 1


@api("GET", "/nodes/{node}/network/{iface}")
def network_read(call: Call) -> dict[str, Any]:
    ifaces = _ifaces(call)
    iface = ifaces.get(call.p("iface"))
    if iface is None:
        raise ApiError(500, f"network interface '{call.p('iface')}' does not exist")
    return dict(iface)


@api("PUT", "/nodes/{node}/network/{iface}")
def network_update(call: Call) -> None:
    ifaces = _ifaces(call)
    iface = ifaces.get(call.p("iface"))
    if iface is None:
        raise ApiError(500, f"network interface '{call.p('iface')}' does not exist")
    if call.p("type") != iface["type"]:
        raise bad_request(
            "type", f"interface type '{call.p('type')}' differs from '{iface['type']}'"
        )
    _iface_from_params(call, iface)
    for key in str(call.p("delete") or "").split(","):
        iface.pop(key, None)
    call.state["network_pending"][call.p("node")] = 1


@api("DELETE", "/nodes/{node}/network/{iface}")
def network_delete(call: Call) -> None:
    ifaces = _ifaces(call)
    if ifaces.pop(call.p("iface"), None) is None:
        raise ApiError(500, f"network interface '{call.p('iface')}' does not exist")
    call.state["network_pending"][call.p("node")] = 1


@api("PUT", "/nodes/{node}/network")
def network_reload(call: Call) -> str:
    ifaces = _ifaces(call)
    node = call.p("node")

    def done(task: dict[str, Any]) -> None:
        for iface in ifaces.values():
            iface.pop("pending", None)
            iface["active"] = 1
        call.state["network_pending"].pop(node, None)
        task["log"].append("ifreload -a")

    return call.cab.start_task(call, "srvreload", "networking", node, done)


@api("DELETE", "/nodes/{node}/network")
def network_revert(call: Call) -> None:
    ifaces = _ifaces(call)
    for name in [n for n, i in ifaces.items() if i.get("pending") and not i.get("active")]:
        ifaces.pop(name)
    call.state["network_pending"].pop(call.p("node"), None)


# --- SDN ----------------------------------------------------------------------------------------


def _sdn(call: Call) -> dict[str, Any]:
    return call.state["sdn"]


@api("PUT", "/cluster/sdn")
def sdn_apply(call: Call) -> str:
    node = next(iter(call.state["nodes"]))

    def done(task: dict[str, Any]) -> None:
        for kind in ("zones", "vnets", "subnets"):
            for obj in _sdn(call)[kind].values():
                obj.pop("state", None)

    return call.cab.start_task(call, "reloadnetworkall", "", node, done)


def _sdn_list(call: Call, kind: str, path_of: Any) -> list[dict[str, Any]]:
    out = []
    for oid, obj in sorted(_sdn(call)[kind].items()):
        if call.cab.acl.allowed(
            call.who, path_of(oid, obj), ["SDN.Audit", "SDN.Allocate"], any_=True
        ):
            entry = dict(obj)
            if not call.p("pending"):
                entry.pop("state", None)
            out.append(entry)
    return out


@api("GET", "/cluster/sdn/zones")
def zones(call: Call) -> list[dict[str, Any]]:
    rows = _sdn_list(call, "zones", lambda oid, o: f"/sdn/zones/{oid}")
    return [r for r in rows if not call.p("type") or r["type"] == call.p("type")]


@api("POST", "/cluster/sdn/zones")
def zone_create(call: Call) -> None:
    zid = call.p("zone")
    if zid in _sdn(call)["zones"]:
        raise ApiError(500, f"sdn zone object ID '{zid}' already defined")
    if call.p("type") == "vlan" and not call.p("bridge"):
        raise bad_request("bridge", "property is missing and it is not optional")
    zone = {k: v for k, v in call.params.items() if k != "lock-token"}
    zone["state"] = "new"
    _sdn(call)["zones"][zid] = zone


def _get(call: Call, kind: str, key: str, what: str) -> dict[str, Any]:
    obj = _sdn(call)[kind].get(key)
    if obj is None:
        raise ApiError(500, f"sdn {what} '{key}' does not exist")
    return obj


@api("GET", "/cluster/sdn/zones/{zone}")
def zone_read(call: Call) -> dict[str, Any]:
    return dict(
        _get(call, "zones", call.p("zone"), "zone"),
        digest=c.digest_of({"config": _get(call, "zones", call.p("zone"), "zone"), "pending": {}}),
    )


def _update(call: Call, kind: str) -> None:
    """PUT on an SDN zone or vnet: the given properties change; pending until applied."""
    obj = _get(call, f"{kind}s", call.p(kind), kind)
    skip = (kind, "delete", "digest", "lock-token")
    obj.update({k: v for k, v in call.params.items() if k not in skip})
    obj["state"] = "changed"


def _delete_unused(call: Call, kind: str, users: str, why: str) -> None:
    """DELETE of an SDN zone or vnet, refused while objects of `users` refer to it."""
    _get(call, f"{kind}s", call.p(kind), kind)
    if any(u[kind] == call.p(kind) for u in _sdn(call)[users].values()):
        raise ApiError(500, f"Can't delete {kind} '{call.p(kind)}': {why}")
    _sdn(call)[f"{kind}s"].pop(call.p(kind))


@api("PUT", "/cluster/sdn/zones/{zone}")
def zone_update(call: Call) -> None:
    _update(call, "zone")


@api("DELETE", "/cluster/sdn/zones/{zone}")
def zone_delete(call: Call) -> None:
    _delete_unused(call, "zone", "vnets", "it is used by a vnet")


@api("GET", "/cluster/sdn/vnets")
def vnets(call: Call) -> list[dict[str, Any]]:
    return _sdn_list(call, "vnets", lambda oid, o: f"/sdn/zones/{o['zone']}/{oid}")


@api("POST", "/cluster/sdn/vnets")
def vnet_create(call: Call) -> None:
    vid, zone = call.p("vnet"), call.p("zone")
    if vid in _sdn(call)["vnets"]:
        raise ApiError(500, f"sdn vnet object ID '{vid}' already defined")
    z = _get(call, "zones", zone, "zone")
    if z["type"] in ("vlan", "qinq", "vxlan") and call.p("tag") is None:
        raise bad_request("tag", "missing vlan tag")
    for other in _sdn(call)["vnets"].values():
        if (
            other["zone"] == zone
            and call.p("tag") is not None
            and other.get("tag") == call.p("tag")
        ):
            raise bad_request("tag", f"tag {call.p('tag')} already exists in vnet {other['vnet']}")
    vnet = {k: v for k, v in call.params.items() if k != "lock-token"}
    vnet["type"] = "vnet"
    vnet["state"] = "new"
    _sdn(call)["vnets"][vid] = vnet


@api("GET", "/cluster/sdn/vnets/{vnet}")
def vnet_read(call: Call) -> dict[str, Any]:
    vnet = _get(call, "vnets", call.p("vnet"), "vnet")
    return {k: v for k, v in vnet.items() if k != "state"}


@api("PUT", "/cluster/sdn/vnets/{vnet}")
def vnet_update(call: Call) -> None:
    _update(call, "vnet")


@api("DELETE", "/cluster/sdn/vnets/{vnet}")
def vnet_delete(call: Call) -> None:
    _delete_unused(call, "vnet", "subnets", "it has subnets")


@api("GET", "/cluster/sdn/vnets/{vnet}/subnets")
def subnets(call: Call) -> list[dict[str, Any]]:
    vnet = _get(call, "vnets", call.p("vnet"), "vnet")
    rows = _sdn_list(call, "subnets", lambda oid, o: f"/sdn/zones/{vnet['zone']}/{o['vnet']}")
    return [r for r in rows if r["vnet"] == call.p("vnet")]


@api("POST", "/cluster/sdn/vnets/{vnet}/subnets")
def subnet_create(call: Call) -> None:
    vnet = _get(call, "vnets", call.p("vnet"), "vnet")
    call.cab.acl.check(call.who, f"/sdn/zones/{vnet['zone']}/{call.p('vnet')}", ["SDN.Allocate"])
    cidr = str(call.p("subnet"))
    if "/" not in cidr:
        raise bad_request("subnet", f"invalid subnet '{cidr}'")
    sid = f"{vnet['zone']}-{cidr.replace('/', '-')}"
    if sid in _sdn(call)["subnets"]:
        raise ApiError(500, f"sdn subnet object ID '{sid}' already defined")
    sub = {k: v for k, v in call.params.items() if k != "lock-token"}
    sub.update(
        subnet=sid,
        cidr=cidr,
        network=cidr.split("/")[0],
        mask=cidr.split("/")[1],
        zone=vnet["zone"],
        state="new",
    )
    sub["type"] = "subnet"
    _sdn(call)["subnets"][sid] = sub


def _subnet(call: Call) -> dict[str, Any]:
    vnet = _get(call, "vnets", call.p("vnet"), "vnet")
    call.cab.acl.check(
        call.who,
        f"/sdn/zones/{vnet['zone']}/{call.p('vnet')}",
        ["SDN.Audit", "SDN.Allocate"],
        any_=True,
    )
    sub = _get(call, "subnets", call.p("subnet"), "subnet")
    if sub["vnet"] != call.p("vnet"):
        raise ApiError(500, f"sdn subnet '{call.p('subnet')}' does not exist")
    return sub


@api("GET", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}")
def subnet_read(call: Call) -> dict[str, Any]:
    return {k: v for k, v in _subnet(call).items() if k != "state"}


@api("PUT", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}")
def subnet_update(call: Call) -> None:
    sub = _subnet(call)
    call.cab.acl.check(call.who, f"/sdn/zones/{sub['zone']}/{call.p('vnet')}", ["SDN.Allocate"])
    sub.update(
        {
            k: v
            for k, v in call.params.items()
            if k not in ("vnet", "subnet", "delete", "digest", "lock-token")
        }
    )


@api("DELETE", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}")
def subnet_delete(call: Call) -> None:
    sub = _subnet(call)
    call.cab.acl.check(call.who, f"/sdn/zones/{sub['zone']}/{call.p('vnet')}", ["SDN.Allocate"])
    _sdn(call)["subnets"].pop(call.p("subnet"))


_ = MiB
