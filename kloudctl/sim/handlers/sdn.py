"""Software-defined networking: zones, vnets and subnets, pending until `PUT /cluster/sdn`
applies them; the global SDN lock of PVE 9 (`/cluster/sdn/lock`): while it is held, every
change must carry its `lock-token` (PVE::Network::SDN::lock_sdn_config)."""

from __future__ import annotations

import uuid
from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes, bad_request
from kloudctl.sim.handlers import common as c

routes = Routes()


def _sdn(call: Call) -> dict[str, Any]:
    return call.state["sdn"]


def _check_lock(call: Call) -> None:
    """A change while the global lock is held must carry its token."""
    held = _sdn(call).get("lock")
    if held is not None and call.p("lock-token") != held:
        raise ApiError(500, "invalid lock token provided!")


def _pending(call: Call) -> bool:
    return any(
        o.get("state") for k in ("zones", "vnets", "subnets") for o in _sdn(call)[k].values()
    )


@routes("POST", "/cluster/sdn/lock")
def sdn_lock(call: Call) -> str:
    if _sdn(call).get("lock") is not None:
        raise ApiError(500, "global lock already exists")
    if _pending(call) and not call.p("allow-pending"):
        raise ApiError(500, "cannot acquire lock, there are pending changes")
    token = str(uuid.uuid4())
    _sdn(call)["lock"] = token
    return token


@routes("DELETE", "/cluster/sdn/lock")
def sdn_unlock(call: Call) -> None:
    if not call.p("force"):
        _check_lock(call)
    _sdn(call).pop("lock", None)


@routes("POST", "/cluster/sdn/rollback")
def sdn_rollback(call: Call) -> None:
    """Pending changes are dropped: objects created since the last apply go (the simulator
    keeps no copy of the running configuration, so changed objects keep their values)."""
    _check_lock(call)
    for kind in ("zones", "vnets", "subnets"):
        objs = _sdn(call)[kind]
        for oid, obj in list(objs.items()):
            if obj.get("state") == "new":
                objs.pop(oid)
            else:
                obj.pop("state", None)
    if call.p("release-lock"):
        _sdn(call).pop("lock", None)


@routes("PUT", "/cluster/sdn")
def sdn_apply(call: Call) -> str:
    _check_lock(call)
    node = next(iter(call.state["nodes"]))
    if call.p("release-lock"):
        _sdn(call).pop("lock", None)

    def done(task: dict[str, Any]) -> None:
        for kind in ("zones", "vnets", "subnets"):
            for obj in _sdn(call)[kind].values():
                obj.pop("state", None)

    return call.cab.start_task(call.who, "reloadnetworkall", "", node, done)


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


def _get(call: Call, kind: str, key: str, what: str) -> dict[str, Any]:
    obj = _sdn(call)[kind].get(key)
    if obj is None:
        raise ApiError(500, f"sdn {what} '{key}' does not exist")
    return obj


def _update(call: Call, kind: str) -> None:
    """PUT on an SDN zone or vnet: the given properties change; pending until applied."""
    _check_lock(call)
    obj = _get(call, f"{kind}s", call.p(kind), kind)
    skip = (kind, "delete", "digest", "lock-token")
    obj.update({k: v for k, v in call.params.items() if k not in skip})
    obj["state"] = "changed"


def _delete_unused(call: Call, kind: str, users: str, why: str) -> None:
    """DELETE of an SDN zone or vnet, refused while objects of `users` refer to it."""
    _check_lock(call)
    _get(call, f"{kind}s", call.p(kind), kind)
    if any(u[kind] == call.p(kind) for u in _sdn(call)[users].values()):
        raise ApiError(500, f"Can't delete {kind} '{call.p(kind)}': {why}")
    _sdn(call)[f"{kind}s"].pop(call.p(kind))


# --- zones -------------------------------------------------------------------------------


@routes("GET", "/cluster/sdn/zones")
def zones(call: Call) -> list[dict[str, Any]]:
    rows = _sdn_list(call, "zones", lambda oid, o: f"/sdn/zones/{oid}")
    return [r for r in rows if not call.p("type") or r["type"] == call.p("type")]


@routes("POST", "/cluster/sdn/zones")
def zone_create(call: Call) -> None:
    _check_lock(call)
    zid = call.p("zone")
    if zid in _sdn(call)["zones"]:
        raise ApiError(500, f"sdn zone object ID '{zid}' already defined")
    if call.p("type") == "vlan" and not call.p("bridge"):
        raise bad_request("bridge", "property is missing and it is not optional")
    zone = {k: v for k, v in call.params.items() if k != "lock-token"}
    zone["state"] = "new"
    _sdn(call)["zones"][zid] = zone


@routes("GET", "/cluster/sdn/zones/{zone}")
def zone_read(call: Call) -> dict[str, Any]:
    return dict(
        _get(call, "zones", call.p("zone"), "zone"),
        digest=c.digest_of({"config": _get(call, "zones", call.p("zone"), "zone"), "pending": {}}),
    )


