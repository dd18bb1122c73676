"""LXC containers: list, create from a `vztmpl` template (or restore from a backup
archive: `nodes/vzdump.py`), config (GET/PUT with digests and pending changes), pending,
resize (grow only), template conversion, clone, delete, feature checks, interfaces, power
and status. Snapshots reuse the QEMU handlers (`qemu_snapshot.py`), which serve both guest
types; the container firewall is `firewall.py`'s guest scope.

Containers share the guests' VMID space with QEMU guests (`type: lxc` in the state), as
on PVE; a container is not found under `/qemu/` and a VM not under `/lxc/`.
"""

from __future__ import annotations

import copy
import re
import time
from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes, bad_request
from kloudctl.sim.handlers import common as c
from kloudctl.sim.handlers.nodes import qemu_snapshot, vzdump
from kloudctl.sim.state import GiB, add_guest, add_volume

routes = Routes()
L = "/nodes/{node}/lxc"
CT = L + "/{vmid}"

# Create/update parameters that are not container config (PVE extracts them first).
_NOT_CONFIG = {
    "node",
    "vmid",
    "ostemplate",
    "start",
    "pool",
    "storage",
    "force",
    "unique",
    "restore",
    "bwlimit",
    "ignore-unpack-errors",
    "password",
    "ssh-public-keys",
    "ha-managed",
    "digest",
    "delete",
    "revert",
    "skiplock",
}
# Changed at once on a running container (PVE hot-plugs these); the rest waits as pending.
_HOTPLUG = {
    "hostname",
    "description",
    "onboot",
    "tags",
    "protection",
    "startup",
    "memory",
    "swap",
    "cores",
    "cpulimit",
    "cpuunits",
    "nameserver",
    "searchdomain",
    "timezone",
}
_MOUNT = re.compile(r"^(?:rootfs|mp\d+)$")
_OSTYPES = ("debian", "ubuntu", "alpine", "centos", "fedora", "archlinux", "opensuse", "nixos")


def ct_config_priv(key: str) -> str:
    """The privilege PVE asks to change one container option (check_ct_modify_config_perm)."""
    if _MOUNT.match(key) or key.startswith("unused"):
        return "VM.Config.Disk"
    if key in ("memory", "swap"):
        return "VM.Config.Memory"
    if key in ("cores", "cpulimit", "cpuunits"):
        return "VM.Config.CPU"
    if re.match(r"^net\d+$", key):
        return "VM.Config.Network"
    return "VM.Config.Options"


def rootdir_storage(call: Call, storage: str) -> None:
    """A storage that may hold container volumes, and the right to allocate on it."""
    c.storage_with_content(call, storage, "rootdir", "container directories")
    call.cab.acl.check(call.who, f"/storage/{storage}", ["Datastore.AllocateSpace"])


def _mount_volume(call: Call, node: str, vmid: int, key: str, value: str) -> str:
    """`local-lvm:8` → a new volume `local-lvm:vm-200-disk-0,size=8G`; existing volumes
    are kept as given."""
    vol, opts = c.disk_volume(value)
    m = re.match(r"^([a-z][a-z0-9\-_.]*[a-z0-9]):(\d+(?:\.\d+)?)$", vol, re.I)
    if not m:
        if ":" in vol and vol not in call.state["volumes"].get(f"{node}/{vol.split(':')[0]}", {}):
            raise bad_request(key, f"volume '{vol}' does not exist")
        return value
    storage, size = m.group(1), m.group(2)
    rootdir_storage(call, storage)
    volid = c.next_disk_name(call, node, storage, vmid)
    nbytes = int(float(size) * GiB)
    add_volume(call.state, node, storage, volid, nbytes, vmid)
    return c.disk_string(volid, {**opts, "size": c.fmt_size(nbytes)})


def _net(call: Call, node: str, key: str, value: str) -> str:
    """A container NIC with a MAC address (BC:24:11, Proxmox's OUI) and `type=veth`."""
    c.check_bridge(call, node, key, value)
    opts = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
    opts.setdefault("hwaddr", c.random_mac())
    opts.setdefault("type", "veth")
    return net_line(opts)


