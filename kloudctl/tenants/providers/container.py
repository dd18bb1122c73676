"""An LXC container made from a `vztmpl` template (`POST /nodes/{node}/lxc`).

Same rules as the QEMU guest (`guest.py`):
- found through `/cluster/resources` on every call, never by a stored node;
- its VMID comes from the tenant's range: the planned one when free, else the first free
  one (no `/cluster/nextid` race); a create that loses a race moves to the next free ID;
- a create finds a container of the same name already in the tenant's range (left by a
  run killed before the state was written) and takes it over;
- in place: cores, memory, root disk growth, network, tags, description, start at boot.
  Replaced: template, pool, storage, `unprivileged` (Proxmox fixes it at creation: the
  container's files are owned by mapped IDs), a VMID range that no longer holds it. The
  root disk never shrinks: `check` refuses it with the sizes.
"""

from __future__ import annotations

import re
from typing import Any

from pulumi.dynamic import CheckFailure

from kloudctl.model.types import format_size
from kloudctl.proxmox.client import Client, ProxmoxError
from kloudctl.tenants.providers.guest import MIB, TenantGuestProvider, parse_disk_size

GIB = 1024**3
_CREATE_ATTEMPTS = 5
_NIC_KEYS = ("name", "bridge", "firewall", "tag", "ip", "gw", "hwaddr", "type")


def _props(line: Any) -> dict[str, str]:
    return dict(part.split("=", 1) for part in str(line or "").split(",") if "=" in part)


def net0(props: dict[str, Any], current: str | None) -> str:
    """The container's NIC: on the tenant's VLAN of the bridge, behind the firewall, with
    its static address; the MAC address it already has is kept."""
    nic = {
        "name": "eth0",
        "bridge": str(props["bridge"]),
        "firewall": "1",
        "ip": str(props["address"]),
        "gw": str(props["gateway"]),
    }
    if props.get("vlan"):
        nic["tag"] = str(int(props["vlan"]))
    hwaddr = _props(current).get("hwaddr")
    if hwaddr:
        nic["hwaddr"] = hwaddr
    return ",".join(f"{k}={nic[k]}" for k in _NIC_KEYS if k in nic)


def _guest_path(guest: dict[str, Any]) -> str:
    return f"nodes/{guest['node']}/lxc/{guest['vmid']}"


