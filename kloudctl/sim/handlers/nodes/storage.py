"""What a node holds on each storage: status, content (volumes, ISO/vztmpl/import
uploads), volume allocation and deletion."""

from __future__ import annotations

import time
from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes, bad_request
from kloudctl.sim.handlers import common as c
from kloudctl.sim.handlers.nodes import vzdump

routes = Routes()


@routes("GET", "/nodes/{node}/storage")
def node_storage(call: Call) -> list[dict[str, Any]]:
    node = call.p("node")
    call.cab.node(node)
    out = []
    want = set(str(call.p("content") or "").split(",")) - {""}
    for sid in sorted(call.state["storages"]):
        if call.p("storage") and call.p("storage") != sid:
            continue
        nodes = c.split_ids(call.state["storages"][sid].get("nodes"))
        if nodes and node not in nodes:
            continue  # restricted to other nodes
        if not call.cab.acl.allowed(
            call.who, f"/storage/{sid}", ["Datastore.Audit", "Datastore.AllocateSpace"], any_=True
        ):
            continue
        s = c.storage_status(call, node, sid)
        if want and not want & set(s["content"].split(",")):
            continue
        out.append(s)
    return out


def _node_storage(call: Call) -> tuple[str, str]:
    node, sid = call.p("node"), call.p("storage")
    call.cab.node(node)
    if sid not in call.state["storages"]:
        raise ApiError(500, f"storage '{sid}' does not exist")
    return node, sid


@routes("GET", "/nodes/{node}/storage/{storage}/status")
def node_storage_status(call: Call) -> dict[str, Any]:
    node, sid = _node_storage(call)
    s = c.storage_status(call, node, sid)
    s.pop("storage")
    s.pop("used_fraction")
    return s


@routes("GET", "/nodes/{node}/storage/{storage}/content")
def storage_content(call: Call) -> list[dict[str, Any]]:
    node, sid = _node_storage(call)
    out = []
    for volid, v in sorted(call.state["volumes"].get(f"{node}/{sid}", {}).items()):
        if call.p("content") and v["content"] != call.p("content"):
            continue
        if call.p("vmid") and v.get("vmid") != call.p("vmid"):
            continue
        if v.get("vmid") and not call.cab.acl.allowed(
            call.who, f"/storage/{sid}", ["Datastore.Audit", "Datastore.AllocateSpace"], any_=True
        ):
            continue
        entry = {
            "volid": volid,
            "size": v["size"],
            "format": v["format"],
            "content": v["content"],
            "ctime": v.get("ctime", 0),
        }
        if v.get("vmid"):
            entry["vmid"] = v["vmid"]
        if "/" in volid.split(":", 1)[1]:
            entry["parent"] = volid.split(":", 1)[1].split("/")[0]
        out.append(entry)
    for entry in vzdump.backups(call, node, sid):  # the files of the storage's dump/ folder
        if call.p("content") not in (None, "backup"):
            break
        if call.p("vmid") and entry["vmid"] != call.p("vmid"):
            continue
        if call.cab.acl.allowed(call.who, f"/storage/{sid}", ["Datastore.Audit"]) or (
            call.cab.acl.allowed(call.who, f"/vms/{entry['vmid']}", ["VM.Backup"])
        ):
            out.append(entry)
    return out


@routes("POST", "/nodes/{node}/storage/{storage}/content")
def storage_alloc(call: Call) -> str:
    node, sid = _node_storage(call)
    vmid, name = call.p("vmid"), str(call.p("filename"))
    if not name.startswith(f"vm-{vmid}-"):
        raise bad_request("filename", f"illegal name '{name}' - should be 'vm-{vmid}-*'")
    volid = f"{sid}:{name}"
    vols = call.state["volumes"].setdefault(f"{node}/{sid}", {})
    if volid in vols:
        raise ApiError(500, f"volume '{volid}' already exists")
    size = c.parse_size(str(call.p("size")) + ("" if str(call.p("size"))[-1:].isalpha() else "K"))[
        1
    ]
    vols[volid] = {
        "size": size,
        "format": call.p("format") or "raw",
        "content": "images",
        "vmid": vmid,
        "ctime": int(time.time()),
    }
    return volid


def _volid(call: Call) -> str:
    vol = str(call.p("volume"))
    return vol if ":" in vol else f"{call.p('storage')}:{vol}"


