"""A QEMU guest cloned from a template, configured with cloud-init.

- Found through `/cluster/resources` on every call, never by a stored node: a guest moved
  by HA to another node causes no drift.
- Its VMID comes from the tenant's range: the planned one when free, else the first free
  one (no `/cluster/nextid` race); a clone that loses a race moves to the next free ID.
- A create finds a guest of the same name already in the tenant's range (left by a run
  killed before the state was written) and takes it over.
- In place: cores, memory, disk growth, network, cloud-init user/keys/address, tags,
  description, start at boot. Replaced: template, pool, a VMID range that no longer holds
  it. A disk never shrinks: `check` refuses it with the sizes.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, unquote

from pulumi.dynamic import CheckFailure, DiffResult

from kloudctl.model.types import format_size
from kloudctl.proxmox.client import Client, ProxmoxError
from kloudctl.tenants.providers.base import ProxmoxProvider

MIB = 1024**2
DISK_KEYS = ("scsi0", "virtio0", "sata0", "ide0")
_SIZE_RE = re.compile(r"size=(\d+(?:\.\d+)?)([KMGT]?)")
_UNITS = {"": 1, "K": 1024, "M": MIB, "G": 1024**3, "T": 1024**4}
_CLONE_ATTEMPTS = 5


def parse_disk_size(spec: str) -> int:
    match = _SIZE_RE.search(spec or "")
    return int(float(match.group(1)) * _UNITS[match.group(2)]) if match else 0


def boot_disk(config: dict[str, Any]) -> tuple[str, str] | None:
    for key in DISK_KEYS:
        spec = str(config.get(key) or "")
        if spec and "media=cdrom" not in spec and "cloudinit" not in spec:
            return key, spec
    return None


def size_arg(n: int) -> str:
    for unit in ("T", "G", "M"):
        if n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    return f"{-(-n // _UNITS['K'])}K"


def _memory_mib(value: Any) -> int:
    # PVE 9 may render memory as a property string ("current=2048" or "2048").
    text = str(value or "0")
    match = re.search(r"(\d+)", text.split(",")[0])
    return int(match.group(1)) if match else 0


def _net0(props: dict[str, Any], current: str | None) -> str:
    model = "virtio"
    if current:
        first = current.split(",")[0]
        if "=" in first and first.split("=")[0] in ("virtio", "e1000", "rtl8139", "vmxnet3"):
            model = first  # keep the MAC address the guest already has
    parts = [model, f"bridge={props['bridge']}", "firewall=1"]
    if props.get("vlan"):
        parts.append(f"tag={int(props['vlan'])}")
    return ",".join(parts)


class TenantGuestProvider(ProxmoxProvider):
    """What VMs and containers share: memory in whole MiB, a VMID within the tenant's range,
    and a guest whose VMID left the range is replaced (deleted first: the VMID is its name)."""

    def placement_failures(self, news: dict[str, Any]) -> list[CheckFailure]:
        failures = []
        if int(news.get("memory") or 0) % MIB:
            failures.append(CheckFailure("memory", "memory must be a whole number of MiB"))
        first, last = int(news.get("vmid_first", 0)), int(news.get("vmid_last", 0))
        if not first <= int(news.get("vmid_hint", first)) <= last:
            failures.append(CheckFailure("vmid_hint", f"not within {first}-{last}"))
        return failures

    def join_firewall_group(self, client: Client, base: str, group: str | None) -> None:
        """The guest's firewall on, and the tenant's security group among its rules (once)."""
        if not group:
            return
        client.put(f"{base}/firewall/options", enable=1)
        rules = client.get(f"{base}/firewall/rules") or []
        if not any(r.get("type") == "group" and r.get("action") == group for r in rules):
            client.post(f"{base}/firewall/rules", type="group", action=group, enable=1)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        result = super().diff(_id, olds, news)
        vmid = int(olds.get("vmid") or _id)
        if not int(news["vmid_first"]) <= vmid <= int(news["vmid_last"]):
            replaces = [*(result.replaces or []), "vmid_first"]
            return DiffResult(changes=True, replaces=replaces, delete_before_replace=True)
        return result


class GuestProvider(TenantGuestProvider):
    kind = "guest"
    replace_on = ("template", "pool")
    computed = ("vmid",)

    # -- checks ------------------------------------------------------------------------

    def validate(self, olds: dict[str, Any], news: dict[str, Any]) -> list[CheckFailure]:
        failures = []
        old_disk, new_disk = int(olds.get("disk") or 0), int(news.get("disk") or 0)
        if olds and old_disk > new_disk and olds.get("template") == news.get("template"):
            failures.append(
                CheckFailure(
                    "disk",
                    f"guest {news.get('name')}: disk cannot shrink from {format_size(old_disk)} "
                    f"to {format_size(new_disk)} (Proxmox only grows disks; to shrink, "
                    "replace the guest by changing its template or name and restore its data)",
                )
            )
        return failures + self.placement_failures(news)

    # -- helpers -----------------------------------------------------------------------

    def _in_range(self, guest: dict[str, Any], props: dict[str, Any]) -> bool:
        return int(props["vmid_first"]) <= int(guest.get("vmid", 0)) <= int(props["vmid_last"])

    def _clone(self, client: Client, props: dict[str, Any], guests: list[dict[str, Any]]) -> int:
        templates = [
            g
            for g in guests
            if int(g.get("template") or 0) == 1 and g.get("name") == props["template"]
        ]
        if not templates:
            raise ProxmoxError(f"template {props['template']!r} not found on the cabinet")
        template = templates[0]
        used = {int(g["vmid"]) for g in guests}
        first, last = int(props["vmid_first"]), int(props["vmid_last"])
        hint = int(props.get("vmid_hint", first))
        candidates = [hint] + [v for v in range(first, last + 1) if v != hint]
        attempts = 0
        for vmid in candidates:
            if vmid in used:
                continue
            try:
                client.post(
                    f"nodes/{template['node']}/qemu/{template['vmid']}/clone",
                    newid=vmid,
                    name=props["name"],
                    pool=props["pool"],
                    full=1,
                )
                return vmid
            except ProxmoxError as exc:
                attempts += 1
                if "already exists" in str(exc) and attempts < _CLONE_ATTEMPTS:
                    continue  # another creator took this ID between our look-up and clone
                raise
        raise ProxmoxError(f"no free VMID left in {first}-{last} for guest {props['name']}")

    def _configure(self, client: Client, node: str, vmid: int, props: dict[str, Any]) -> None:
        base = f"nodes/{node}/qemu/{vmid}"
        config = client.get(f"{base}/config") or {}
        params: dict[str, Any] = {
            "name": props["name"],
            "cores": int(props["cores"]),
            "memory": int(props["memory"]) // MIB,
            "net0": _net0(props, config.get("net0")),
            "ipconfig0": f"ip={props['address']},gw={props['gateway']}",
            "ciuser": props.get("ciuser") or None,
            "onboot": int(bool(props.get("onboot", True))),
        }
        deletes = []
        for key, value in (
            ("tags", ";".join(props.get("tags") or [])),
            ("description", props.get("description") or ""),
            ("sshkeys", quote("\n".join(props.get("ssh_keys") or []), safe="")),
        ):
            if value:
                params[key] = value
            elif key in config:
                deletes.append(key)
        if deletes:
            params["delete"] = ",".join(deletes)
        client.post(f"{base}/config", **params)
        disk = boot_disk(config)
        if disk is not None:
            key, spec = disk
            current, wanted = parse_disk_size(spec), int(props["disk"])
            if wanted > current:
                client.put(f"{base}/resize", disk=key, size=size_arg(wanted))
            elif wanted < current:
                raise ProxmoxError(
                    f"guest {props['name']}: disk {key} is {format_size(current)}, larger than "
                    f"the declared {format_size(wanted)}; Proxmox cannot shrink a disk"
                )
        self.join_firewall_group(client, base, props.get("firewall_group"))

    # -- protocol hooks ----------------------------------------------------------------

    def _create(self, client: Client, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        guests = client.guests()
        mine = [
            g
            for g in guests
            if g.get("name") == props["name"]
            and not int(g.get("template") or 0)
            and self._in_range(g, props)
        ]
        vmid = int(mine[0]["vmid"]) if mine else self._clone(client, props, guests)
        guest = client.find_guest(vmid)
        if guest is None:
            raise ProxmoxError(f"guest {vmid} vanished right after its clone")
        self._configure(client, guest["node"], vmid, props)
        return str(vmid), {"vmid": vmid}

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        guest = client.find_guest(int(id_))
        if guest is None:
            return None
        config = client.get(f"nodes/{guest['node']}/qemu/{id_}/config") or {}
        net = dict(
            part.split("=", 1) for part in str(config.get("net0", "")).split(",") if "=" in part
        )
        ip = dict(
            part.split("=", 1)
            for part in str(config.get("ipconfig0", "")).split(",")
            if "=" in part
        )
        disk = boot_disk(config)
        keys = unquote(str(config.get("sshkeys") or ""))
        return {
            "vmid": int(id_),
            "name": config.get("name", props.get("name")),
            "pool": guest.get("pool", props.get("pool")),
            "cores": int(config.get("cores", 1)),
            "memory": _memory_mib(config.get("memory")) * MIB,
            "disk": parse_disk_size(disk[1]) if disk else props.get("disk"),
            "bridge": net.get("bridge", props.get("bridge")),
            "vlan": int(net["tag"]) if "tag" in net else None,
            "address": ip.get("ip", props.get("address")),
            "gateway": ip.get("gw", props.get("gateway")),
            "ciuser": config.get("ciuser", ""),
            "ssh_keys": [k for k in keys.splitlines() if k.strip()],
            "tags": [t for t in re.split(r"[;, ]", str(config.get("tags") or "")) if t],
            "description": config.get("description", "").rstrip("\n"),
            "onboot": bool(int(config.get("onboot", 0))),
        }

    def _update(
        self, client: Client, id_: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        guest = client.find_guest(int(id_))
        if guest is None:
            raise ProxmoxError(f"guest {news['name']} ({id_}) no longer exists: run a refresh")
        self._configure(client, guest["node"], int(id_), news)
        return {"vmid": int(id_)}

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        guest = client.find_guest(int(id_))
        if guest is None:
            return
        base = f"nodes/{guest['node']}/qemu/{id_}"
        if guest.get("status") == "running":
            client.post(f"{base}/status/stop")
        client.delete(base, purge=1, **{"destroy-unreferenced-disks": 1})
