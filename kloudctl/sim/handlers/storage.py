"""The storage configuration of the cluster (`/storage`: PVE's storage.cfg). What a node
holds on each storage is `nodes/storage.py`; the rules of each storage type are
`storage_types.py`.

As PVE (API2/Storage/Config.pm, SectionConfig::check_config, Plugin::decode_value): an
option the type does not take is refused, required and fixed options must be given on
create, fixed options never change, content types the type does not support are dropped
(PVE warns) and `none` cannot be combined with others, the type's default content is
stored when none is given, network storages are shared, mounted ones get
`path /mnt/pve/<storage>`, and passwords and keys never land in the configuration.
"""

from __future__ import annotations

from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes
from kloudctl.sim.handlers import common as c
from kloudctl.sim.handlers.storage_types import OPTIONAL, TYPES, StorageType

routes = Routes()

_NOT_OPTIONS = {"storage", "type", "delete", "digest"}


def _content(kind: StorageType, value: str) -> str:
    """PVE's decode_value for `content`: unsupported types dropped, `none` alone."""
    wanted = {v for v in c.split_ids(value)}
    kept = wanted & kind.content
    if "none" in kept and len(kept) > 1:
        raise ApiError(500, "unable to combine 'none' with other content types")
    if not kept and "none" not in kind.content:
        raise ApiError(500, "storage does not support content type 'none'")
    return ",".join(sorted(kept))


def _checked(kind: StorageType, params: dict[str, Any], create: bool) -> dict[str, Any]:
    """SectionConfig::check_config: the options given, as storage.cfg would hold them."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in _NOT_OPTIONS or value is None:
            continue
        if not kind.accepts(key):
            raise ApiError(500, f"unexpected property '{key}'")
        if not create and key in kind.fixed():
            raise ApiError(500, f"can't change value of fixed parameter '{key}'")
        if key == "content":
            value = _content(kind, str(value))
        elif key == "format" and kind.formats and value not in kind.formats:
            raise ApiError(500, f"storage does not support format '{value}'")
        out[key] = value
    return out


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
    sid, type_ = call.p("storage"), call.p("type")
    kind = TYPES[type_]
    params = {k: v for k, v in call.params.items() if k not in kind.sensitive}
    if not params.get("nodes"):
        params.pop("nodes", None)  # PVE drops an empty node list
    if kind.mounted and not params.get("path"):
        params["path"] = f"/mnt/pve/{sid}"
    st = {"type": type_, **_checked(kind, params, create=True)}
    for option in kind.required():
        if option not in st:
            raise ApiError(500, f"missing value for required option '{option}'")
    if sid in call.state["storages"]:
        raise ApiError(500, f"create storage failed: storage ID '{sid}' already defined")
    if type_ == "esxi" and call.p("password") is None:
        raise ApiError(500, "create storage failed: missing password")
    st.setdefault("content", ",".join(sorted(kind.default_content)))
    if kind.shared:
        st["shared"] = 1
    call.state["storages"][sid] = st
    return {"storage": sid, "type": type_}


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
    sid = call.p("storage")
    st = call.state["storages"].get(sid)
    if st is None:
        raise ApiError(500, f"storage '{sid}' does not exist")
    c.check_digest(call, c.digest_of({"config": st, "pending": {}}))
    kind = TYPES[st["type"]]
    try:
        changes = _checked(
            kind, {k: v for k, v in call.params.items() if k not in kind.sensitive}, False
        )
        deletes = c.split_ids(call.p("delete"))
        for key in deletes:
            how = kind.options.get(key, OPTIONAL if kind.accepts(key) else None)
            if how is None:
                raise ApiError(500, f"no such option '{key}'")
            if how != OPTIONAL:
                raise ApiError(500, f"unable to delete required option '{key}'")
            if key in changes:
                raise ApiError(500, f"cannot set and delete property '{key}' at the same time!")
    except ApiError as exc:
        raise ApiError(500, f"update storage failed: {exc.message}") from None
    for key in deletes:
        st.pop(key, None)
    st.update(changes)
    if "content" not in st:
        st["content"] = ",".join(sorted(kind.default_content))
    return {"storage": sid, "type": st["type"]}


@routes("DELETE", "/storage/{storage}")
def storage_delete(call: Call) -> None:
    sid = call.p("storage")
    if call.state["storages"].pop(sid, None) is None:
        raise ApiError(500, f"storage '{sid}' does not exist")
