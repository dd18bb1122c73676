"""What a cabinet's report says, computed from the model and the status history.

Plain data (numbers, dates, codes), rendered in a language by `render_html` / `render_md`
or emitted as JSON. Periods with no sample say so; nothing is invented: unknown stays
None. Time is weighted as `samples.pieces` says; uptime leaves out declared maintenance.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from kloudctl.council import i18n
from kloudctl.council.samples import overlap, pieces
from kloudctl.council.usage import usage
from kloudctl.errors import InputError
from kloudctl.model.schema import Cabinet

_OK_REPLICATION = {"ok", "not set up"}


def parse_period(text: str) -> float:
    """'30d', '90d', '12h', '2w' -> seconds (from 1 hour to 400 days: the history's reach)."""
    units = {"h": 3600, "d": 86400, "w": 604800}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit():
        raise InputError(f"--period: expected a length such as 30d, 90d, 12h or 2w, got {text!r}")
    seconds = int(number) * units[unit]
    if not 3600 <= seconds <= 400 * 86400:
        raise InputError(f"--period: expected from 1h to 400d, got {text!r}")
    return float(seconds)


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M")


def build(
    cabinet: Cabinet,
    samples: list[dict[str, Any]],
    *,
    period_seconds: float,
    lang: str = "fr",
    now: float | None = None,
    peers: list[str] | None = None,
) -> dict[str, Any]:
    """The report of one cabinet over the period ending now. `peers`: where its copies go
    (its `peers: auto` choice, `federation.peers`); by default the peers its file names."""
    now = time.time() if now is None else now
    start, end = now - period_seconds, now
    parts = pieces(samples, start, end)
    in_period = [s for s in samples if start <= s["taken_at"] < end]
    windows = [(w.start.timestamp(), w.end.timestamp()) for w in cabinet.maintenance]
    last = samples[-1] if samples else None
    last_up = next((s for s in reversed(samples) if s["reachable"]), None)

    known = sum(p.seconds for p in parts)
    maintenance = sum(overlap(p.start, p.end, windows) for p in parts)
    up = sum(p.seconds - overlap(p.start, p.end, windows) for p in parts if p.sample["reachable"])
    counted = known - maintenance
    uptime = None if counted <= 0 else round(100 * up / counted, 2)

    energy_wh, energy_measured = 0.0, True
    for p in parts:
        watts = p.sample["power_measured_watts"]
        if watts is None:
            watts, energy_measured = p.sample["power_estimated_watts"], False
        if watts is not None:
            energy_wh += watts * p.seconds / 3600
    budget_watts = cabinet.power.budget_watts
    budget_kwh = budget_watts * period_seconds / 3600 / 1000

    report: dict[str, Any] = {
        "kind": "cabinet",
        "cabinet": cabinet.name,
        "commune": cabinet.commune.name,
        "contact": {
            "name": cabinet.commune.contact.name,
            "email": cabinet.commune.contact.email,
            "phone": cabinet.commune.contact.phone,
        },
        "lang": lang,
        "generated_at": iso(now),
        "period": {"start": iso(start), "end": iso(end), "days": round(period_seconds / 86400, 2)},
        "samples_in_period": len(in_period),
        "last_sample_at": iso(last["taken_at"]) if last else None,
        "reachable_now": bool(last["reachable"]) if last else None,
        "capacity": _capacity(last_up),
        "energy": {
            "kwh": round(energy_wh / 1000, 2) if parts else None,
            "budget_kwh": round(budget_kwh, 2),
            "budget_watts": budget_watts,
            "measured": energy_measured if parts else None,
            "per_day_watts": _per_day(parts, _watts),
        },
        "storage": {
            "used_bytes": last_up["storage_used_bytes"] if last_up else None,
            "total_bytes": last_up["storage_total_bytes"] if last_up else None,
            "per_day_used_bytes": _last_per_day(in_period, "storage_used_bytes"),
        },
        "tenants": _tenants(cabinet, last_up),
        "backups": _backups(cabinet, last, now, peers),
        "mail": _mail(cabinet, in_period),
        "federation": (
            {"name": cabinet.federation.name, "role": cabinet.federation.role}
            if cabinet.federation
            else None
        ),
        "incidents": _incidents(in_period),
        "uptime": {
            "percent": uptime,
            "known_hours": round(known / 3600, 2),
            "maintenance_hours": round(maintenance / 3600, 2),
            "maintenance_windows": [
                {"start": w.start.isoformat(), "end": w.end.isoformat(), "reason": w.reason}
                for w in cabinet.maintenance
            ],
        },
        "usage": [u.as_dict() for u in usage(cabinet, samples, start, end)],
        "billing": (
            {"currency": cabinet.billing.currency} if cabinet.billing is not None else None
        ),
    }
    report["summary"] = summary(report, lang)
    return report


def _mail(cabinet: Cabinet, in_period: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The declared service, the mailboxes per domain of the period's last sample that
    read the accounts store (None: not recorded), and the last probe's verdict."""
    if cabinet.mail is None:
        return None
    counted = next((s for s in reversed(in_period) if s.get("mailboxes")), None)
    probed = next(
        (s for s in reversed(in_period) if s.get("mail_state") in ("ok", "attention", "down")),
        None,
    )
    return {
        "domains": list(cabinet.mail.domains),
        "max_mailboxes": cabinet.mail.max_mailboxes,
        "mailboxes": (
            {m["domain"]: m["mailboxes"] for m in counted["mailboxes"]} if counted else None
        ),
        "mailboxes_at": iso(counted["taken_at"]) if counted else None,
        "health": probed["mail_state"] if probed else None,
    }


def problems(report: dict[str, Any], lang: str) -> list[str]:
    w = i18n.words(lang)
    found = []
    if report["reachable_now"] is False:
        found.append(w["p_unreachable"])
    if report["incidents"]:
        found.append(w["p_incidents"].format(n=len(report["incidents"])))
    backups = report["backups"]
    if backups["state"] not in ("not set up",):
        if backups["age_seconds"] is None:
            found.append(w["p_backup_unknown"])
        elif backups["rpo_seconds"] and backups["age_seconds"] > backups["rpo_seconds"]:
            found.append(w["p_backup_old"].format(age=i18n.duration(backups["age_seconds"], lang)))
    energy = report["energy"]
    if energy["kwh"] is not None and energy["kwh"] > energy["budget_kwh"]:
        found.append(w["p_energy"])
    return found


def summary(report: dict[str, Any], lang: str) -> str:
    w = i18n.words(lang)
    if not report["samples_in_period"]:
        return w["no_samples"]
    found = problems(report, lang)
    if not found:
        return w["all_well"]
    c = report["contact"]
    contact = f"{c['name']} ({c['email']}{', ' + c['phone'] if c['phone'] else ''})"
    return w["attention"].format(problems="; ".join(found), contact=contact)


def _capacity(s: dict[str, Any] | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {
        "vcpu": {"used": s["cpu_used_cores"], "capacity": s["vcpu_capacity"]},
        "ram": {"used": s["ram_used_bytes"], "capacity": s["ram_capacity_bytes"]},
        "disk": {"used": s["storage_used_bytes"], "capacity": s["disk_capacity_bytes"]},
    }


def _watts(s: dict[str, Any]) -> float | None:
    measured = s["power_measured_watts"]
    return measured if measured is not None else s["power_estimated_watts"]


def _day(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d")


def _per_day(parts: list[Any], value: Any) -> list[dict[str, Any]]:
    """Time-weighted mean of `value` per UTC day."""
    sums: dict[str, list[float]] = {}
    for p in parts:
        v = value(p.sample)
        if v is None:
            continue
        acc = sums.setdefault(_day(p.start), [0.0, 0.0])
        acc[0] += v * p.seconds
        acc[1] += p.seconds
    return [{"day": d, "value": round(a / b, 1)} for d, (a, b) in sorted(sums.items()) if b]


def _last_per_day(samples: list[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    days: dict[str, Any] = {}
    for s in samples:
        if s[column] is not None:
            days[_day(s["taken_at"])] = s[column]
    return [{"day": d, "value": v} for d, v in sorted(days.items())]


def _tenants(cabinet: Cabinet, s: dict[str, Any] | None) -> list[dict[str, Any]]:
    seen = {t["tenant"]: t for t in (s["tenants"] if s else [])}
    declared = {t.name: t for t in cabinet.tenants}
    found = []
    for name in [t.name for t in cabinet.tenants] + sorted(set(seen) - set(declared)):
        t, d = seen.get(name), declared.get(name)
        found.append({
            "tenant": name,
            "display_name": d.display_name if d else name,
            "level": d.level if d else None,
            "guests": t["guests"] if t else None,
            "guests_running": t["guests_running"] if t else None,
            "vcpu_reserved": t["vcpu_reserved"] if t else None,
            "vcpu_quota": d.quota.vcpu if d else None,
            "ram_reserved_bytes": t["ram_reserved_bytes"] if t else None,
            "ram_quota_bytes": d.quota.ram if d else None,
            "disk_reserved_bytes": t["disk_reserved_bytes"] if t else None,
            "disk_quota_bytes": d.quota.disk if d else None,
        })  # fmt: skip
    return found


def _backups(
    cabinet: Cabinet, last: dict[str, Any] | None, now: float, peers: list[str] | None
) -> dict[str, Any]:
    if peers is None:
        peers = cabinet.replication.declared_peers if cabinet.replication else []
    rpo = cabinet.replication.rpo if cabinet.replication else None
    if cabinet.replication is None:
        return {"state": "not set up", "age_seconds": None, "peers": [], "rpo_seconds": None}
    state = last["replication_state"] if last else None
    lag = last["replication_lag_seconds"] if last else None
    # The lag was measured when the sample was taken: the copy has aged since.
    age = None if lag is None or last is None else lag + (now - last["taken_at"])
    return {"state": state or "unknown", "age_seconds": age, "peers": peers, "rpo_seconds": rpo}


def _incidents(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs of samples where the cabinet did not answer, or answered with a replication
    state other than ok: one incident per run, from its first to its last sample."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for s in samples:
        if not s["reachable"]:
            kind, detail = "unreachable", s["error"] or ""
        elif (s["replication_state"] or "not set up") not in _OK_REPLICATION:
            kind, detail = "check_failed", s["replication_state"]
        else:
            current = None
            continue
        if current is not None and current["kind"] == kind:
            current["end"] = iso(s["taken_at"])
            continue
        current = {"kind": kind, "detail": detail, "start": iso(s["taken_at"]),
                   "end": iso(s["taken_at"])}  # fmt: skip
        found.append(current)
    return found
