"""Cluster-wide configuration objects kept as section configs: notification endpoints
and matchers (`notifications.cfg`), resource mappings (`mapping/*.cfg`), HA resources and
rules (`ha/resources.cfg`, `ha/rules.cfg`), replication jobs (`replication.cfg`) and
realm-sync jobs (`jobs.cfg`). Each is plain configuration to the simulator: the CRUD
semantics and digests of `sections.py`, with the derived fields PVE shows."""

from __future__ import annotations

from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes
from kloudctl.sim.handlers import sections
from kloudctl.sim.handlers.sections import SectionStore

routes = Routes()
NOTIF = "/cluster/notifications"


def _user_created(name: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"origin": "user-created"}  # as opposed to PVE's built-in targets and matchers


def _notify(store: str, secrets: tuple[str, ...] = ()) -> SectionStore:
    return SectionStore(store, "name", "endpoint", secrets=secrets, shown_too=_user_created)


ENDPOINTS = {
    "gotify": _notify("notify-gotify", ("token",)),
    "sendmail": _notify("notify-sendmail"),
    "smtp": _notify("notify-smtp", ("password",)),
    "webhook": _notify("notify-webhook", ("secret",)),
}
for _kind, _store in ENDPOINTS.items():
    sections.register(
        routes, f"{NOTIF}/endpoints/{_kind}", f"{NOTIF}/endpoints/{_kind}/{{name}}", _store
    )

MATCHERS = SectionStore("notify-matchers", "name", "matcher", shown_too=_user_created)
sections.register(routes, f"{NOTIF}/matchers", f"{NOTIF}/matchers/{{name}}", MATCHERS)


@routes("GET", f"{NOTIF}/targets")
def targets(call: Call) -> list[dict[str, Any]]:
    """Every endpoint, and PVE's built-in `mail-to-root`."""
    out = [
        {
            "name": "mail-to-root",
            "type": "sendmail",
            "origin": "builtin",
            "comment": "Send mails to root@pam's email address",
        }
    ]
    for kind, store in ENDPOINTS.items():
        for name, obj in sorted(store.objects(call).items()):
            entry = {"name": name, "type": kind, "origin": "user-created"}
            entry.update({k: obj[k] for k in ("comment", "disable") if k in obj})
            out.append(entry)
    return out


@routes("POST", f"{NOTIF}/targets/{{name}}/test")
def test_target(call: Call) -> None:
    if call.p("name") not in {t["name"] for t in targets(call)}:
        raise ApiError(500, f"could not notify via target '{call.p('name')}': unknown target")


@routes("GET", f"{NOTIF}/matcher-fields")
def matcher_fields(call: Call) -> list[dict[str, str]]:
    return [{"name": n} for n in ("hostname", "job-id", "type")]


@routes("GET", f"{NOTIF}/matcher-field-values")
def matcher_field_values(call: Call) -> list[dict[str, Any]]:
    values = [{"field": "type", "value": t} for t in ("vzdump", "replication", "fencing")]
    values += [{"field": "hostname", "value": n} for n in sorted(call.state["nodes"])]
    return values


for _kind in ("dir", "pci", "usb"):
    sections.register(
        routes,
        f"/cluster/mapping/{_kind}",
        f"/cluster/mapping/{_kind}/{{id}}",
        SectionStore(
            f"mapping-{_kind}",
            "id",
            "mapping",
            defaults={"description": ""},
            # the schema lists USB mappings' `error` as always present (empty without checks)
            shown_too=(lambda _id, _obj: {"error": []}) if _kind == "usb" else None,
        ),
    )


def ha_sid(call: Call, sid: str) -> str:
    """PVE names HA resources `vm:<id>`/`ct:<id>`; a bare VMID is completed with the
    guest's type (and refused when no guest has that VMID)."""
    if not sid.isdigit():
        return sid
    guest = call.state["guests"].get(sid)
    if guest is None:
        raise ApiError(500, f"unable to detect SID type for vmid {sid}")
    return f"{'ct' if guest.get('type') == 'lxc' else 'vm'}:{sid}"


HA_RESOURCES = SectionStore(
    "ha-resources",
    "sid",
    "resource",
    defaults={"state": "started"},
    shown_too=lambda sid, obj: {"type": sid.split(":", 1)[0]},
    complete=ha_sid,
)
sections.register(routes, "/cluster/ha/resources", "/cluster/ha/resources/{sid}", HA_RESOURCES)
sections.register(
    routes,
    "/cluster/ha/rules",
    "/cluster/ha/rules/{rule}",
    SectionStore("ha-rules", "rule", "rule"),
)


def _replication_fields(job_id: str, obj: dict[str, Any]) -> dict[str, Any]:
    guest, _, jobnum = job_id.partition("-")
    return {"guest": int(guest), "jobnum": int(jobnum or 0)}


sections.register(
    routes,
    "/cluster/replication",
    "/cluster/replication/{id}",
    SectionStore("replication", "id", "replication job", shown_too=_replication_fields),
)
sections.register(
    routes,
    "/cluster/jobs/realm-sync",
    "/cluster/jobs/realm-sync/{id}",
    SectionStore("realm-sync", "id", "job", defaults={"enabled": 1}),
    create_on_item=True,
)