def net_line(opts: dict[str, str]) -> str:
    """A NIC line as PVE writes it: `name` (the one required key) first, then the others
    in alphabetical order (`name=eth0,bridge=vmbr0,hwaddr=...,ip=dhcp,type=veth`)."""
    keys = sorted(opts, key=lambda k: (k != "name", k))
    return ",".join(f"{k}={opts[k]}" for k in keys)


def config_from_params(call: Call, node: str, vmid: int) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key, value in call.params.items():
        if key in _NOT_CONFIG or value is None:
            continue
        if _MOUNT.match(key):
            value = _mount_volume(call, node, vmid, key, str(value))
        elif re.match(r"^net\d+$", key):
            value = _net(call, node, key, str(value))
        config[key] = value if isinstance(value, int | float) else str(value)
    return config


def check_allocate(call: Call, vmid: int) -> None:
    """VM.Allocate on /vms/{vmid} or on the pool, and the per-option privileges."""
    pool = call.p("pool")
    if not call.cab.acl.allowed(call.who, f"/vms/{vmid}", ["VM.Allocate"]):
        if not pool:
            call.cab.acl.check(call.who, f"/vms/{vmid}", ["VM.Allocate"])
        call.cab.acl.check(call.who, f"/pool/{pool}", ["VM.Allocate"])
    if pool and pool not in call.state["access"]["pools"]:
        raise ApiError(500, f"pool '{pool}' does not exist")


def vmid_unused(call: Call, vmid: int) -> None:
    """PVE::Cluster::check_vmid_unused: the VMID names no guest of either type."""
    g = call.state["guests"].get(str(vmid))
    if g is not None:
        kind = "CT" if c.guest_type(g) == "lxc" else "VM"
        raise ApiError(500, f"{kind} {vmid} already exists on node '{g['node']}'")


@routes("GET", L)
def list_containers(call: Call) -> list[dict[str, Any]]:
    call.cab.node(call.p("node"))
    out = []
    for g in call.state["guests"].values():
        if g["node"] != call.p("node") or c.guest_type(g) != "lxc":
            continue
        if call.cab.acl.allowed(call.who, f"/vms/{g['vmid']}", ["VM.Audit"]):
            out.append(live(call, g))
    return out


def live(call: Call, g: dict[str, Any]) -> dict[str, Any]:
    """A container's runtime fields, as `pct list`/`status/current` show them."""
    out = c.live_status(call, g)
    out.pop("qmpstatus", None)
    out["type"] = "lxc"
    out["maxswap"] = int(g["config"].get("swap", 512)) * 1024**2
    out["swap"] = 0
    if g["status"] == "running":
        out["pid"] = 20000 + g["vmid"]
    return out


@routes("POST", L)
def create(call: Call) -> str:
    node, vmid = call.p("node"), int(call.p("vmid"))
    call.cab.node(node)
    check_allocate(call, vmid)
    if call.p("restore"):
        return vzdump.restore(call, "lxc")
    vmid_unused(call, vmid)
    privs = sorted({ct_config_priv(k) for k in call.params if k not in _NOT_CONFIG})
    pool = call.p("pool")
    in_pool = bool(pool) and call.cab.acl.allowed(call.who, f"/pool/{pool}", privs)
    if privs and not in_pool:
        call.cab.acl.check(call.who, f"/vms/{vmid}", privs)
    template = str(call.p("ostemplate"))
    sid = template.split(":", 1)[0]
    vols = call.state["volumes"].get(f"{node}/{sid}", {})
    if template not in vols or vols[template]["content"] != "vztmpl":
        raise ApiError(500, f"volume '{template}' does not exist")
    if call.p("rootfs") is None:
        # PVE's default root disk: 4 GiB on the storage given (`local` otherwise).
        call.params["rootfs"] = f"{call.p('storage') or 'local'}:4"
    config = config_from_params(call, node, vmid)
    name = template.split("/", 1)[1]
    config.setdefault("arch", "amd64")
    config.setdefault("ostype", next((o for o in _OSTYPES if name.startswith(o)), "unmanaged"))
    config.setdefault("hostname", f"CT{vmid}")
    config.setdefault("memory", 512)
    config.setdefault("swap", 512)
    config["lock"] = "create"
    g = add_guest(call.state, vmid, node, config)
    g["type"] = "lxc"
    if pool:
        call.state["access"]["pools"][pool].setdefault("vms", []).append(vmid)
    start = bool(call.p("start"))

    def done(task: dict[str, Any]) -> None:
        task["log"].append(f"extracting archive '{template}'")
        task["log"].append(f"Detected container architecture: {config['arch']}")
        g["config"].pop("lock", None)
        if start and not g["config"].get("template"):
            g["status"], g["started"] = "running", time.time()

    def undo() -> None:
        drop(call, g, purge=True)

    return c.start_or_undo(
        call, undo, call.who, "vzcreate", str(vmid), node, done, lock=vmid, on_error=undo
    )


