"""A node's network configuration: interfaces (bridges, VLANs, bonds) changed as pending,
applied by `PUT /nodes/{node}/network` (ifreload) or reverted by its DELETE."""

from __future__ import annotations

from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes, bad_request

routes = Routes()

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


@routes("GET", "/nodes/{node}/network")
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


@routes("POST", "/nodes/{node}/network")
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


@routes("GET", "/nodes/{node}/network/{iface}")
def network_read(call: Call) -> dict[str, Any]:
    ifaces = _ifaces(call)
    iface = ifaces.get(call.p("iface"))
    if iface is None:
        raise ApiError(500, f"network interface '{call.p('iface')}' does not exist")
    return dict(iface)


@routes("PUT", "/nodes/{node}/network/{iface}")
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


@routes("DELETE", "/nodes/{node}/network/{iface}")
def network_delete(call: Call) -> None:
    ifaces = _ifaces(call)
    if ifaces.pop(call.p("iface"), None) is None:
        raise ApiError(500, f"network interface '{call.p('iface')}' does not exist")
    call.state["network_pending"][call.p("node")] = 1


@routes("PUT", "/nodes/{node}/network")
def network_reload(call: Call) -> str:
    ifaces = _ifaces(call)
    node = call.p("node")

    def done(task: dict[str, Any]) -> None:
        for iface in ifaces.values():
            iface.pop("pending", None)
            iface["active"] = 1
        call.state["network_pending"].pop(node, None)
        task["log"].append("ifreload -a")

    return call.cab.start_task(call.who, "srvreload", "networking", node, done)


@routes("DELETE", "/nodes/{node}/network")
def network_revert(call: Call) -> None:
    ifaces = _ifaces(call)
    for name in [n for n, i in ifaces.items() if i.get("pending") and not i.get("active")]:
        ifaces.pop(name)
    call.state["network_pending"].pop(call.p("node"), None)
