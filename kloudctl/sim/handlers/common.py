"""Helpers shared by the handlers: guests, volumes, per-option privileges, digests, and
the accounting of nodes and storages (what `/cluster/resources` and `/nodes` show)."""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from kloudctl.sim.api import ApiError, Call, bad_request
from kloudctl.sim.handlers import drives
from kloudctl.sim.state import GiB, MiB, add_volume, config_digest

DISK_KEYS = re.compile(r"^(?:(scsi|virtio|sata|ide|efidisk|tpmstate|unused|mp)\d+|rootfs)$")
NET_KEY = re.compile(r"^net\d+$")
_SIZE = re.compile(r"^(\+)?(\d+(?:\.\d+)?)([KMGT]?)$")
_UNITS = {"": 1, "K": 1024, "M": MiB, "G": GiB, "T": 1024 * GiB}
CLOUDINIT_KEYS = {
    "ciuser",
    "cipassword",
    "citype",
    "ciupgrade",
    "cicustom",
    "sshkeys",
    "nameserver",
    "searchdomain",
}
OPTION_KEYS = {
    "name",
    "description",
    "onboot",
    "tags",
    "protection",
    "startup",
    "boot",
    "bootdisk",
    "ostype",
    "tablet",
    "localtime",
    "kvm",
    "acpi",
    "agent",
    "hotplug",
    "keyboard",
    "freeze",
    "reboot",
    "startdate",
    "vmstatestorage",
    "lock",
    "template",
    "hookscript",
    "meta",
}
CPU_KEYS = {"cores", "sockets", "vcpus", "cpu", "cpulimit", "cpuunits", "affinity", "numa"}
MEMORY_KEYS = {"memory", "balloon", "shares", "hugepages", "keephugepages"}


def parse_size(text: str) -> tuple[bool, int]:
    m = _SIZE.match(text.strip())
    if not m:
        raise bad_request("size", f"unable to parse size '{text}'")
    return bool(m.group(1)), int(float(m.group(2)) * _UNITS[m.group(3)])


def fmt_size(size: int) -> str:
    for unit, div in (("T", 1024 * GiB), ("G", GiB), ("M", MiB), ("K", 1024)):
        if size % div == 0:
            return f"{size // div}{unit}"
    return str(size)


def config_priv(key: str) -> str:
    """The privilege PVE asks to change one config key (check_vm_modify_config_perm)."""
    base = re.sub(r"\d+$", "", key)
    if key in CLOUDINIT_KEYS or base == "ipconfig":
        return "VM.Config.Cloudinit"
    if key in CPU_KEYS or base == "numa":
        return "VM.Config.CPU"
    if key in MEMORY_KEYS:
        return "VM.Config.Memory"
    if DISK_KEYS.match(key):
        return "VM.Config.Disk"
    if NET_KEY.match(key):
        return "VM.Config.Network"
    if key in OPTION_KEYS:
        return "VM.Config.Options"
    return "VM.Config.HWType"


def guest_type(g: dict[str, Any]) -> str:
    """`qemu` or `lxc` (QEMU guests carry no `type`: the simulator began with them)."""
    return str(g.get("type", "qemu"))


def path_type(call: Call) -> str | None:
    """The guest type a call's path names (`/nodes/{node}/lxc/...`), if any."""
    path = call.method.path
    return "lxc" if "/lxc/" in path else "qemu" if "/qemu/" in path else None


def conf_path(kind: str | None, node: str, vmid: int) -> str:
    folder = "lxc" if kind == "lxc" else "qemu-server"
    return f"nodes/{node}/{folder}/{vmid}.conf"


def guest(call: Call, vmid: int | None = None, node: str | None = None) -> dict[str, Any]:
    """The guest a call names; a guest of the other type under `/qemu/` or `/lxc/` does
    not exist there, as on PVE (each type has its own config folder)."""
    vmid = int(vmid if vmid is not None else call.p("vmid"))
    g = call.state["guests"].get(str(vmid))
    node = node or call.p("node")
    want = path_type(call)
    if g is None or (node and g["node"] != node) or (want and guest_type(g) != want):
        raise ApiError(500, f"Configuration file '{conf_path(want, node, vmid)}' does not exist")
    return g


def start_or_undo(call: Call, undo: Callable[[], None], *args: Any, **kwargs: Any) -> str:
    """`call.cab.start_task(*args, **kwargs)`, undoing what the call already changed in the
    state when the task cannot even start (a lock held, no worker), so nothing is left
    half-made."""
    try:
        return call.cab.start_task(*args, **kwargs)
    except ApiError:
        undo()
        raise


def task_kind(call: Call, qemu_kind: str) -> str:
    """The task type of a guest action: `qmsnapshot` for QEMU is `vzsnapshot` for LXC."""
    if path_type(call) == "lxc" and qemu_kind.startswith("qm"):
        return "vz" + qemu_kind[2:]
    return qemu_kind


