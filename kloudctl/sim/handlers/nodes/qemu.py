"""QEMU guests: list, create, clone, config (GET/PUT/POST with digests and pending
changes), resize (grow only), template conversion, delete with purge, unlink, guest-agent
addresses, cloud-init. Power and status: `qemu_status.py`; snapshots:
`qemu_snapshot.py`; migration: `qemu_migrate.py`."""

from __future__ import annotations

import copy
import time
from typing import Any
from urllib.parse import unquote

from kloudctl.sim.api import ApiError, Call, Routes, bad_request
from kloudctl.sim.handlers import common as c
from kloudctl.sim.handlers.nodes import vzdump
from kloudctl.sim.state import add_guest, add_volume

routes = Routes()
Q = "/nodes/{node}/qemu"
V = Q + "/{vmid}"

_NOT_CONFIG = {
    "node",
    "vmid",
    "start",
    "pool",
    "storage",
    "force",
    "unique",
    "archive",
    "bwlimit",
    "live-restore",
    "import-working-storage",
    "digest",
    "delete",
    "revert",
    "skiplock",
    "background_delay",
    "ha-managed",
}


@routes("GET", Q)
def list_guests(call: Call) -> list[dict[str, Any]]:
    out = []
    for g in call.state["guests"].values():
        if g["node"] != call.p("node") or c.guest_type(g) != "qemu":
            continue
        if not call.cab.acl.allowed(call.who, f"/vms/{g['vmid']}", ["VM.Audit"]):
            continue
        out.append(c.live_status(call, g))
    return out


