"""The fleet report for Kloud'Ici: one line per commune from the status history."""

from __future__ import annotations

from typing import Any

from kloudctl.council import report as cabinet_report
from kloudctl.federation.peers import PeerResolver
from kloudctl.model.fleet import Fleet


def build(
    fleet: Fleet,
    samples: list[dict[str, Any]],
    *,
    period_seconds: float,
    lang: str,
    now: float,
) -> dict[str, Any]:
    by_cabinet: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        by_cabinet.setdefault(s["cabinet"], []).append(s)
    rows = []
    resolver = PeerResolver(fleet)
    for cabinet in sorted(fleet, key=lambda c: c.name):
        own = by_cabinet.get(cabinet.name, [])
        peers = resolver.peers(cabinet.name, strict=False)
        r = cabinet_report.build(
            cabinet, own, period_seconds=period_seconds, lang=lang, now=now, peers=peers
        )
        last = own[-1] if own else None
        if last is None:
            health = "none"
        elif not last["reachable"]:
            health = "down"
        else:
            health = "attention" if cabinet_report.problems(r, lang) else "ok"
        cap = r["capacity"] or {}
        vcpu = cap.get("vcpu") or {}
        left = (
            vcpu["capacity"] - vcpu["used"]
            if vcpu.get("capacity") is not None and vcpu.get("used") is not None
            else None
        )
        watts = None
        if last is not None:
            watts = last["power_measured_watts"]
            if watts is None:
                watts = last["power_estimated_watts"]
        rows.append({
            "cabinet": cabinet.name,
            "commune": cabinet.commune.name,
            "health": health,
            "summary": r["summary"],
            "power_watts": watts,
            "budget_watts": cabinet.power.budget_watts,
            "lag_seconds": r["backups"]["age_seconds"],
            "vcpu_left": None if left is None else round(left, 1),
            "energy_kwh": r["energy"]["kwh"],
            "uptime_percent": r["uptime"]["percent"],
            "last_sample_at": r["last_sample_at"],
        })  # fmt: skip
    start, end = now - period_seconds, now
    return {
        "kind": "fleet",
        "lang": lang,
        "generated_at": cabinet_report.iso(now),
        "period": {
            "start": cabinet_report.iso(start),
            "end": cabinet_report.iso(end),
            "days": round(period_seconds / 86400, 2),
        },
        "cabinets": rows,
    }
