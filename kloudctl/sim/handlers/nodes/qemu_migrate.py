"""Migrating a QEMU guest between the nodes of the cabinet: the precondition check, and
the migration itself (offline, or online; local disks move with it)."""

from __future__ import annotations

from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes, bad_request
from kloudctl.sim.handlers import common as c

routes = Routes()
V = "/nodes/{node}/qemu/{vmid}"


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


@routes("GET", V + "/migrate")
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


@routes("POST", V + "/migrate")
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

    return call.cab.start_task(call.who, "qmigrate", str(g["vmid"]), source, done, lock=g["vmid"])
