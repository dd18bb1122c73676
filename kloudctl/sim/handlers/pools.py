"""Resource pools (`/pools`): guests and storages grouped so one ACL on `/pool/{poolid}`
covers them all."""

from __future__ import annotations

from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes
from kloudctl.sim.handlers import common as c

routes = Routes()


def _pool(call: Call, poolid: str) -> dict[str, Any]:
    pool = call.state["access"]["pools"].get(poolid)
    if pool is None:
        raise ApiError(500, f"pool '{poolid}' does not exist")
    return pool


def _pool_members(call: Call, poolid: str) -> list[dict[str, Any]]:
    pool = _pool(call, poolid)
    members = []
    for vmid in sorted(pool.get("vms", [])):
        g = call.state["guests"].get(str(vmid))
        if g is None:
            continue
        kind = c.guest_type(g)
        entry = {"id": f"{kind}/{vmid}", "type": kind, "node": g["node"], **c.live_status(call, g)}
        members.append(entry)
    for storage in sorted(pool.get("storage", [])):
        for node in call.state["nodes"]:
            members.append(
                {
                    "id": f"storage/{node}/{storage}",
                    "type": "storage",
                    "node": node,
                    "storage": storage,
                }
            )
    return members


@routes("GET", "/pools")
def list_pools(call: Call) -> list[dict[str, Any]]:
    out = []
    for poolid, pool in sorted(call.state["access"]["pools"].items()):
        if call.p("poolid") and call.p("poolid") != poolid:
            continue
        if not call.cab.acl.allowed(call.who, f"/pool/{poolid}", ["Pool.Audit"]):
            continue
        entry: dict[str, Any] = {"poolid": poolid}
        if pool.get("comment"):
            entry["comment"] = pool["comment"]
        if call.p("poolid"):
            entry["members"] = _pool_members(call, poolid)
        out.append(entry)
    return out


@routes("POST", "/pools")
def create_pool(call: Call) -> None:
    poolid = call.p("poolid")
    if poolid in call.state["access"]["pools"]:
        raise ApiError(500, f"pool '{poolid}' already exists")
    call.state["access"]["pools"][poolid] = {
        "comment": call.p("comment", ""),
        "vms": [],
        "storage": [],
    }


@routes("GET", "/pools/{poolid}")
def read_pool(call: Call) -> dict[str, Any]:
    pool = _pool(call, call.p("poolid"))
    out: dict[str, Any] = {"members": _pool_members(call, call.p("poolid"))}
    if call.p("type"):
        out["members"] = [m for m in out["members"] if m["type"] == call.p("type")]
    if pool.get("comment"):
        out["comment"] = pool["comment"]
    return out


@routes("PUT", "/pools/{poolid}", "/pools")
def update_pool(call: Call) -> None:
    poolid = call.p("poolid")
    pool = _pool(call, poolid)
    if call.p("comment") is not None:
        pool["comment"] = call.p("comment")
    delete = bool(call.p("delete"))
    for vmid_s in c.split_ids(call.p("vms")):
        vmid = int(vmid_s)
        call.cab.acl.check_perm_modify(call.who, f"/vms/{vmid}")
        if delete:
            if vmid in pool["vms"]:
                pool["vms"].remove(vmid)
            continue
        if str(vmid) not in call.state["guests"]:
            raise ApiError(500, f"VM {vmid} does not exist")
        current = c.pool_of(call, vmid)
        if current == poolid:
            continue
        if current and not call.p("allow-move"):
            raise ApiError(500, f"VM {vmid} is already a pool member")
        if current:
            call.state["access"]["pools"][current]["vms"].remove(vmid)
        pool["vms"].append(vmid)
    for storage in c.split_ids(call.p("storage")):
        call.cab.acl.check_perm_modify(call.who, f"/storage/{storage}")
        if delete:
            if storage in pool["storage"]:
                pool["storage"].remove(storage)
            continue
        if storage not in call.state["storages"]:
            raise ApiError(500, f"storage '{storage}' does not exist")
        if storage not in pool["storage"]:
            pool["storage"].append(storage)


@routes("DELETE", "/pools/{poolid}", "/pools")
def delete_pool(call: Call) -> None:
    poolid = call.p("poolid")
    pool = _pool(call, poolid)
    if pool.get("vms") or pool.get("storage"):
        raise ApiError(500, f"delete pool failed: pool '{poolid}' is not empty")
    call.state["access"]["pools"].pop(poolid)
    acl = call.state["access"]["acl"]
    acl[:] = [r for r in acl if r["path"] != f"/pool/{poolid}"]