@routes("PUT", "/cluster/sdn/zones/{zone}")
def zone_update(call: Call) -> None:
    _update(call, "zone")


@routes("DELETE", "/cluster/sdn/zones/{zone}")
def zone_delete(call: Call) -> None:
    _delete_unused(call, "zone", "vnets", "it is used by a vnet")


# --- vnets -------------------------------------------------------------------------------


@routes("GET", "/cluster/sdn/vnets")
def vnets(call: Call) -> list[dict[str, Any]]:
    return _sdn_list(call, "vnets", lambda oid, o: f"/sdn/zones/{o['zone']}/{oid}")


@routes("POST", "/cluster/sdn/vnets")
def vnet_create(call: Call) -> None:
    _check_lock(call)
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


@routes("GET", "/cluster/sdn/vnets/{vnet}")
def vnet_read(call: Call) -> dict[str, Any]:
    vnet = _get(call, "vnets", call.p("vnet"), "vnet")
    return {k: v for k, v in vnet.items() if k != "state"}


@routes("PUT", "/cluster/sdn/vnets/{vnet}")
def vnet_update(call: Call) -> None:
    _update(call, "vnet")


@routes("DELETE", "/cluster/sdn/vnets/{vnet}")
def vnet_delete(call: Call) -> None:
    _delete_unused(call, "vnet", "subnets", "it has subnets")


# --- subnets -----------------------------------------------------------------------------


@routes("GET", "/cluster/sdn/vnets/{vnet}/subnets")
def subnets(call: Call) -> list[dict[str, Any]]:
    vnet = _get(call, "vnets", call.p("vnet"), "vnet")
    rows = _sdn_list(call, "subnets", lambda oid, o: f"/sdn/zones/{vnet['zone']}/{o['vnet']}")
    return [r for r in rows if r["vnet"] == call.p("vnet")]


@routes("POST", "/cluster/sdn/vnets/{vnet}/subnets")
def subnet_create(call: Call) -> None:
    _check_lock(call)
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
        id=sid,
        subnet=sid,
        cidr=cidr,
        network=cidr.split("/")[0],
        mask=cidr.split("/")[1],
        zone=vnet["zone"],
        state="new",
    )
    sub["type"] = "subnet"
    sub.setdefault("dhcp-range", [])  # PVE lists it, empty, on every subnet
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


@routes("GET", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}")
def subnet_read(call: Call) -> dict[str, Any]:
    return {k: v for k, v in _subnet(call).items() if k != "state"}


@routes("PUT", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}")
def subnet_update(call: Call) -> None:
    _check_lock(call)
    sub = _subnet(call)
    call.cab.acl.check(call.who, f"/sdn/zones/{sub['zone']}/{call.p('vnet')}", ["SDN.Allocate"])
    sub.update(
        {
            k: v
            for k, v in call.params.items()
            if k not in ("vnet", "subnet", "delete", "digest", "lock-token")
        }
    )


@routes("DELETE", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}")
def subnet_delete(call: Call) -> None:
    _check_lock(call)
    sub = _subnet(call)
    call.cab.acl.check(call.who, f"/sdn/zones/{sub['zone']}/{call.p('vnet')}", ["SDN.Allocate"])
    _sdn(call)["subnets"].pop(call.p("subnet"))


# --- IPAM ----------------------------------------------------------------------------------


@routes("GET", "/cluster/sdn/ipams")
def ipams(call: Call) -> list[dict[str, Any]]:
    """PVE's own IPAM, `pve`, always exists (the simulator has no other)."""
    if call.p("type") not in (None, "pve"):
        return []
    allowed = call.cab.acl.allowed(
        call.who, "/sdn/ipams/pve", ["SDN.Audit", "SDN.Allocate"], any_=True
    )
    return [{"ipam": "pve", "type": "pve"}] if allowed else []


@routes("GET", "/cluster/sdn/ipams/{ipam}/status")
def ipam_status(call: Call) -> list[dict[str, Any]]:
    """The addresses the IPAM holds: each applied subnet's gateway."""
    if call.p("ipam") != "pve":
        raise ApiError(500, f"sdn ipam '{call.p('ipam')}' does not exist")
    out = []
    for sub in sorted(_sdn(call)["subnets"].values(), key=lambda s: s["subnet"]):
        if sub.get("state") == "new" or not sub.get("gateway"):
            continue
        if not call.cab.acl.allowed(
            call.who,
            f"/sdn/zones/{sub['zone']}/{sub['vnet']}",
            ["SDN.Audit", "SDN.Allocate"],
            any_=True,
        ):
            continue
        out.append(
            {
                "zone": sub["zone"],
                "vnet": sub["vnet"],
                "subnet": sub["cidr"],
                "ip": sub["gateway"],
                "gateway": 1,
            }
        )
    return out
