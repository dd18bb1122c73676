"""`replication.peers: auto`: choosing a cabinet's replication peers among the federation's
members, with the reason for every member taken or left.

A member qualifies when it is active, is not the cabinet itself, is at another site (another
commune), can hold the cabinet's data (its spare disk, measured or else declared, at least
the disk the cabinet's tenants are promised) and has power headroom for a rest-server and
its disks. Among those, the lowest round-trip time wins (measured over the mesh; until the
mesh exists it is unknown and the most spare disk decides), then the name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kloudctl.federation.registry import Member, Registry, RegistryStore
from kloudctl.model.schema import Cabinet
from kloudctl.model.types import format_size

#: What hosting a peer's repository draws: a rest-server and a disk spinning more often.
MIN_HEADROOM_WATTS = 15
#: How many peers `auto` chooses (the declared form names one or more).
AUTO_PEERS = 1


@dataclass
class Candidate:
    commune: str
    cabinet: str
    eligible: bool
    reasons: list[str]
    chosen: bool = False
    rtt_ms: float | None = None
    spare_disk: int | None = None


@dataclass
class PeerChoice:
    cabinet: str
    federation: str
    registry_version: int
    needed_disk: int
    chosen: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _measured_or_declared(member: Member, what: str) -> int | None:
    measured = member.capacity.get(f"{what}_measured")
    return measured if measured is not None else member.capacity.get(f"{what}_declared")


def choose_peers(
    registry: Registry,
    cabinet: Cabinet,
    rtt_ms: dict[str, float] | None = None,
    count: int = AUTO_PEERS,
) -> PeerChoice:
    needed = sum(t.quota.disk for t in cabinet.tenants)
    own = next((m.commune for m in registry.members.values() if m.cabinet == cabinet.name), None)
    choice = PeerChoice(cabinet.name, registry.federation, registry.version, needed)
    rtts = rtt_ms or {}
    for commune, member in sorted(registry.members.items()):
        reasons: list[str] = []
        spare = _measured_or_declared(member, "spare_disk")
        headroom = _measured_or_declared(member, "power_headroom")
        if member.cabinet == cabinet.name:
            reasons.append("the cabinet itself")
        elif member.state != "active":
            reasons.append(f"{member.state} in the registry")
        else:
            if commune == own:
                reasons.append("same site (same commune)")
            if spare is None or spare < needed:
                shown = "unknown" if spare is None else format_size(spare)
                reasons.append(f"spare disk {shown} < {format_size(needed)} needed")
            if headroom is None or headroom < MIN_HEADROOM_WATTS:
                shown = "unknown" if headroom is None else f"{headroom} W"
                reasons.append(f"power headroom {shown} < {MIN_HEADROOM_WATTS} W needed")
        eligible = not reasons
        if eligible:
            rtt = rtts.get(commune)
            reasons.append(
                f"different site, spare disk {format_size(spare or 0)} >= {format_size(needed)},"
                f" power headroom {headroom} W, round-trip time "
                + (
                    f"{rtt:.1f} ms"
                    if rtt is not None
                    else "not measured yet (the mesh measures it)"
                )
            )
        choice.candidates.append(
            Candidate(commune, member.cabinet, eligible, reasons, rtt_ms=rtts.get(commune),
                      spare_disk=spare)
        )  # fmt: skip
    ranked = sorted(
        (c for c in choice.candidates if c.eligible),
        key=lambda c: (
            c.rtt_ms if c.rtt_ms is not None else float("inf"),
            -(c.spare_disk or 0),
            c.cabinet,
        ),
    )
    for candidate in ranked[:count]:
        candidate.chosen = True
        choice.chosen.append(candidate.cabinet)
    return choice


def planned_peers(folder: Path, cabinet: Cabinet) -> PeerChoice | None:
    """The choice for a cabinet declaring `peers: auto`, from the registry held in `folder`
    (verified); None when this fleet holds no registry yet."""
    store = RegistryStore(folder)
    if not store.exists():
        return None
    return choose_peers(store.load(), cabinet)