def drop(call: Call, g: dict[str, Any], purge: bool) -> None:
    """Remove a guest (either type) with its volumes, pool membership and firewall."""
    for vol in c.guest_volumes(g):
        storage = vol.split(":", 1)[0]
        call.state["volumes"].get(f"{g['node']}/{storage}", {}).pop(vol, None)
    call.state["guests"].pop(str(g["vmid"]), None)
    c.remove_from_pools(call, g["vmid"])
    call.state["firewall"]["vms"].pop(str(g["vmid"]), None)
    if purge:
        acl = call.state["access"]["acl"]
        acl[:] = [r for r in acl if r["path"] != f"/vms/{g['vmid']}"]


@routes("GET", CT)
def ct_index(call: Call) -> list[dict[str, str]]:
    c.guest(call)
    subdirs = ("config", "pending", "status", "vncproxy", "termproxy", "vncwebsocket")
    more = ("spiceproxy", "migrate", "clone", "snapshot", "firewall", "rrd", "rrddata")
    return [{"subdir": s} for s in (*subdirs, *more)]


@routes("GET", CT + "/config")
def get_config(call: Call) -> dict[str, Any]:
    g = c.guest(call)
    config = dict(g["config"]) if call.p("current") else c.config_with_pending(g)
    if call.p("snapshot"):
        snap = g.get("snapshots", {}).get(call.p("snapshot"))
        if snap is None:
            raise ApiError(500, f"snapshot '{call.p('snapshot')}' does not exist")
        config = dict(snap["config"])
    config["digest"] = c.digest_of(g)
    return config


@routes("GET", CT + "/pending")
def get_pending(call: Call) -> list[dict[str, Any]]:
    return c.pending_entries(c.guest(call))


@routes("PUT", CT + "/config")
def put_config(call: Call) -> None:
    g = c.guest(call)
    vmid, node = g["vmid"], g["node"]
    c.check_config_lock(g)
    c.check_digest(call, c.digest_of(g))
    deletes = [k for k in re.split(r"[,;\s]+", str(call.p("delete") or "")) if k]
    reverts = [k for k in re.split(r"[,;\s]+", str(call.p("revert") or "")) if k]
    changes = [k for k in call.params if k not in _NOT_CONFIG]
    for key in [*changes, *deletes, *reverts]:
        call.cab.acl.check(call.who, f"/vms/{vmid}", [ct_config_priv(key)])
    for key in deletes:
        if key in changes:
            raise bad_request("delete", f"unable to delete parameter '{key}' - it is also set")
        if key == "rootfs":
            raise ApiError(500, "unable to delete required option 'rootfs'")
    call.cab.lock(vmid)
    try:
        config = config_from_params(call, node, vmid)
        c.stage_changes(g, config, deletes, reverts, lambda key, _: key in _HOTPLUG)
    finally:
        call.cab.unlock(vmid)


