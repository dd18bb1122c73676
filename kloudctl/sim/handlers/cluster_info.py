"""What the cluster says about itself: the corosync view (`/cluster/config/nodes`,
`totem`, `join`, `apiversion`, `qdevice`), the cluster log (the tasks of every node, as
pvedaemon logs them) and the firewall macros."""

from __future__ import annotations

from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes
from kloudctl.sim.state import config_digest

routes = Routes()

# A few of PVE's firewall macros (PVE::Firewall's $pve_fw_macros), the ones tenants use.
MACROS = {
    "DNS": "Domain Name System traffic (upd and tcp)",
    "HTTP": "Hypertext Transfer Protocol (WWW)",
    "HTTPS": "Hypertext Transfer Protocol (WWW) over SSL",
    "IMAPS": "Internet Message Access Protocol over SSL",
    "Ping": "ICMP echo request",
    "SMTP": "Simple Mail Transfer Protocol",
    "SSH": "Secure shell traffic",
    "Submission": "Mail message submission traffic",
    "NTP": "Network Time Protocol (ntpd)",
    "Wireguard": "Wireguard VPN traffic",
}


def _totem(call: Call) -> dict[str, Any]:
    return {
        "cluster_name": call.state["cluster"],
        "config_version": len(call.state["nodes"]),
        "interface": {"0": {"linknumber": "0"}},
        "ip_version": "ipv4-6",
        "link_mode": "passive",
        "secauth": "on",
        "version": "2",
    }


def _nodelist(call: Call) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "node": name,
            "nodeid": n["nodeid"],
            "quorum_votes": 1,
            "ring0_addr": n["ip"],
        }
        for name, n in call.state["nodes"].items()
    ]


@routes("GET", "/cluster/config/nodes")
def config_nodes(call: Call) -> list[dict[str, Any]]:
    return [
        {"node": e["node"], "nodeid": e["nodeid"], "quorum_votes": 1, "ring0_addr": e["ring0_addr"]}
        for e in _nodelist(call)
    ]


@routes("GET", "/cluster/config/totem")
def config_totem(call: Call) -> dict[str, Any]:
    return _totem(call)


@routes("GET", "/cluster/config/qdevice")
def config_qdevice(call: Call) -> dict[str, Any]:
    return {}  # no QDevice configured, as PVE answers then


@routes("GET", "/cluster/config/apiversion")
def config_apiversion(call: Call) -> int:
    return 1


@routes("GET", "/cluster/config/join")
def config_join(call: Call) -> dict[str, Any]:
    node = call.p("node") or next(iter(call.state["nodes"]))
    if node not in call.state["nodes"]:
        raise ApiError(500, f"unknown node '{node}'")
    fingerprint = call.cab.endpoint.fingerprint if call.cab.endpoint else "00" + ":00" * 31
    nodelist = [
        {
            "name": e["name"],
            "nodeid": e["nodeid"],
            "pve_addr": e["ring0_addr"],
            "pve_fp": fingerprint,
            "quorum_votes": 1,
            "ring0_addr": e["ring0_addr"],
        }
        for e in _nodelist(call)
    ]
    return {
        "config_digest": config_digest({"corosync": nodelist}),
        "nodelist": nodelist,
        "preferred_node": node,
        "totem": _totem(call),
    }


@routes("GET", "/cluster/log")
def cluster_log(call: Call) -> list[dict[str, Any]]:
    out = []
    for i, task in enumerate(call.state["tasks"]):
        out.append(
            {
                "uid": i + 1,
                "time": task["starttime"],
                "pri": 6,
                "tag": "pvedaemon",
                "pid": task["pid"],
                "node": task["node"],
                "user": task["user"],
                "msg": f"starting task {task['upid']}",
            }
        )
    out.reverse()  # newest first, as PVE lists it
    return out[: int(call.p("max") or 50)]


@routes("GET", "/cluster/firewall/macros")
def firewall_macros(call: Call) -> list[dict[str, str]]:
    return [{"macro": m, "descr": d} for m, d in sorted(MACROS.items())]