def check_config_lock(g: dict[str, Any], skiplock: bool = False) -> None:
    lock = g["config"].get("lock")
    if lock and not skiplock:
        raise ApiError(500, f"VM is locked ({lock})")


def digest_of(g: dict[str, Any]) -> str:
    return config_digest({"c": g["config"], "p": g["pending"]})


def check_digest(call: Call, current: str) -> None:
    """Refuse a change whose `digest` parameter (when given) is not the current one."""
    want = call.p("digest")
    if want and want != current:
        raise ApiError(
            500, "detected modified configuration - file changed by other user? Try again."
        )


def config_with_pending(g: dict[str, Any]) -> dict[str, Any]:
    """A guest's config as it will be once its pending changes apply (GET config)."""
    config = dict(g["config"])
    for key, value in g["pending"].items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def apply_pending(g: dict[str, Any]) -> None:
    """Apply a guest's pending changes to its config (at a start, stop or restart)."""
    for key, value in g["pending"].items():
        if value is None:
            g["config"].pop(key, None)
        else:
            g["config"][key] = value
    g["pending"].clear()


def pending_entries(g: dict[str, Any]) -> list[dict[str, Any]]:
    """`GET .../pending`: every option with its current value, pending value or deletion."""
    out = []
    for key in sorted(set(g["config"]) | set(g["pending"])):
        entry: dict[str, Any] = {"key": key}
        if key in g["config"]:
            entry["value"] = str(g["config"][key])
        if key in g["pending"]:
            if g["pending"][key] is None:
                entry["delete"] = 1
            else:
                entry["pending"] = str(g["pending"][key])
        out.append(entry)
    return out


def stage_changes(
    g: dict[str, Any],
    config: dict[str, Any],
    deletes: list[str],
    reverts: list[str],
    hot: Callable[[str, bool], bool],
) -> None:
    """Apply a config update: on a running guest only what `hot(key, deleting)` allows
    changes at once, the rest waits as pending (applied at the next start)."""
    running = g["status"] == "running"
    for key in reverts:
        g["pending"].pop(key, None)
    for key, value in config.items():
        if running and not hot(key, False):
            g["pending"][key] = value
        else:
            g["config"][key] = value
            g["pending"].pop(key, None)
    for key in deletes:
        if running and not hot(key, True):
            g["pending"][key] = None
        else:
            g["config"].pop(key, None)


def to_base_volume(call: Call, g: dict[str, Any], key: str, vol: str, opts: dict[str, str]) -> None:
    """Rename a guest's disk `vm-N-disk-M` to its template name `base-N-disk-M`."""
    vmid = g["vmid"]
    vols = call.state["volumes"].get(f"{g['node']}/{vol.split(':', 1)[0]}", {})
    base = vol.replace(f"vm-{vmid}-disk", f"base-{vmid}-disk")
    if vol in vols:
        vols[base] = vols.pop(vol)
    g["config"][key] = disk_string(base, opts)


def on_shared_storage(call: Call, g: dict[str, Any]) -> bool:
    """Every volume of the guest is on a shared storage (it may be cloned to another node)."""
    return all(
        call.state["storages"].get(v.split(":")[0], {}).get("shared") for v in guest_volumes(g)
    )


def check_destroyable(call: Call, g: dict[str, Any], what: str, skiplock: bool = False) -> None:
    """Refuse to destroy a locked, running or protected guest (`what`: VM or CT), or a
    template whose base volumes a linked clone still uses."""
    vmid = g["vmid"]
    check_config_lock(g, skiplock)
    if g["status"] == "running":
        raise ApiError(500, f"{what} {vmid} is running - destroy failed")
    if g["config"].get("protection"):
        raise ApiError(500, f"can't remove {what} {vmid} - protection mode enabled")
    if not g["config"].get("template"):
        return
    for other in call.state["guests"].values():
        if other is not g and any(
            f"base-{vmid}-disk" in v and "/" in v for v in guest_volumes(other)
        ):
            raise ApiError(
                500, f"base volume of {what} {vmid} is still in use by linked clone {other['vmid']}"
            )


def split_ids(value: Any) -> list[str]:
    """A list parameter of IDs (`a,b c;d`) as a list."""
    return [v for v in re.split(r"[,;\s]+", str(value or "")) if v]


def storage_with_content(call: Call, storage: str, content: str, what: str) -> dict[str, Any]:
    """A storage that exists and holds `content` (PVE's words for it: `what`)."""
    st: dict[str, Any] | None = call.state["storages"].get(storage)
    if st is None:
        raise ApiError(500, f"storage '{storage}' does not exist")
    if content not in st["content"].split(","):
        raise ApiError(500, f"storage '{storage}' does not support {what}")
    return st