def _volume(call: Call) -> tuple[dict[str, Any], str]:
    node, sid = _node_storage(call)
    volid = _volid(call)
    vols = call.state["volumes"].get(f"{node}/{sid}", {})
    if volid not in vols:
        raise ApiError(500, f"volume '{volid}' does not exist")
    return vols, volid


@routes("GET", "/nodes/{node}/storage/{storage}/content/{volume}")
def volume_info(call: Call) -> dict[str, Any]:
    if _volid(call).partition(":")[2].startswith("backup/"):
        return _backup_info(call)
    vols, volid = _volume(call)
    v = vols[volid]
    return {
        "path": f"/dev/pve/{volid.split(':', 1)[1]}",
        "size": v["size"],
        "used": v["size"],
        "format": v["format"],
    }


@routes("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}")
def volume_delete(call: Call) -> str:
    node, sid = _node_storage(call)
    if _volid(call).partition(":")[2].startswith("backup/"):
        path = vzdump.archive_file(call, _volid(call))
        if path.with_name(path.name + ".protected").exists():
            raise ApiError(500, f"volume '{_volid(call)}' is protected")

        def remove(task: dict[str, Any]) -> None:
            vzdump.delete_backup(call, node, sid, _volid(call))
            task["log"].append(f"Removed volume '{_volid(call)}'")

        return call.cab.start_task(call.who, "imgdel", "", node, remove)
    vols, volid = _volume(call)
    v = vols[volid]
    if v.get("vmid") and str(v["vmid"]) in call.state["guests"]:
        g = call.state["guests"][str(v["vmid"])]
        if volid in c.guest_volumes(g):
            raise ApiError(500, f"volume '{volid}' is in use by VM {v['vmid']}")

    def done(task: dict[str, Any]) -> None:
        vols.pop(volid, None)

    return call.cab.start_task(call.who, "imgdel", "", call.p("node"), done)


@routes("POST", "/nodes/{node}/storage/{storage}/upload")
def upload(call: Call) -> str:
    node, sid = _node_storage(call)
    content = call.p("content")
    if content not in call.state["storages"][sid]["content"].split(","):
        raise ApiError(500, f"storage '{sid}' does not support '{content}' content")
    name = str(call.p("filename"))
    sub = {"iso": "iso", "vztmpl": "vztmpl", "import": "import"}[content]
    volid = f"{sid}:{sub}/{name}"
    size = call.upload_size

    def done(task: dict[str, Any]) -> None:
        call.state["volumes"].setdefault(f"{node}/{sid}", {})[volid] = {
            "size": size,
            "format": name.rsplit(".", 1)[-1],
            "content": content,
            "ctime": int(time.time()),
        }

    return call.cab.start_task(call.who, "imgcopy", "", node, done)


def _backup_info(call: Call) -> dict[str, Any]:
    _node_storage(call)
    volid = _volid(call)
    path = vzdump.archive_file(call, volid)
    notes = path.with_name(path.name + ".notes")
    return {
        "path": str(path),
        "size": path.stat().st_size,
        "used": path.stat().st_size,
        "format": path.name.split(".", 1)[1],
        "notes": notes.read_text() if notes.exists() else "",
        "protected": path.with_name(path.name + ".protected").exists(),
    }


@routes("PUT", "/nodes/{node}/storage/{storage}/content/{volume}")
def volume_attributes(call: Call) -> None:
    """Notes and protection of a backup (PVE keeps them as `<archive>.notes` and
    `<archive>.protected`)."""
    _node_storage(call)
    volid = _volid(call)
    if not volid.partition(":")[2].startswith("backup/"):
        if call.p("notes") is not None or call.p("protected") is not None:
            raise ApiError(500, "volume notes are not supported for this storage type")
        _volume(call)
        return
    path = vzdump.archive_file(call, volid)
    if call.p("notes") is not None:
        notes = path.with_name(path.name + ".notes")
        if call.p("notes"):
            notes.write_text(str(call.p("notes")))
        else:
            notes.unlink(missing_ok=True)
    if call.p("protected") is not None:
        marker = path.with_name(path.name + ".protected")
        if call.p("protected"):
            marker.write_text("")
        else:
            marker.unlink(missing_ok=True)
