"""A node's own system, as far as a cabinet's tooling reads or sets it: DNS, time zone,
`/etc/hosts`, node config, services, syslog and journal (the node's task lines),
network connections of running guests, the subscription, the system report, LVM and
disk scans, QEMU capabilities, start/stop of all guests. Settings live in the state
under `node_settings/<node>`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes
from kloudctl.sim.handlers import common as c
from kloudctl.sim.state import config_digest

routes = Routes()
N = "/nodes/{node}"

# The services PVE manages: the schema's enum of `{service}`; these are their descriptions.
SERVICES = {
    "chrony": "chrony, an NTP client/server",
    "corosync": "Corosync Cluster Engine",
    "cron": "Regular background program processing daemon",
    "ksmtuned": "Kernel Samepage Merging (KSM) Tuning Daemon",
    "lxcfs": "FUSE filesystem for LXC",
    "postfix": "Postfix Mail Transport Agent (instance -)",
    "proxmox-firewall": "Proxmox nftables firewall",
    "pve-cluster": "The Proxmox VE cluster filesystem",
    "pve-firewall": "Proxmox VE firewall",
    "pve-ha-crm": "PVE Cluster HA Resource Manager Daemon",
    "pve-ha-lrm": "PVE Local HA Resource Manager Daemon",
    "pve-lxc-syscalld": "Proxmox VE LXC Syscall Daemon",
    "pvedaemon": "PVE API Daemon",
    "pvefw-logger": "Proxmox VE firewall logger",
    "pveproxy": "PVE API Proxy Server",
    "pvescheduler": "Proxmox VE scheduler",
    "pvestatd": "PVE Status Daemon",
    "qmeventd": "PVE Qemu Event Daemon",
    "spiceproxy": "PVE SPICE Proxy Server",
    "sshd": "OpenBSD Secure Shell server",
    "syslog": "System Logging Service",
    "systemd-journald": "Journal Service",
    "systemd-timesyncd": "Network Time Synchronization",
}


def _settings(call: Call) -> dict[str, Any]:
    node = call.p("node")
    n = call.cab.node(node)
    every: dict[str, Any] = call.state.setdefault("node_settings", {})
    settings: dict[str, Any] = every.setdefault(
        node,
        {
            "dns": {"search": f"{call.state['name']}.lan", "dns1": "10.0.0.254"},
            "timezone": "Europe/Paris",
            "hosts": f"127.0.0.1 localhost.localdomain localhost\n{n['ip']} {node}.lan {node}\n",
            "config": {},
            "stopped_services": [],
        },
    )
    return settings


@routes("GET", N + "/dns")
def dns(call: Call) -> dict[str, Any]:
    return dict(_settings(call)["dns"])


@routes("PUT", N + "/dns")
def dns_put(call: Call) -> None:
    current = _settings(call)["dns"]
    current.clear()
    current.update({k: call.p(k) for k in ("search", "dns1", "dns2", "dns3") if call.p(k)})


@routes("GET", N + "/time")
def node_time(call: Call) -> dict[str, Any]:
    zone = _settings(call)["timezone"]
    now = int(time.time())
    offset = 3600 if zone == "Europe/Paris" else 0  # the simulator knows one zone's offset
    return {"timezone": zone, "time": now, "localtime": now + offset}


@routes("PUT", N + "/time")
def time_put(call: Call) -> None:
    _settings(call)["timezone"] = call.p("timezone")


@routes("GET", N + "/hosts")
def hosts(call: Call) -> dict[str, Any]:
    text = _settings(call)["hosts"]
    return {"data": text, "digest": config_digest({"hosts": text})}


@routes("POST", N + "/hosts")
def hosts_put(call: Call) -> None:
    settings = _settings(call)
    c.check_digest(call, config_digest({"hosts": settings["hosts"]}))
    settings["hosts"] = str(call.p("data"))


@routes("GET", N + "/config")
def node_config(call: Call) -> dict[str, Any]:
    config = dict(_settings(call)["config"])
    config["digest"] = config_digest({"node": config})
    if call.p("property") and call.p("property") != "all":
        return {k: v for k, v in config.items() if k in (call.p("property"), "digest")}
    return config


@routes("PUT", N + "/config")
def node_config_put(call: Call) -> None:
    config = _settings(call)["config"]
    c.check_digest(call, config_digest({"node": config}))
    for key in c.split_ids(call.p("delete")):
        config.pop(key, None)
    for key, value in call.params.items():
        if key not in ("node", "delete", "digest") and value is not None:
            config[key] = value


# --- services -------------------------------------------------------------------------------


def _service(call: Call, name: str) -> dict[str, Any]:
    # `name` is one of the schema's enum (checked before the handler runs)
    running = name not in _settings(call)["stopped_services"]
    return {
        "service": name,
        "name": name,
        "desc": SERVICES[name],
        "state": "running" if running else "dead",
        "active-state": "active" if running else "inactive",
        "unit-state": "enabled",
    }


@routes("GET", N + "/services")
def services(call: Call) -> list[dict[str, Any]]:
    _settings(call)
    return [_service(call, s) for s in sorted(SERVICES)]


@routes("GET", N + "/services/{service}")
def service_index(call: Call) -> list[dict[str, str]]:
    _service(call, call.p("service"))
    return [{"subdir": s} for s in ("state", "start", "stop", "restart", "reload")]


@routes("GET", N + "/services/{service}/state")
def service_state(call: Call) -> dict[str, Any]:
    _settings(call)
    return _service(call, call.p("service"))


def _service_action(call: Call, action: str) -> str:
    name = call.p("service")
    _service(call, name)
    stopped = _settings(call)["stopped_services"]

    def done(task: dict[str, Any]) -> None:
        if action == "stop" and name not in stopped:
            stopped.append(name)
        elif action in ("start", "restart") and name in stopped:
            stopped.remove(name)

    return call.cab.start_task(call.who, f"srv{action}", name, call.p("node"), done)


@routes("POST", N + "/services/{service}/start")
def service_start(call: Call) -> str:
    return _service_action(call, "start")


@routes("POST", N + "/services/{service}/stop")
def service_stop(call: Call) -> str:
    return _service_action(call, "stop")


@routes("POST", N + "/services/{service}/restart")
def service_restart(call: Call) -> str:
    return _service_action(call, "restart")


@routes("POST", N + "/services/{service}/reload")
def service_reload(call: Call) -> str:
    return _service_action(call, "reload")


# --- logs, connections, subscription, report -----------------------------------------------------


def _task_lines(call: Call) -> list[str]:
    node = call.p("node")
    lines = []
    for task in call.state["tasks"]:
        if task["node"] != node:
            continue
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime(task["starttime"]))
        head = f"{stamp} {node} pvedaemon[{task['pid']}]: <{task['user']}>"
        lines.append(f"{head} starting task {task['upid']}")
        if task["status"] == "stopped":
            lines.append(f"{head} end task {task['upid']} {task['exitstatus']}")
    return lines


@routes("GET", N + "/syslog")
def syslog(call: Call) -> list[dict[str, Any]]:
    _settings(call)
    lines = _task_lines(call)
    start, limit = int(call.p("start") or 0), int(call.p("limit") or 50)
    return [{"n": i + 1, "t": t} for i, t in enumerate(lines)][start : start + limit]


@routes("GET", N + "/journal")
def journal(call: Call) -> list[str]:
    _settings(call)
    lines = _task_lines(call)
    last = int(call.p("lastentries") or 0)
    return lines[-last:] if last else lines


@routes("GET", N + "/netstat")
def netstat(call: Call) -> list[dict[str, Any]]:
    node = call.p("node")
    call.cab.node(node)
    out = []
    for g in call.state["guests"].values():
        if g["node"] != node or g["status"] != "running":
            continue
        uptime = int(time.time() - g["started"])
        for key in sorted(k for k in g["config"] if c.NET_KEY.match(k)):
            prefix = "veth" if c.guest_type(g) == "lxc" else "tap"
            dev = f"{prefix}{g['vmid']}i{key[3:]}"
            out.append(
                {
                    "dev": dev,
                    "vmid": str(g["vmid"]),
                    "in": str(uptime * 1200),
                    "out": str(uptime * 800),
                }
            )
    return out


@routes("GET", N + "/subscription")
def subscription(call: Call) -> dict[str, Any]:
    _settings(call)
    return {"status": "notfound", "message": "There is no subscription key"}


@routes("GET", N + "/report")
def report(call: Call) -> str:
    node = call.p("node")
    n = call.cab.node(node)
    guests = sorted(g["vmid"] for g in call.state["guests"].values() if g["node"] == node)
    lines = [
        "==== general system info ====",
        f"# hostname\n{node}",
        "# pveversion --verbose\nproxmox-ve: 9.1.0\npve-manager: 9.1.3",
        f"# cat /etc/hosts\n{_settings(call)['hosts']}",
        f"==== info about virtual guests ====\n# guests\n{' '.join(map(str, guests))}",
        f"==== hardware ====\n# cores\n{n['cores']}\n# memory\n{n['memory']}",
    ]
    return "\n\n".join(lines) + "\n"


# --- capabilities, scans, disks ------------------------------------------------------------------


@routes("GET", N + "/capabilities/qemu/machines")
def machines(call: Call) -> list[dict[str, Any]]:
    call.cab.node(call.p("node"))
    out = []
    for kind, base in (("q35", "pc-q35"), ("i440fx", "pc-i440fx")):
        for version in ("9.2", "9.0", "8.1"):
            out.append({"id": f"{base}-{version}", "type": kind, "version": version})
    return out


@routes("GET", N + "/capabilities/qemu/cpu")
def cpu_models(call: Call) -> list[dict[str, Any]]:
    call.cab.node(call.p("node"))
    models = [("host", "default"), ("kvm64", "default"), ("x86-64-v2-AES", "default")]
    models += [
        ("x86-64-v3", "default"),
        ("EPYC-v4", "AuthenticAMD"),
        ("Icelake-Server", "GenuineIntel"),
    ]
    return [{"name": n, "vendor": v, "custom": 0} for n, v in models]


@routes("GET", N + "/scan/lvm")
def scan_lvm(call: Call) -> list[dict[str, Any]]:
    node = call.p("node")
    n = call.cab.node(node)
    size = max((d["size"] for d in n["disks"]), default=0)
    used = sum(
        v["size"]
        for k, vols in call.state["volumes"].items()
        if k.startswith(node + "/")
        for v in vols.values()
    )
    return [{"vg": "pve", "size": size, "free": max(0, size - used)}]


@routes("GET", N + "/scan/lvmthin")
def scan_lvmthin(call: Call) -> list[dict[str, Any]]:
    call.cab.node(call.p("node"))
    pools = sorted(
        {
            st["thinpool"]
            for st in call.state["storages"].values()
            if st.get("vgname") == call.p("vg") and st.get("thinpool")
        }
    )
    return [{"lv": p} for p in pools]


@routes("GET", N + "/scan/zfs")
def scan_zfs(call: Call) -> list[dict[str, Any]]:
    call.cab.node(call.p("node"))
    return []  # the simulated nodes have no ZFS pool


def _devpath(i: int, disk: dict[str, Any]) -> str:
    return f"/dev/nvme{i}n1" if disk["kind"] == "nvme" else f"/dev/sd{chr(ord('a') + i)}"


@routes("GET", N + "/disks/list")
def disks(call: Call) -> list[dict[str, Any]]:
    n = call.cab.node(call.p("node"))
    out = []
    for i, d in enumerate(n["disks"]):
        out.append(
            {
                "devpath": _devpath(i, d),
                "size": d["size"],
                "gpt": 1,
                "mounted": 0,
                "osdid": -1,
                "osdid-list": [],
                "used": "LVM" if i == 0 else "unused",
                "type": "nvme" if d["kind"] == "nvme" else d["kind"],
                "health": "PASSED",
                "model": f"SIM {d['kind'].upper()} {d['name']}",
                "serial": f"SIM{i:04d}{d['name'].upper()}",
                "wearout": 100 if d["kind"] != "hdd" else "N/A",
            }
        )
    return out


@routes("GET", N + "/disks/smart")
def smart(call: Call) -> dict[str, Any]:
    n = call.cab.node(call.p("node"))
    paths = [_devpath(i, d) for i, d in enumerate(n["disks"])]
    if call.p("disk") not in paths:
        raise ApiError(500, f"disk '{call.p('disk')}' not found")  # PVE: no such disk
    return {
        "health": "PASSED",
        "type": "text",
        "text": "SMART overall-health self-assessment test result: PASSED\n",
    }


# --- all guests of a node --------------------------------------------------------------------


def _all_guests(
    call: Call, kind: str, pick: Callable[[dict[str, Any], set[str]], bool], start: bool
) -> str:
    """startall/stopall: the node's guests `pick` takes (given the `vms` asked for, if
    any), started or stopped in one task."""
    node = call.p("node")
    call.cab.node(node)
    wanted = set(c.split_ids(call.p("vms")))
    chosen = [g for g in call.state["guests"].values() if g["node"] == node and pick(g, wanted)]

    def done(task: dict[str, Any]) -> None:
        for g in chosen:
            g["status"], g["started"] = ("running", time.time()) if start else ("stopped", 0)
            what = "CT" if c.guest_type(g) == "lxc" else "VM"
            task["log"].append(f"{'Starting' if start else 'Stopping'} {what} {g['vmid']}")

    return call.cab.start_task(call.who, kind, "", node, done)


@routes("POST", N + "/startall")
def startall(call: Call) -> str:
    def pick(g: dict[str, Any], wanted: set[str]) -> bool:
        if g["status"] == "running" or g["config"].get("template"):
            return False
        return (
            str(g["vmid"]) in wanted
            if wanted
            else bool(g["config"].get("onboot") or call.p("force"))
        )

    return _all_guests(call, "startall", pick, start=True)


@routes("POST", N + "/stopall")
def stopall(call: Call) -> str:
    def pick(g: dict[str, Any], wanted: set[str]) -> bool:
        return g["status"] == "running" and (not wanted or str(g["vmid"]) in wanted)

    return _all_guests(call, "stopall", pick, start=False)


# --- indexes the generic ones cannot answer (they take more than the node) ----------------


@routes("GET", N + "/qemu/{vmid}/firewall", N + "/lxc/{vmid}/firewall")
def guest_firewall_index(call: Call) -> list[dict[str, str]]:
    c.guest(call)
    return [{"name": s} for s in ("rules", "aliases", "ipset", "refs", "options", "log")]


@routes("GET", N + "/storage/{storage}")
def storage_index(call: Call) -> list[dict[str, str]]:
    call.cab.node(call.p("node"))
    if call.p("storage") not in call.state["storages"]:
        raise ApiError(500, f"storage '{call.p('storage')}' does not exist")
    subdirs = ("content", "download-url", "file-restore", "import-metadata", "prunebackups")
    more = ("rrd", "rrddata", "status", "upload")
    return [{"subdir": s} for s in (*subdirs, *more)]