@routes("PUT", CT + "/resize")
def resize(call: Call) -> str:
    g = c.guest(call)
    c.check_config_lock(g)
    c.check_digest(call, c.digest_of(g))
    disk = call.p("disk")
    value = g["config"].get(disk)
    if value is None:
        raise ApiError(500, f"no such mount point '{disk}'")
    vol, opts = c.disk_volume(str(value))
    current = c.parse_size(opts.get("size", "0"))[1]
    relative, amount = c.parse_size(str(call.p("size")))
    new = current + amount if relative else amount
    if new < current:
        raise ApiError(500, "unable to shrink disk size")
    vmid = g["vmid"]

    def done(task: dict[str, Any]) -> None:
        opts["size"] = c.fmt_size(new)
        g["config"][disk] = c.disk_string(vol, opts)
        entry = call.state["volumes"].get(f"{g['node']}/{vol.split(':', 1)[0]}", {}).get(vol)
        if entry:
            entry["size"] = new
        task["log"].append(f"Size of logical volume {vol} changed to {c.fmt_size(new)}")
        task["log"].append(f"Resizing filesystem to {c.fmt_size(new)}")

    return call.cab.start_task(call.who, "resize", str(vmid), g["node"], done, lock=vmid)


@routes("POST", CT + "/template")
def template(call: Call) -> None:
    g = c.guest(call)
    c.check_config_lock(g)
    vmid = g["vmid"]
    if g["status"] == "running":
        raise ApiError(500, "you can't convert a CT to template if the CT is running")
    if g["config"].get("template"):
        raise ApiError(500, "you can't convert a template to a template")
    for key, value in list(g["config"].items()):
        if not _MOUNT.match(key):
            continue
        vol, opts = c.disk_volume(str(value))
        if f"vm-{vmid}-disk" in vol:
            c.to_base_volume(call, g, key, vol, opts)
    g["config"]["template"] = 1


@routes("POST", CT + "/clone")
def clone(call: Call) -> str:
    src = c.guest(call)
    newid, node = int(call.p("newid")), src["node"]
    target = call.p("target") or node
    call.cab.node(target)
    vmid_unused(call, newid)
    is_template = bool(src["config"].get("template"))
    full = bool(call.p("full")) if call.p("full") is not None else not is_template
    if not is_template and not full:
        raise bad_request("full", "linked clone feature is not supported for non-template")
    if not is_template:
        full = True
    storage = call.p("storage")
    if storage and not full:
        raise bad_request("storage", "parameter 'storage' not allowed for linked clones")
    if src["status"] == "running" and not is_template:
        raise ApiError(500, "unable to clone a running container without snapshot feature")
    if target != node and not c.on_shared_storage(call, src):
        raise ApiError(500, "Can't clone to other node if CT uses local storage")
    pool = call.p("pool")
    if pool and pool not in call.state["access"]["pools"]:
        raise ApiError(500, f"pool '{pool}' does not exist")
    c.check_config_lock(src)
    config = {
        k: v for k, v in copy.deepcopy(src["config"]).items() if k not in ("template", "lock")
    }
    config["hostname"] = call.p("hostname") or f"{src['config'].get('hostname', 'CT')}-clone"
    if call.p("description") is not None:
        config["description"] = call.p("description")
    for key, value in list(config.items()):
        if re.match(r"^net\d+$", key):
            opts = dict(p.split("=", 1) for p in str(value).split(",") if "=" in p)
            opts["hwaddr"] = c.random_mac()
            config[key] = net_line(opts)
        elif key.startswith("unused"):
            config.pop(key)
    mounts = []
    for key, value in config.items():
        if _MOUNT.match(key):
            vol, opts = c.disk_volume(str(value))
            st = storage or vol.split(":", 1)[0]
            rootdir_storage(call, st)
            mounts.append((key, vol, opts, st))
    config["lock"] = "disk"
    g = add_guest(call.state, newid, target, config)
    g["type"] = "lxc"
    if pool:
        call.state["access"]["pools"][pool].setdefault("vms", []).append(newid)

    def done(task: dict[str, Any]) -> None:
        for key, vol, opts, st in mounts:
            size = c.parse_size(opts.get("size", "0"))[1]
            name = c.next_disk_name(call, target, st, newid)
            if full:
                nv = name
                task["log"].append(f"create full clone of mountpoint {key} ({vol})")
            else:
                nv = f"{vol}/{name.split(':', 1)[1]}"
                task["log"].append(f"create linked clone of mount point {key} ({vol})")
            add_volume(call.state, target, st, nv, size, newid)
            g["config"][key] = c.disk_string(nv, opts)
        g["config"].pop("lock", None)

    def undo() -> None:
        drop(call, g, purge=True)

    return c.start_or_undo(
        call, undo, call.who, "vzclone", str(src["vmid"]), node, done, lock=newid, on_error=undo
    )