def storage_for_images(call: Call, node: str, storage: str) -> None:
    storage_with_content(call, storage, "images", "vm images")
    call.cab.acl.check(call.who, f"/storage/{storage}", ["Datastore.AllocateSpace"])
    if f"{node}/{storage}" not in call.state["volumes"]:
        call.state["volumes"][f"{node}/{storage}"] = {}


def next_disk_name(call: Call, node: str, storage: str, vmid: int, prefix: str = "vm") -> str:
    vols = call.state["volumes"].setdefault(f"{node}/{storage}", {})
    n = 0
    while (
        f"{storage}:{prefix}-{vmid}-disk-{n}" in vols or f"{storage}:base-{vmid}-disk-{n}" in vols
    ):
        n += 1
    return f"{storage}:{prefix}-{vmid}-disk-{n}"


def disk_volume(value: str) -> tuple[str, dict[str, str]]:
    parts = value.split(",")
    opts = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    first = parts[0]
    if first.startswith("file="):
        first = first[5:]
    return first, opts


def disk_string(volid: str, opts: dict[str, str]) -> str:
    """A drive line in PVE's order: the volume, then the options sorted by name."""
    return ",".join([volid, *(f"{k}={opts[k]}" for k in sorted(opts))])


def _volume_entry(call: Call, node: str, volid: str) -> dict[str, Any] | None:
    storage = volid.split(":", 1)[0]
    entry: dict[str, Any] | None = call.state["volumes"].get(f"{node}/{storage}", {}).get(volid)
    return entry


def allocate_disk(call: Call, node: str, vmid: int, key: str, value: str, current: Any) -> str:
    """The drive line PVE stores for `value` (create_disks, then print_drive).

    `local-lvm:32` allocates `local-lvm:vm-101-disk-0` and records `size=32G`;
    `local-lvm:cloudinit` allocates the cloud-init volume (`media=cdrom`); an existing
    volume gets `size=` from the volume itself when it is new to this key, or when the
    client left it out (a client updating a disk's options sends no size, and a later
    resize must still find it); `none`/`cdrom` carry no size. `current` is the key's
    present line, if any."""
    data = drives.parse(key, value)
    vol = str(data.get("file", ""))
    m = re.match(r"^([a-z][a-z0-9\-_.]*[a-z0-9]):(\d+(?:\.\d+)?|cloudinit)$", vol, re.I)
    if m:
        storage, amount = m.group(1), m.group(2)
        storage_for_images(call, node, storage)
        data.pop("format", None)
        if amount == "cloudinit":
            volid = f"{storage}:vm-{vmid}-cloudinit"
            add_volume(call.state, node, storage, volid, 4 * MiB, vmid)
            data.update(file=volid, media="cdrom")
            return drives.canonical(key, data)
        volid = next_disk_name(call, node, storage, vmid)
        nbytes = int(float(amount) * GiB)
        add_volume(call.state, node, storage, volid, nbytes, vmid)
        data.update(file=volid, size=nbytes)
        return drives.canonical(key, data)
    if vol in ("", "none", "cdrom"):
        data.pop("size", None)
    elif not vol.startswith("/"):
        entry = _volume_entry(call, node, vol)
        if entry is None:
            raise bad_request(key, f"volume '{vol}' does not exist")
        same = current is not None and disk_volume(str(current))[0] == vol
        if not same or "size" not in data:
            data["size"] = int(entry["size"])
    return drives.canonical(key, data)


def set_nic(key: str, value: str) -> str:
    """The NIC line PVE stores (parse_net, then print_net): a MAC address is made up when
    none was given (BC:24:11 is Proxmox's OUI), even on update, as PVE does."""
    data = drives.parse(key, value)
    if not data.get("macaddr"):
        data["macaddr"] = random_mac()
    return drives.canonical(key, data)


def random_mac() -> str:
    return "BC:24:11:" + ":".join(f"{random.randint(0, 255):02X}" for _ in range(3))


def net_bridge(value: str) -> tuple[str | None, str | None]:
    opts = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
    return opts.get("bridge"), opts.get("tag")


def check_bridge(call: Call, node: str, key: str, value: str) -> None:
    bridge, tag = net_bridge(value)
    if not bridge:
        return
    ifaces = call.state["network"].get(node, {})
    vnets = call.state["sdn"]["vnets"]
    if bridge in vnets:
        call.cab.acl.check(call.who, f"/sdn/zones/{vnets[bridge]['zone']}/{bridge}", ["SDN.Use"])
        return
    if bridge not in ifaces or ifaces[bridge]["type"] not in ("bridge", "OVSBridge"):
        raise bad_request(key, f"bridge '{bridge}' does not exist")
    path = f"/sdn/zones/localnetwork/{bridge}" + (f"/{tag}" if tag else "")
    if not call.cab.acl.allowed(call.who, path, ["SDN.Use"]):
        call.cab.acl.check(call.who, f"/sdn/zones/localnetwork/{bridge}", ["SDN.Use"])