class ContainerProvider(TenantGuestProvider):
    kind = "container"
    replace_on = ("template", "pool", "storage", "unprivileged")
    computed = ("vmid",)

    # -- checks ------------------------------------------------------------------------

    def validate(self, olds: dict[str, Any], news: dict[str, Any]) -> list[CheckFailure]:
        failures = []
        old_disk, new_disk = int(olds.get("disk") or 0), int(news.get("disk") or 0)
        same_volume = all(olds.get(k) == news.get(k) for k in self.replace_on)
        if olds and old_disk > new_disk and same_volume:
            failures.append(
                CheckFailure(
                    "disk",
                    f"container {news.get('name')}: root disk cannot shrink from "
                    f"{format_size(old_disk)} to {format_size(new_disk)} (Proxmox only grows "
                    "disks; to shrink, replace the container and restore its data)",
                )
            )
        if int(news.get("disk") or 0) % GIB:
            failures.append(CheckFailure("disk", "the root disk must be a whole number of GiB"))
        return failures + self.placement_failures(news)

    # -- helpers -----------------------------------------------------------------------

    def _template_node(self, client: Client, template: str) -> str:
        """The first online node whose storage holds the template (a `local` storage is
        each node's own)."""
        storage = template.split(":", 1)[0]
        for node in sorted(client.get("nodes") or [], key=lambda n: str(n.get("node"))):
            if node.get("status") != "online":
                continue
            try:
                volumes = client.get(
                    f"nodes/{node['node']}/storage/{storage}/content", content="vztmpl"
                )
            except ProxmoxError:
                continue  # the storage is not on that node
            if any(v.get("volid") == template for v in volumes or []):
                return str(node["node"])
        raise ProxmoxError(f"container template {template!r} not found on any online node")

    def _make(self, client: Client, props: dict[str, Any], guests: list[dict[str, Any]]) -> int:
        node = self._template_node(client, str(props["template"]))
        used = {int(g["vmid"]) for g in guests}
        first, last = int(props["vmid_first"]), int(props["vmid_last"])
        hint = int(props.get("vmid_hint", last))
        # containers fill the range from the top (the plan's rule), VMs from the bottom
        candidates = [hint] + [v for v in range(last, first - 1, -1) if v != hint]
        params: dict[str, Any] = {
            "ostemplate": props["template"],
            "hostname": props["name"],
            "pool": props["pool"],
            "cores": int(props["cores"]),
            "memory": int(props["memory"]) // MIB,
            "rootfs": f"{props['storage']}:{int(props['disk']) // GIB}",
            "net0": net0(props, None),
            "unprivileged": int(bool(props.get("unprivileged", True))),
            "onboot": int(bool(props.get("onboot", True))),
        }
        if props.get("tags"):
            params["tags"] = ";".join(props["tags"])
        if props.get("description"):
            params["description"] = props["description"]
        attempts = 0
        for vmid in candidates:
            if vmid in used:
                continue
            try:
                client.post(f"nodes/{node}/lxc", vmid=vmid, **params)
                return vmid
            except ProxmoxError as exc:
                attempts += 1
                if "already exists" in str(exc) and attempts < _CREATE_ATTEMPTS:
                    continue  # another creator took this ID between our look-up and create
                raise
        raise ProxmoxError(f"no free VMID left in {first}-{last} for container {props['name']}")

    def _configure(self, client: Client, guest: dict[str, Any], props: dict[str, Any]) -> None:
        base = _guest_path(guest)
        config = client.get(f"{base}/config") or {}
        params: dict[str, Any] = {
            "hostname": props["name"],
            "cores": int(props["cores"]),
            "memory": int(props["memory"]) // MIB,
            "net0": net0(props, config.get("net0")),
            "onboot": int(bool(props.get("onboot", True))),
        }
        deletes = []
        for key, value in (
            ("tags", ";".join(props.get("tags") or [])),
            ("description", props.get("description") or ""),
        ):
            if value:
                params[key] = value
            elif key in config:
                deletes.append(key)
        if deletes:
            params["delete"] = ",".join(deletes)
        client.put(f"{base}/config", **params)
        current, wanted = parse_disk_size(str(config.get("rootfs") or "")), int(props["disk"])
        if wanted > current:
            client.put(f"{base}/resize", disk="rootfs", size=f"{wanted // GIB}G")
        elif wanted < current:
            raise ProxmoxError(
                f"container {props['name']}: root disk is {format_size(current)}, larger than "
                f"the declared {format_size(wanted)}; Proxmox cannot shrink a disk"
            )
        self.join_firewall_group(client, base, props.get("firewall_group"))

    def _find(self, client: Client, vmid: int) -> dict[str, Any] | None:
        guest = client.find_guest(vmid)
        if guest is not None and guest.get("type") != "lxc":
            raise ProxmoxError(f"guest {vmid} is a {guest.get('type')} guest, not a container")
        return guest

    # -- protocol hooks ----------------------------------------------------------------

    def _create(self, client: Client, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        guests = client.guests()
        first, last = int(props["vmid_first"]), int(props["vmid_last"])
        mine = [
            g
            for g in guests
            if g.get("name") == props["name"]
            and g.get("type") == "lxc"
            and not int(g.get("template") or 0)
            and first <= int(g["vmid"]) <= last
        ]
        vmid = int(mine[0]["vmid"]) if mine else self._make(client, props, guests)
        guest = self._find(client, vmid)
        if guest is None:
            raise ProxmoxError(f"container {vmid} vanished right after its creation")
        self._configure(client, guest, props)
        return str(vmid), {"vmid": vmid}

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        guest = self._find(client, int(id_))
        if guest is None:
            return None
        config = client.get(f"{_guest_path(guest)}/config") or {}
        net = _props(config.get("net0"))
        rootfs = str(config.get("rootfs") or "")
        return {
            "vmid": int(id_),
            "name": config.get("hostname", props.get("name")),
            "pool": guest.get("pool", props.get("pool")),
            "storage": rootfs.split(":", 1)[0] if ":" in rootfs else props.get("storage"),
            "cores": int(config.get("cores", 1)),
            "memory": int(config.get("memory", 512)) * MIB,
            "disk": parse_disk_size(rootfs) or props.get("disk"),
            "bridge": net.get("bridge", props.get("bridge")),
            "vlan": int(net["tag"]) if "tag" in net else None,
            "address": net.get("ip", props.get("address")),
            "gateway": net.get("gw", props.get("gateway")),
            "unprivileged": bool(int(config.get("unprivileged", 0))),
            "tags": [t for t in re.split(r"[;, ]", str(config.get("tags") or "")) if t],
            "description": str(config.get("description", "")).rstrip("\n"),
            "onboot": bool(int(config.get("onboot", 0))),
        }

    def _update(
        self, client: Client, id_: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        guest = self._find(client, int(id_))
        if guest is None:
            raise ProxmoxError(f"container {news['name']} ({id_}) no longer exists: run a refresh")
        self._configure(client, guest, news)
        return {"vmid": int(id_)}

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        guest = self._find(client, int(id_))
        if guest is None:
            return
        base = _guest_path(guest)
        if guest.get("status") == "running":
            client.post(f"{base}/status/stop")
        client.delete(base, purge=1, **{"destroy-unreferenced-disks": 1})