@routes("DELETE", CT)
def destroy(call: Call) -> str:
    g = c.guest(call)
    vmid = g["vmid"]
    c.check_destroyable(call, g, "CT")
    purge = bool(call.p("purge"))

    def done(task: dict[str, Any]) -> None:
        drop(call, g, purge)
        task["log"].append(f"destroyed CT {vmid}")

    return call.cab.start_task(call.who, "vzdestroy", str(vmid), g["node"], done, lock=vmid)


@routes("GET", CT + "/feature", "/nodes/{node}/qemu/{vmid}/feature")
def feature(call: Call) -> dict[str, Any]:
    g = c.guest(call)
    want = call.p("feature")
    ok = True
    for vol in c.guest_volumes(g):
        st = call.state["storages"].get(vol.split(":", 1)[0], {})
        # dir storages hold raw files: no snapshots, no linked clones
        if st.get("type") == "dir" and want in ("snapshot", "clone"):
            ok = False
    nodes = [n for n in call.state["nodes"] if n != g["node"]]
    return {"hasFeature": ok, "nodes": nodes}


@routes("GET", CT + "/interfaces")
def interfaces(call: Call) -> list[dict[str, Any]]:
    g = c.guest(call)
    if g["status"] != "running":
        raise ApiError(500, f"CT {g['vmid']} not running")
    out = [_iface("lo", "00:00:00:00:00:00", "127.0.0.1/8")]
    for key in sorted(k for k in g["config"] if re.match(r"^net\d+$", k)):
        opts = dict(p.split("=", 1) for p in str(g["config"][key]).split(",") if "=" in p)
        ip = opts.get("ip")
        cidr = ip if ip and ip not in ("dhcp", "manual") else None
        out.append(_iface(opts.get("name", f"eth{key[3:]}"), opts.get("hwaddr", ""), cidr))
    return out


def _iface(name: str, mac: str, cidr: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "hwaddr": mac.lower(),
        "hardware-address": mac.lower(),
        "ip-addresses": [],
    }
    if cidr:
        ip, _, prefix = cidr.partition("/")
        entry["inet"] = cidr
        entry["ip-addresses"] = [
            {"ip-address": ip, "ip-address-type": "inet", "prefix": int(prefix or 32)}
        ]
    return entry


@routes("GET", CT + "/migrate")
def migrate_check(call: Call) -> dict[str, Any]:
    g = c.guest(call)
    local = [
        v
        for v in c.guest_volumes(g)
        if not call.state["storages"].get(v.split(":")[0], {}).get("shared")
    ]
    others = [n for n, d in call.state["nodes"].items() if n != g["node"] and d["online"]]
    return {
        "running": g["status"] == "running",
        "allowed-nodes": others,
        "not-allowed-nodes": {},
        "local-volumes": local,
    }