def guest_volumes(g: dict[str, Any]) -> list[str]:
    vols = []
    for key, value in g["config"].items():
        if DISK_KEYS.match(key) and isinstance(value, str):
            vol, _ = disk_volume(value)
            if ":" in vol:
                vols.append(vol)
    return vols


def boot_disk_size(g: dict[str, Any]) -> int:
    for key in sorted(g["config"]):
        if DISK_KEYS.match(key) and not key.startswith("unused"):
            _vol, opts = disk_volume(str(g["config"][key]))
            if opts.get("media") == "cdrom":
                continue
            size = opts.get("size")
            if size:
                return parse_size(size)[1]
    return 0


def guest_name(g: dict[str, Any]) -> str:
    if guest_type(g) == "lxc":
        return str(g["config"].get("hostname", f"CT{g['vmid']}"))
    return str(g["config"].get("name", f"VM {g['vmid']}"))


def memory_bytes(g: dict[str, Any]) -> int:
    mem = str(g["config"].get("memory", "512"))
    m = re.search(r"(?:current=)?(\d+)", mem)
    return int(m.group(1) if m else 512) * MiB


def cpus(g: dict[str, Any]) -> int:
    return int(g["config"].get("cores", 1)) * int(g["config"].get("sockets", 1))


def new_identity_config(config: dict[str, Any]) -> None:
    config["smbios1"] = f"uuid={uuid.uuid4()}"
    config["vmgenid"] = str(uuid.uuid4())
    config["meta"] = f"creation-qemu=9.2.0,ctime={int(time.time())}"


def pool_of(call: Call, vmid: int) -> str | None:
    for name, pool in call.state["access"]["pools"].items():
        if vmid in pool.get("vms", []):
            return str(name)
    return None


def remove_from_pools(call: Call, vmid: int) -> None:
    for pool in call.state["access"]["pools"].values():
        if vmid in pool.get("vms", []):
            pool["vms"].remove(vmid)


def live_status(call: Call, g: dict[str, Any]) -> dict[str, Any]:
    """The runtime fields of a guest (status/current, qemu list, cluster resources)."""
    running = g["status"] == "running"
    node_online = call.state["nodes"][g["node"]]["online"]
    uptime = int(time.time() - g["started"]) if running else 0
    mem = memory_bytes(g)
    out: dict[str, Any] = {
        "vmid": g["vmid"],
        "name": guest_name(g),
        "status": g["status"] if node_online else "unknown",
        "cpus": cpus(g),
        "maxmem": mem,
        "mem": int(mem * 0.42) if running else 0,
        "maxdisk": boot_disk_size(g),
        "disk": 0,
        "cpu": 0.03 if running else 0,
        "uptime": uptime,
        "netin": uptime * 1200,
        "netout": uptime * 800,
        "diskread": uptime * 4096,
        "diskwrite": uptime * 2048,
    }
    if running:
        out["pid"] = 10000 + g["vmid"]
        out["qmpstatus"] = "running"
    if g["config"].get("template"):
        out["template"] = 1
    if g["config"].get("tags"):
        out["tags"] = g["config"]["tags"]
    if g["config"].get("lock"):
        out["lock"] = g["config"]["lock"]
    return out


# --- accounting ---------------------------------------------------------------------------

BOOT = time.time()


def node_usage(call: Call, node: str) -> dict[str, Any]:
    n = call.state["nodes"][node]
    running = [
        g for g in call.state["guests"].values() if g["node"] == node and g["status"] == "running"
    ]
    mem = 2 * GiB + sum(memory_bytes(g) for g in running)
    vcpus = sum(cpus(g) for g in running)
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


def storage_status(call: Call, node: str, storage: str) -> dict[str, Any]:
    st = call.state["storages"][storage]
    n = call.state["nodes"][node]
    disks = sorted(n["disks"], key=lambda d: -d["size"])
    enabled = 0 if st.get("disable") else 1
    if st["type"] in ("iscsi", "iscsidirect", "esxi"):
        total = 0  # PVE reports no capacity for these (their status is (0, 0, 0, active))
    elif st.get("shared"):
        total = 4 * 1024 * GiB  # a network storage: not on the node's disks
    else:
        total = int(disks[0]["size"] * (0.1 if st["type"] == "dir" else 0.85)) if disks else 0
    used = sum(v["size"] for v in call.state["volumes"].get(f"{node}/{storage}", {}).values())
    return {
        "storage": storage,
        "type": st["type"],
        "content": st["content"],
        "shared": st.get("shared", 0),
        "active": enabled,
        "enabled": enabled,
        "total": total,
        "used": used,
        "avail": max(0, total - used),
        "used_fraction": round(used / total, 6) if total else 0,
    }