def _config_from_params(
    call: Call, node: str, vmid: int, current: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The config lines PVE stores for the call's parameters: drives and NICs as PVE
    prints them (`current`: the guest's present config, pending values first)."""
    config: dict[str, Any] = {}
    current = current or {}
    for key, value in call.params.items():
        if key in _NOT_CONFIG:
            continue
        if c.DISK_KEYS.match(key):
            value = c.allocate_disk(call, node, vmid, key, str(value), current.get(key))
        elif c.NET_KEY.match(key):
            c.check_bridge(call, node, key, str(value))
            value = c.set_nic(key, str(value))
        config[key] = value if isinstance(value, int | float) else str(value)
    return config


@routes("POST", Q)
def create(call: Call) -> str:
    node, vmid = call.p("node"), int(call.p("vmid"))
    call.cab.node(node)
    pool = call.p("pool")
    if not call.cab.acl.allowed(call.who, f"/vms/{vmid}", ["VM.Allocate"]):
        if not pool:
            call.cab.acl.check(call.who, f"/vms/{vmid}", ["VM.Allocate"])
        call.cab.acl.check(call.who, f"/pool/{pool}", ["VM.Allocate"])
    if call.p("archive"):
        return vzdump.restore(call, "qemu")
    if str(vmid) in call.state["guests"]:
        raise bad_request("vmid", f"VM {vmid} already exists")
    if pool and pool not in call.state["access"]["pools"]:
        raise ApiError(500, f"pool '{pool}' does not exist")
    privs = sorted({c.config_priv(k) for k in call.params if k not in _NOT_CONFIG})
    in_pool = bool(pool) and call.cab.acl.allowed(call.who, f"/pool/{pool}", privs)
    if privs and not in_pool and not call.cab.acl.allowed(call.who, f"/vms/{vmid}", privs):
        call.cab.acl.check(call.who, f"/vms/{vmid}", privs)
    config = _config_from_params(call, node, vmid)
    config.setdefault("memory", "512")
    config.setdefault("cores", 1)
    config.setdefault("sockets", 1)
    c.new_identity_config(config)
    config["lock"] = "create"
    g = add_guest(call.state, vmid, node, config)
    if pool:
        call.state["access"]["pools"][pool].setdefault("vms", []).append(vmid)
    start = bool(call.p("start"))

    def done(task: dict[str, Any]) -> None:
        g["config"].pop("lock", None)
        task["log"].append(f"created VM {vmid} on node {node}")
        if start and not g["config"].get("template"):
            g["status"], g["started"] = "running", time.time()

    def undo() -> None:
        _drop_guest(call, g, purge=True)

    return call.cab.start_task(
        call.who, "qmcreate", str(vmid), node, done, lock=vmid, on_error=undo
    )


@routes("GET", V)
def vm_index(call: Call) -> list[dict[str, str]]:
    c.guest(call)
    return [
        {"subdir": s}
        for s in ("config", "pending", "status", "firewall", "cloudinit", "snapshot", "rrd")
    ]


@routes("GET", V + "/config")
def get_config(call: Call) -> dict[str, Any]:
    g = c.guest(call)
    config = dict(g["config"]) if call.p("current") else c.config_with_pending(g)
    config["digest"] = c.digest_of(g)
    return config


@routes("GET", V + "/pending")
def get_pending(call: Call) -> list[dict[str, Any]]:
    return c.pending_entries(c.guest(call))


def _hotplug(key: str, deleting: bool) -> bool:
    """Options a running VM takes at once; a new `ipconfigN` too, but not its deletion."""
    return key in c.OPTION_KEYS | c.CLOUDINIT_KEYS or (key.startswith("ipconfig") and not deleting)


def _update(call: Call) -> dict[str, Any]:
    g = c.guest(call)
    vmid, node = g["vmid"], g["node"]
    c.check_config_lock(g, bool(call.p("skiplock")))
    c.check_digest(call, c.digest_of(g))
    deletes = [k for k in str(call.p("delete") or "").replace(";", ",").split(",") if k]
    reverts = [k for k in str(call.p("revert") or "").split(",") if k]
    changes = {k: v for k, v in call.params.items() if k not in _NOT_CONFIG}
    for key in [*changes, *deletes, *reverts]:
        call.cab.acl.check(call.who, f"/vms/{vmid}", [c.config_priv(key)])
    for key in deletes:
        if key in changes:
            raise bad_request("delete", f"unable to delete parameter '{key}' - it is also set")
    present = {**g["config"], **{k: v for k, v in g["pending"].items() if v is not None}}
    config = _config_from_params(call, node, vmid, present)
    c.stage_changes(g, config, deletes, reverts, _hotplug)
    return g


@routes("PUT", V + "/config")
def put_config(call: Call) -> None:
    g = c.guest(call)
    call.cab.lock(g["vmid"])
    try:
        _update(call)
    finally:
        call.cab.unlock(g["vmid"])


@routes("POST", V + "/config")
def post_config(call: Call) -> str:
    g = c.guest(call)
    c.check_config_lock(g, bool(call.p("skiplock")))
    c.check_digest(call, c.digest_of(g))
    call.cab.lock(g["vmid"])
    try:
        _update(call)
    finally:
        call.cab.unlock(g["vmid"])
    return call.cab.start_task(call.who, "qmconfig", str(g["vmid"]), g["node"], lock=g["vmid"])


@routes("PUT", V + "/resize")
def resize(call: Call) -> str:
    g = c.guest(call)
    c.check_config_lock(g, bool(call.p("skiplock")))
    c.check_digest(call, c.digest_of(g))
    disk = call.p("disk")
    value = g["config"].get(disk)
    if value is None:
        raise ApiError(500, f"disk '{disk}' does not exist")
    vol, opts = c.disk_volume(str(value))
    if opts.get("media") == "cdrom":
        raise ApiError(500, "you can't resize a cdrom")
    # PVE reads the current size from the volume (volume_size_info), not from the config.
    storage = vol.split(":", 1)[0]
    entry = call.state["volumes"].get(f"{g['node']}/{storage}", {}).get(vol)
    current = int(entry["size"]) if entry else c.parse_size(opts.get("size", "0"))[1]
    relative, amount = c.parse_size(str(call.p("size")))
    new = current + amount if relative else amount
    if new < current:
        raise ApiError(500, "shrinking disks is not supported")
    vmid = g["vmid"]

    def done(task: dict[str, Any]) -> None:
        opts["size"] = c.fmt_size(new)
        g["config"][disk] = c.disk_string(vol, opts)
        if entry:
            entry["size"] = new
        task["log"].append(f"Size of logical volume {vol} changed to {c.fmt_size(new)}")

    return call.cab.start_task(call.who, "resize", str(vmid), g["node"], done, lock=vmid)


@routes("POST", V + "/template")
def template(call: Call) -> str:
    g = c.guest(call)
    c.check_config_lock(g)
    if g["status"] == "running":
        raise ApiError(500, "you can't convert a VM to template if VM is running")
    if g["config"].get("template"):
        raise ApiError(500, "you can't convert a template to a template")
    vmid = g["vmid"]

    def done(task: dict[str, Any]) -> None:
        for key, value in list(g["config"].items()):
            if not c.DISK_KEYS.match(key):
                continue
            vol, opts = c.disk_volume(str(value))
            if opts.get("media") != "cdrom" and f"vm-{vmid}-disk" in vol:
                c.to_base_volume(call, g, key, vol, opts)
        g["config"]["template"] = 1

    return call.cab.start_task(call.who, "qmtemplate", str(vmid), g["node"], done, lock=vmid)


@routes("POST", V + "/clone")
def clone(call: Call) -> str:
    src = c.guest(call)
    newid, node = int(call.p("newid")), src["node"]
    target = call.p("target") or node
    call.cab.node(target)
    if str(newid) in call.state["guests"]:
        raise bad_request("newid", f"VM {newid} already exists")
    is_template = bool(src["config"].get("template"))
    full = bool(call.p("full")) if call.p("full") is not None else not is_template
    if not is_template and call.p("full") is not None and not call.p("full"):
        raise bad_request(
            "full", "linked clone feature is not supported for running VM / non-template"
        )
    if not is_template:
        full = True
    storage = call.p("storage")
    if storage and not full:
        raise bad_request("storage", "parameter 'storage' not allowed for linked clones")
    if target != node and not c.on_shared_storage(call, src):
        raise ApiError(500, "Can't clone to other node if VM uses local storage")
    pool = call.p("pool")
    if pool and pool not in call.state["access"]["pools"]:
        raise ApiError(500, f"pool '{pool}' does not exist")
    if src["config"].get("lock") and not is_template:
        c.check_config_lock(src)
    config = {
        k: v for k, v in copy.deepcopy(src["config"]).items() if k not in ("template", "lock")
    }
    config["name"] = call.p("name") or f"Copy-of-VM-{config.get('name', src['vmid'])}"
    if call.p("description") is not None:
        config["description"] = call.p("description")
    c.new_identity_config(config)
    for key, value in list(config.items()):
        if c.NET_KEY.match(key):
            parts = str(value).split(",")
            model = parts[0].split("=")[0]
            config[key] = ",".join([f"{model}={c.random_mac()}", *parts[1:]])
    disks: list[tuple[str, str, dict[str, str], str]] = []
    for key, value in list(config.items()):
        if not c.DISK_KEYS.match(key) or key.startswith("unused"):
            if key.startswith("unused"):
                config.pop(key)
            continue
        vol, opts = c.disk_volume(str(value))
        if ":" not in vol or (opts.get("media") == "cdrom" and "cloudinit" not in vol):
            continue  # PVE copies a CD-ROM drive's line as it is (an ISO is not cloned)
        disks.append((key, vol, opts, storage or vol.split(":", 1)[0]))
    for _, _, _, st in disks:
        c.storage_for_images(call, target, st)
    config["lock"] = "clone"
    g = add_guest(call.state, newid, target, config)
    if pool:
        call.state["access"]["pools"][pool].setdefault("vms", []).append(newid)

    def done(task: dict[str, Any]) -> None:
        for key, vol, opts, st in disks:
            if opts.get("media") == "cdrom":
                if "cloudinit" in vol:
                    nv = f"{st}:vm-{newid}-cloudinit"
                    add_volume(call.state, target, st, nv, 4 * 1024**2, newid)
                    g["config"][key] = c.disk_string(nv, opts)
                continue
            size = c.parse_size(opts.get("size", "0"))[1]
            if full:
                nv = c.next_disk_name(call, target, st, newid)
                task["log"].append(f"drive mirror / copy {vol} -> {nv}")
            else:
                nv = f"{vol}/{c.next_disk_name(call, target, st, newid).split(':', 1)[1]}"
                task["log"].append(f"create linked clone of drive {key} ({vol})")
            add_volume(call.state, target, st, nv, size, newid)
            g["config"][key] = c.disk_string(nv, opts)
        g["config"].pop("lock", None)

    def undo() -> None:
        _drop_guest(call, g, purge=True)

    return call.cab.start_task(
        call.who, "qmclone", str(src["vmid"]), node, done, lock=newid, on_error=undo
    )


def _drop_guest(call: Call, g: dict[str, Any], purge: bool) -> None:
    vmid = g["vmid"]
    for vol in c.guest_volumes(g):
        storage = vol.split(":", 1)[0]
        vols = call.state["volumes"].get(f"{g['node']}/{storage}", {})
        vols.pop(vol, None)
        vols.pop(f"{storage}:vm-{vmid}-cloudinit", None)
    call.state["guests"].pop(str(vmid), None)
    c.remove_from_pools(call, vmid)
    call.state["firewall"]["vms"].pop(str(vmid), None)
    if purge:
        acl = call.state["access"]["acl"]
        acl[:] = [r for r in acl if r["path"] != f"/vms/{vmid}"]


@routes("DELETE", V)
def destroy(call: Call) -> str:
    g = c.guest(call)
    vmid = g["vmid"]
    c.check_destroyable(call, g, "VM", bool(call.p("skiplock")))
    purge = bool(call.p("purge"))

    def done(task: dict[str, Any]) -> None:
        _drop_guest(call, g, purge)
        task["log"].append(f"destroyed VM {vmid}")

    return call.cab.start_task(call.who, "qmdestroy", str(vmid), g["node"], done, lock=vmid)


@routes("PUT", V + "/unlink")
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


# --- guest agent ------------------------------------------------------------------------


@routes("GET", V + "/agent/network-get-interfaces")
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


# --- cloud-init ------------------------------------------------------------------------------


def _ci_keys(g: dict[str, Any]) -> list[str]:
    keys = [k for k in g["config"] if k in c.CLOUDINIT_KEYS or k.startswith("ipconfig")]
    return sorted(
        set(keys) | {k for k in g["pending"] if k in c.CLOUDINIT_KEYS or k.startswith("ipconfig")}
    )


@routes("GET", V + "/cloudinit")
def cloudinit_get(call: Call) -> list[dict[str, Any]]:
    g = c.guest(call)
    out = []
    for key in _ci_keys(g):
        value = g["config"].get(key)
        if key == "cipassword" and value is not None:
            value = "**********"
        entry: dict[str, Any] = {"key": key}
        if value is not None:
            entry["value"] = str(value)
        if key in g["pending"]:
            entry["pending"] = str(g["pending"][key])
        out.append(entry)
    return out


@routes("PUT", V + "/cloudinit")
def cloudinit_regenerate(call: Call) -> None:
    g = c.guest(call)
    c.check_config_lock(g)
    return None


@routes("GET", V + "/cloudinit/dump")
def cloudinit_dump(call: Call) -> str:
    g = c.guest(call)
    cfg = g["config"]
    kind = call.p("type")
    name = str(cfg.get("name", f"VM{g['vmid']}"))
    if kind == "user":
        lines = ["#cloud-config", f"hostname: {name}", "manage_etc_hosts: true"]
        if cfg.get("ciuser"):
            lines.append(f"user: {cfg['ciuser']}")
        if cfg.get("cipassword"):
            lines.append("password: **********")
        if cfg.get("sshkeys"):
            lines.append("ssh_authorized_keys:")
            lines += [f"  - {k}" for k in unquote(str(cfg["sshkeys"])).splitlines() if k.strip()]
        lines.append("chpasswd:\n  expire: False")
        return "\n".join(lines) + "\n"
    if kind == "network":
        lines = ["version: 1", "config:"]
        for key in sorted(k for k in cfg if k.startswith("ipconfig")):
            idx = key[len("ipconfig") :]
            opts = dict(p.split("=", 1) for p in str(cfg[key]).split(",") if "=" in p)
            lines += ["    - type: physical", f"      name: eth{idx}", "      subnets:"]
            if opts.get("ip") in (None, "dhcp"):
                lines.append("      - type: dhcp4")
            else:
                lines += ["      - type: static", f"        address: '{opts['ip']}'"]
                if opts.get("gw"):
                    lines.append(f"        gateway: '{opts['gw']}'")
        if cfg.get("nameserver"):
            lines += ["    - type: nameserver", "      address:"]
            lines += [f"      - '{ns}'" for ns in str(cfg["nameserver"]).split()]
        return "\n".join(lines) + "\n"
    return f"instance-id: {c.digest_of(g)}\nlocal-hostname: {name}\n"