@routes("POST", CT + "/migrate")
def migrate(call: Call) -> str:
    g = c.guest(call)
    vmid, target = g["vmid"], call.p("target")
    c.check_config_lock(g)
    if target == g["node"]:
        raise ApiError(500, "target is local node.")
    tnode = call.cab.node(target)
    if not tnode["online"]:
        raise ApiError(500, f"target node '{target}' is offline")
    if g["status"] == "running" and not call.p("restart"):
        raise ApiError(500, "lxc live migration is currently not implemented - use 'restart' mode")
    source = g["node"]

    def done(task: dict[str, Any]) -> None:
        for vol in c.guest_volumes(g):
            storage = vol.split(":", 1)[0]
            if call.state["storages"].get(storage, {}).get("shared"):
                continue
            entry = call.state["volumes"].get(f"{source}/{storage}", {}).pop(vol, None)
            if entry is not None:
                call.state["volumes"].setdefault(f"{target}/{storage}", {})[vol] = entry
                task["log"].append(f"copied volume '{vol}' to node '{target}'")
        g["node"] = target
        if g["status"] == "running":
            g["started"] = time.time()
        task["log"].append("migration finished successfully")

    return call.cab.start_task(call.who, "vzmigrate", str(vmid), source, done, lock=vmid)


# --- power and status ------------------------------------------------------------------


@routes("GET", CT + "/status")
def status_index(call: Call) -> list[dict[str, str]]:
    c.guest(call)
    names = ("current", "start", "stop", "shutdown", "migrate", "reboot", "suspend", "resume")
    return [{"subdir": s} for s in names]


@routes("GET", CT + "/status/current")
def status_current(call: Call) -> dict[str, Any]:
    g = c.guest(call)
    return {**live(call, g), "ha": {"managed": 0}}


def _power(call: Call, kind: str, want: str | None, check: str | None) -> str:
    g = c.guest(call)
    vmid = g["vmid"]
    c.check_config_lock(g, bool(call.p("skiplock")))
    if kind == "vzstart" and g["config"].get("template"):
        raise ApiError(500, "you can't start a CT if it's a template")
    if check == "stopped" and g["status"] == "running":
        raise ApiError(500, f"CT {vmid} already running")
    if check == "running" and g["status"] != "running":
        raise ApiError(500, f"CT {vmid} not running")
    if check == "suspended" and g.get("suspended"):
        raise ApiError(500, f"CT {vmid} already suspended")

    def done(task: dict[str, Any]) -> None:
        if want in ("running", "stopped", "restart"):
            c.apply_pending(g)
            g.pop("suspended", None)
        if want == "running":
            g["status"], g["started"] = "running", time.time()
        elif want == "stopped":
            g["status"], g["started"] = "stopped", 0
        elif want == "restart":
            g["started"] = time.time()
        elif want == "frozen":
            g["suspended"] = 1
        elif want == "thawed":
            g.pop("suspended", None)

    return call.cab.start_task(call.who, kind, str(vmid), g["node"], done, lock=vmid)


@routes("POST", CT + "/status/start")
def start(call: Call) -> str:
    return _power(call, "vzstart", "running", "stopped")


@routes("POST", CT + "/status/stop")
def stop(call: Call) -> str:
    return _power(call, "vzstop", "stopped", None)


@routes("POST", CT + "/status/shutdown")
def shutdown(call: Call) -> str:
    return _power(call, "vzshutdown", "stopped", "running")


@routes("POST", CT + "/status/reboot")
def reboot(call: Call) -> str:
    return _power(call, "vzreboot", "restart", "running")


@routes("POST", CT + "/status/suspend")
def suspend(call: Call) -> str:
    return _power(call, "vzsuspend", "frozen", "running")


@routes("POST", CT + "/status/resume")
def resume(call: Call) -> str:
    return _power(call, "vzresume", "thawed", "running")


# --- snapshots: the QEMU handlers serve containers too ---------------------------------------

for _http, _sub, _fn in (
    ("GET", "/snapshot", qemu_snapshot.snapshot_list),
    ("POST", "/snapshot", qemu_snapshot.snapshot_create),
    ("GET", "/snapshot/{snapname}", qemu_snapshot.snapshot_index),
    ("DELETE", "/snapshot/{snapname}", qemu_snapshot.snapshot_delete),
    ("GET", "/snapshot/{snapname}/config", qemu_snapshot.snapshot_config),
    ("PUT", "/snapshot/{snapname}/config", qemu_snapshot.snapshot_config_put),
    ("POST", "/snapshot/{snapname}/rollback", qemu_snapshot.snapshot_rollback),
):
    routes(_http, CT + _sub)(_fn)
