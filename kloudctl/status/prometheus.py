"""The fleet's status as a node_exporter textfile (text exposition format 0.0.4).

Conventions of the textfile collector: one file per producer, replaced atomically (a
half-written file would be read as such), every metric family once with its `# HELP` and
`# TYPE`, names prefixed `kloudctl_`, base units in the name (`_bytes`, `_watts`,
`_seconds`). A value that is not known (a cabinet that did not answer) is left out rather
than written as 0, except `kloudctl_status_up`, which says exactly that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from kloudctl import files
from kloudctl.status.gather import CabinetStatus
from kloudctl.status.mailprobe import NO_PROBE_ACCOUNT

Sample = tuple[dict[str, str], float]
#: Federation states that come from a verified registry.
_MEMBER_STATES = ("active", "revoked", "not a member")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(value: float) -> str:
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


class _Families:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, name: str, help_text: str, samples: Iterable[Sample]) -> None:
        rows = [f"{name}{_labels(labels)} {_value(v)}" for labels, v in samples]
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *rows]


def _capacity(s: CabinetStatus, *, resource: str, part: str) -> Any:
    return s.capacity.get(resource, {}).get(part)


def _power(s: CabinetStatus, *, key: str) -> Any:
    return s.power.get(key)


def render(statuses: list[CabinetStatus]) -> str:
    f = _Families()
    up = [s for s in statuses if s.reachable]

    def each(get: Callable[[CabinetStatus], Any]) -> list[Sample]:
        out = []
        for s in statuses:
            value = get(s)
            if value is not None:
                out.append(({"cabinet": s.cabinet}, float(value)))
        return out

    f.add(
        "kloudctl_status_up",
        "1 when the cabinet's Proxmox API answered the last status, else 0.",
        [({"cabinet": s.cabinet}, 1.0 if s.reachable else 0.0) for s in statuses],
    )
    f.add(
        "kloudctl_status_duration_seconds",
        "Time the last status took to read the cabinet.",
        each(lambda s: s.elapsed),
    )
    f.add(
        "kloudctl_status_timestamp_seconds",
        "Unix time the last status of the cabinet began.",
        each(lambda s: s.taken_at),
    )
    f.add(
        "kloudctl_nodes",
        "Nodes of the cabinet by state.",
        [
            ({"cabinet": s.cabinet, "state": state}, float(count))
            for s in up
            for state, count in (
                ("online", sum(n.online for n in s.nodes)),
                ("offline", sum(not n.online for n in s.nodes)),
            )
        ],
    )
    f.add(
        "kloudctl_guests",
        "Guests by tenant and state.",
        [
            ({"cabinet": s.cabinet, "tenant": t.tenant, "state": state}, float(count))
            for s in up
            for t in s.tenants
            for state, count in sorted(t.guests.items())
        ],
    )
    for name, resource, part, what in (
        ("kloudctl_vcpu_capacity", "vCPU", "capacity", "vCPUs the cabinet may promise."),
        ("kloudctl_vcpu_reserved", "vCPU", "reserved", "vCPUs the tenants' quotas reserve."),
        ("kloudctl_cpu_used_cores", "vCPU", "used", "Cores busy now, all nodes."),
        ("kloudctl_ram_capacity_bytes", "RAM", "capacity", "RAM the cabinet may promise."),
        ("kloudctl_ram_reserved_bytes", "RAM", "reserved", "RAM the tenants' quotas reserve."),
        ("kloudctl_ram_used_bytes", "RAM", "used", "RAM in use now, all nodes."),
        ("kloudctl_disk_capacity_bytes", "disk", "capacity", "Disk the cabinet may promise."),
        ("kloudctl_disk_reserved_bytes", "disk", "reserved", "Disk the tenants' quotas reserve."),
    ):
        f.add(name, what, each(partial(_capacity, resource=resource, part=part)))
    for name, attr, what in (
        ("kloudctl_tenant_vcpu_quota", "vcpu_quota", "A tenant's declared vCPU quota."),
        ("kloudctl_tenant_ram_quota_bytes", "ram_quota", "A tenant's declared RAM quota."),
        ("kloudctl_tenant_disk_quota_bytes", "disk_quota", "A tenant's declared disk quota."),
        ("kloudctl_tenant_vcpu_reserved", "vcpu_reserved", "vCPUs of a tenant's guests."),
        ("kloudctl_tenant_ram_reserved_bytes", "ram_reserved", "RAM of a tenant's guests."),
        ("kloudctl_tenant_disk_reserved_bytes", "disk_reserved", "Disk of a tenant's guests."),
        ("kloudctl_tenant_cpu_used_cores", "cpu_used", "Cores a tenant's guests keep busy."),
        ("kloudctl_tenant_ram_used_bytes", "ram_used", "RAM a tenant's guests use."),
        ("kloudctl_tenant_disk_used_bytes", "disk_used", "Disk a tenant's guests use."),
    ):
        f.add(
            name,
            what,
            [
                ({"cabinet": s.cabinet, "tenant": t.tenant}, float(getattr(t, attr)))
                for s in up
                for t in s.tenants
                if getattr(t, attr) is not None
            ],
        )
    f.add(
        "kloudctl_storage_used_bytes",
        "Storage used, all storages of the cabinet.",
        each(lambda s: s.storage_used),
    )
    f.add(
        "kloudctl_storage_size_bytes",
        "Storage size, all storages of the cabinet.",
        each(lambda s: s.storage_total),
    )
    for key, what in (
        ("budget_watts", "The cabinet's power budget."),
        ("planned_watts", "Draw planned from the declared guests' load."),
        ("estimated_watts", "Draw estimated from the nodes' CPU use now."),
        ("measured_watts", "Last draw recorded from the UPS."),
    ):
        f.add(f"kloudctl_power_{key}", what, each(partial(_power, key=key)))
    f.add(
        "kloudctl_power_measured_timestamp_seconds",
        "Unix time of the last draw recorded from the UPS.",
        each(lambda s: s.power.get("measured_at")),
    )
    f.add(
        "kloudctl_status_replication_lag_seconds",
        "Worst replication lag to a peer, as the last status read it.",
        each(lambda s: s.replication.get("lag_seconds")),
    )
    federated = [s for s in statuses if s.federation.get("state") in _MEMBER_STATES]
    f.add(
        "kloudctl_federation_member",
        "1 for the cabinet's membership state in the federation, as the local registry says.",
        [
            (
                {
                    "cabinet": s.cabinet,
                    "federation": str(s.federation["federation"]),
                    "state": str(s.federation["state"]),
                },
                1.0,
            )
            for s in federated
        ],
    )
    f.add(
        "kloudctl_federation_registry_version",
        "Version of the federation registry held locally.",
        [
            (
                {"cabinet": s.cabinet, "federation": str(s.federation["federation"])},
                float(s.federation["registry_version"]),
            )
            for s in federated
        ],
    )
    f.add(
        "kloudctl_federation_registry_verified",
        "1 when the local federation registry verified, 0 when it did not (tampered, rolled"
        " back); absent without a registry.",
        [
            ({"cabinet": s.cabinet}, 0.0 if s.federation.get("state") == "error" else 1.0)
            for s in statuses
            if s.federation.get("state") in (*_MEMBER_STATES, "error")
        ],
    )
    _mail(f, statuses)
    return "\n".join(f.lines) + "\n"


def _mail(f: _Families, statuses: list[CabinetStatus]) -> None:
    """The mail probe's findings; cabinets whose mail was not probed are left out."""
    probed = [s for s in statuses if "up" in s.mail]
    f.add(
        "kloudctl_mail_up",
        "1 when every mail service (SMTP banners, IMAPS greeting) answered the last status.",
        [({"cabinet": s.cabinet}, 1.0 if s.mail["up"] else 0.0) for s in probed],
    )
    f.add(
        "kloudctl_mail_healthy",
        "1 when the last mail probe found nothing needing attention.",
        [({"cabinet": s.cabinet}, 1.0 if s.mail["state"] == "ok" else 0.0) for s in probed],
    )
    f.add(
        "kloudctl_mail_smtp_up",
        "1 when the SMTP port greeted with a 220 banner.",
        [
            ({"cabinet": s.cabinet, "port": str(p["port"])}, 1.0 if p["banner"] else 0.0)
            for s in probed
            for p in s.mail["smtp"]
        ],
    )
    f.add(
        "kloudctl_mail_smtp_starttls",
        "1 when the SMTP port offered STARTTLS and the handshake worked.",
        [
            ({"cabinet": s.cabinet, "port": str(p["port"])}, 0.0 if p["error"] else 1.0)
            for s in probed
            for p in s.mail["smtp"]
            if p["banner"]
        ],
    )
    f.add(
        "kloudctl_mail_imap_login_ok",
        "1 when the probe account logged in over IMAPS; absent without a probe account.",
        [
            ({"cabinet": s.cabinet}, 1.0 if s.mail["imap"]["login"] == "ok" else 0.0)
            for s in probed
            if s.mail["imap"]["login"] not in (None, NO_PROBE_ACCOUNT)
        ],
    )
    certs = [s for s in probed if s.mail.get("certificate")]
    f.add(
        "kloudctl_mail_certificate_expiry_seconds",
        "Unix time the mail certificate that expires first ends (not after).",
        [({"cabinet": s.cabinet}, s.mail["certificate"]["expires_at"]) for s in certs],
    )
    f.add(
        "kloudctl_mail_certificate_trusted",
        "1 when the mail certificate verifies against the system's roots for the host name.",
        [
            ({"cabinet": s.cabinet}, 1.0 if s.mail["certificate"]["trust"] == "trusted" else 0.0)
            for s in certs
        ],
    )
    f.add(
        "kloudctl_mail_certificate_self_signed",
        "1 when the mail certificate is self-signed (the mail role's fallback without ACME).",
        [
            ({"cabinet": s.cabinet}, 1.0 if s.mail["certificate"]["self_signed"] else 0.0)
            for s in certs
        ],
    )
    f.add(
        "kloudctl_mail_mailboxes",
        "Mailboxes per domain, read from the accounts store.",
        [
            ({"cabinet": s.cabinet, "domain": domain}, float(count))
            for s in probed
            for domain, count in sorted((s.mail.get("mailboxes") or {}).items())
        ],
    )


def write_textfile(path: Path, statuses: list[CabinetStatus]) -> None:
    """Replace the textfile atomically; a file someone made keeps its mode (node_exporter
    must still read it)."""
    files.write_atomic(path, render(statuses), keep_mode=True, what="Prometheus textfile")
