"""The storage configuration of the cluster (`/storage`: PVE's storage.cfg). What a node
holds on each storage is `nodes/storage.py`."""

from __future__ import annotations

from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes
from kloudctl.sim.handlers import common as c

routes = Routes()


@routes("GET", "/storage")
def storage_config_list(call: Call) -> list[dict[str, Any]]:
    out = []
    for sid, st in sorted(call.state["storages"].items()):
        if call.p("type") and st["type"] != call.p("type"):
            continue
        if call.cab.acl.allowed(
            call.who, f"/storage/{sid}", ["Datastore.Audit", "Datastore.AllocateSpace"], any_=True
        ):
            out.append({"storage": sid, **st, "digest": c.digest_of({"config": st, "pending": {}})})
    return out


@routes("POST", "/storage")
def storage_create(call: Call) -> dict[str, Any]:
    sid = call.p("storage")
    if sid in call.state["storages"]:
        raise ApiError(500, f"create storage failed: storage ID '{sid}' already defined")
    if call.p("type") not in ("dir", "lvmthin", "lvm", "nfs", "zfspool"):
        raise ApiError(501, f"storage type '{call.p('type')}' is not simulated by kloudctl sim")
    st = {k: v for k, v in call.params.items() if k not in ("storage",) and v is not None}
    st.setdefault("content", "images,rootdir" if st["type"] != "dir" else "iso,vztmpl,backup")
    st["shared"] = int(st.get("shared", 1 if st["type"] == "nfs" else 0))
    call.state["storages"][sid] = st
    return {"storage": sid, "type": st["type"]}


@routes("GET", "/storage/{storage}")
def storage_read(call: Call) -> dict[str, Any]:
    st = call.state["storages"].get(call.p("storage"))
    if st is None:
        raise ApiError(500, f"storage '{call.p('storage')}' does not exist")
    return {
        "storage": call.p("storage"),
        **st,
        "digest": c.digest_of({"config": st, "pending": {}}),
    }


@routes("PUT", "/storage/{storage}")
def storage_update(call: Call) -> dict[str, Any]:
    st = call.state["storages"].get(call.p("storage"))
    if st is None:
        raise ApiError(500, f"storage '{call.p('storage')}' does not exist")
    for k, v in call.params.items():
        if k not in ("storage", "delete", "digest"):
            st[k] = v
    for k in str(call.p("delete") or "").split(","):
        st.pop(k, None)
    return {"storage": call.p("storage"), "type": st["type"]}


@routes("DELETE", "/storage/{storage}")
def storage_delete(call: Call) -> None:
    sid = call.p("storage")
    if call.state["storages"].pop(sid, None) is None:
        raise ApiError(500, f"storage '{sid}' does not exist")
