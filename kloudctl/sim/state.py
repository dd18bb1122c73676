"""The state of one simulated cabinet: a plain JSON document, seeded from the fleet model.

Everything the API can read or change lives in `CabinetState.data` (JSON types only), so
persistence is one atomic write. Secrets are kept as salted hashes only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

GiB = 1024**3
MiB = 1024**2
PVE_VERSION = {"version": "9.1.3", "release": "9.1", "repoid": "4d1a8bd4a93e1a1c"}
TEMPLATE_VMID = 9000
TEMPLATE_NAME = "debian-12-cloud"
TEMPLATE_DISK = 3 * GiB


#: Storage types whose content is files in a folder (Proxmox's path-based storages).
PATH_STORAGE_TYPES = ("dir", "nfs", "cifs", "cephfs", "glusterfs", "btrfs")
#: Stand-in data per disk in a simulated vzdump archive, unless a cabinet says otherwise.
ARCHIVE_DISK_BYTES = 4096


def hash_secret(secret: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt.encode(), 1000).hex()
    return f"{salt}${digest}"


def verify_secret(secret: str, stored: str) -> bool:
    salt, _, _ = stored.partition("$")
    return hmac.compare_digest(hash_secret(secret, salt), stored)


def config_digest(config: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _node(
    name: str, cores: int, ram: int, disks: list[dict[str, Any]], index: int
) -> dict[str, Any]:
    return {
        "name": name,
        "cores": cores,
        "memory": ram,
        "disks": disks,
        "online": True,
        "ip": f"10.0.0.{index + 1}",
        "nodeid": index + 1,
    }


def new_state(name: str, cabinet: Any | None = None) -> dict[str, Any]:
    """A fresh cabinet: nodes from the model (or one default node), storages, a template."""
    nodes: dict[str, dict[str, Any]] = {}
    storage_name = "local-lvm"
    if cabinet is not None:
        for i, n in enumerate(cabinet.hardware.nodes):
            disks = [{"name": d.name, "size": int(d.size), "kind": d.kind} for d in n.disks]
            nodes[n.name] = _node(n.name, n.cores, int(n.ram), disks, i)
        storage_name = cabinet.hardware.storage
    else:
        nodes["pve1"] = _node(
            "pve1", 16, 64 * GiB, [{"name": "nvme0", "size": 2048 * GiB, "kind": "nvme"}], 0
        )
    storages = {
        "local": {
            "type": "dir",
            "path": "/var/lib/vz",
            "content": "iso,vztmpl,backup,snippets,import",
            "shared": 0,
        },
        storage_name: {
            "type": "lvmthin",
            "thinpool": "data",
            "vgname": "pve",
            "content": "images,rootdir",
            "shared": 0,
        },
    }
    volumes: dict[str, dict[str, Any]] = {}
    for node in nodes:
        volumes[f"{node}/local"] = {
            "local:iso/debian-12.8.0-amd64-netinst.iso": {
                "size": 660 * MiB,
                "format": "iso",
                "content": "iso",
            },
            "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst": {
                "size": 120 * MiB,
                "format": "tzst",
                "content": "vztmpl",
            },
        }
        volumes[f"{node}/{storage_name}"] = {}
    first = next(iter(nodes))
    state: dict[str, Any] = {
        "name": name,
        "cluster": name,
        "storage_default": storage_name,
        "nodes": nodes,
        "storages": storages,
        "volumes": volumes,
        "guests": {},
        "access": {
            "users": {
                "root@pam": {
                    "enable": 1,
                    "expire": 0,
                    "groups": [],
                    "tokens": {},
                    "comment": "root",
                    "email": "",
                },
            },
            "groups": {},
            "roles": {},
            "acl": [],
            "pools": {},
            "domains": {
                "pam": {"type": "pam", "comment": "Linux PAM standard authentication"},
                "pve": {"type": "pve", "comment": "Proxmox VE authentication server"},
            },
        },
        "firewall": {
            "cluster": fw_scope(),
            "nodes": {n: fw_scope() for n in nodes},
            "vms": {},
            "groups": {},
        },
        "network": {n: _default_network(nodes[n]) for n in nodes},
        "network_pending": {},
        "sdn": {"zones": {}, "vnets": {}, "subnets": {}, "pending": 0},
        "tasks": [],
        "next_pid": 4000,
    }
    template = {
        "name": TEMPLATE_NAME,
        "template": 1,
        "cores": 1,
        "sockets": 1,
        "memory": "2048",
        "ostype": "l26",
        "scsihw": "virtio-scsi-single",
        "scsi0": f"{storage_name}:base-{TEMPLATE_VMID}-disk-0,size=3G",
        "ide2": f"{storage_name}:vm-{TEMPLATE_VMID}-cloudinit,media=cdrom",
        "net0": "virtio=BC:24:11:00:90:00,bridge=vmbr0",
        "boot": "order=scsi0",
        "serial0": "socket",
        "vga": "serial0",
        "agent": "1",
        "meta": "creation-qemu=9.2.0,ctime=1735689600",
        "smbios1": "uuid=6d1c3b1e-0000-4000-8000-000000009000",
        "vmgenid": "6d1c3b1e-0000-4000-8000-00000000a000",
    }
    add_guest(state, TEMPLATE_VMID, first, template)
    add_volume(
        state,
        first,
        storage_name,
        f"{storage_name}:base-{TEMPLATE_VMID}-disk-0",
        TEMPLATE_DISK,
        TEMPLATE_VMID,
    )
    add_volume(
        state,
        first,
        storage_name,
        f"{storage_name}:vm-{TEMPLATE_VMID}-cloudinit",
        4 * MiB,
        TEMPLATE_VMID,
    )
    return state


def fw_scope() -> dict[str, Any]:
    """The firewall of one scope (cluster, node or guest), empty."""
    return {"options": {}, "rules": [], "aliases": {}, "ipset": {}}


def _default_network(node: dict[str, Any]) -> dict[str, Any]:
    return {
        "eno1": {
            "iface": "eno1",
            "type": "eth",
            "method": "manual",
            "families": ["inet"],
            "active": 1,
            "autostart": 1,
        },
        "vmbr0": {
            "iface": "vmbr0",
            "type": "bridge",
            "method": "static",
            "families": ["inet"],
            "cidr": f"{node['ip']}/24",
            "address": node["ip"],
            "netmask": "24",
            "gateway": "10.0.0.254",
            "bridge_ports": "eno1",
            "bridge_stp": "off",
            "bridge_fd": "0",
            "bridge_vlan_aware": 1,
            "active": 1,
            "autostart": 1,
        },
    }


def add_guest(
    state: dict[str, Any], vmid: int, node: str, config: dict[str, Any]
) -> dict[str, Any]:
    guest = {
        "vmid": vmid,
        "node": node,
        "status": "stopped",
        "config": config,
        "pending": {},
        "started": 0,
    }
    state["guests"][str(vmid)] = guest
    fw = state["firewall"]["vms"]
    fw.setdefault(str(vmid), fw_scope())
    return guest


def add_volume(
    state: dict[str, Any], node: str, storage: str, volid: str, size: int, vmid: int
) -> None:
    state["volumes"].setdefault(f"{node}/{storage}", {})[volid] = {
        "size": size,
        "format": "raw",
        "content": "images",
        "vmid": vmid,
        "ctime": int(time.time()),
    }


def new_secret() -> str:
    return secrets.token_urlsafe(18)
