"""`replication.peers: auto`: choosing a cabinet's replication peers among the federation's
members, with the reason for every member taken or left.

A member qualifies when it is active, is not the cabinet itself, is at another site (another
commune), can hold the cabinet's data (its spare disk, measured or else declared, at least
the disk the cabinet's tenants are promised) and has power headroom for a rest-server and
its disks. Among those, the lowest round-trip time wins, then the most spare disk, then the
name. The round-trip times are the last ones `federation status --interface` measured over
the mesh from this cabinet, recorded in the federation state (`rtt.json`); until then (or
for a member it could not reach) the time is "not measured" and ranks after any measured.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kloudctl import files
from kloudctl.errors import KloudError
from kloudctl.federation import LAST_SECOND
from kloudctl.federation.registry import Member, Registry, RegistryStore
from kloudctl.model.schema import Cabinet
from kloudctl.model.types import format_size

#: What hosting a peer's repository draws: a rest-server and a disk spinning more often.
MIN_HEADROOM_WATTS = 15
#: How many peers `auto` chooses (the declared form names one or more).
AUTO_PEERS = 1
#: The last round-trip times measured over the mesh, in the member's federation state.
RTT_FILE = "rtt.json"
#: A round trip beyond belief.
MAX_RTT_MS = 3_600_000.0


@dataclass(frozen=True)
class RttRecord:
    """The round trips `federation status --interface` measured from `by` to its peers."""

    by: str  # the commune that measured (this member)
    interface: str
    measured_at: float  # epoch seconds
    rtt_ms: dict[str, float]  # per member reached; one not reached is absent

    @property
    def when(self) -> str:
        moment = datetime.datetime.fromtimestamp(self.measured_at, datetime.UTC)
        return moment.strftime("%Y-%m-%d %H:%M UTC")


def record_rtts(
    folder: Path,
    by: str,
    interface: str,
    health: dict[str, dict[str, Any]],
    now: float | None = None,
) -> RttRecord:
    """Keep the round trips just measured (`mesh.health`) for the next `plan`: atomically,
    replacing the previous record (only the last measurement counts)."""
    trips = {c: float(h["rtt_ms"]) for c, h in health.items() if h.get("rtt_ms") is not None}
    record = RttRecord(by, interface, time.time() if now is None else now, trips)
    files.write_atomic(
        folder / RTT_FILE,
        json.dumps(asdict(record), indent=1, sort_keys=True) + "\n",
        what="round-trip times",
    )
    return record


def measured_rtts(folder: Path) -> RttRecord | None:
    """The last record, None when none was made; a damaged one is an error naming the file
    and the field (the next `federation status --interface` rewrites it)."""
    path = folder / RTT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise KloudError(
            f"{path}: unreadable ({exc}); `federation status --interface` rewrites it"
        ) from None
    if not isinstance(data, dict):
        raise KloudError(f"{path}: expected an object")
    for key, kind in (
        ("by", str),
        ("interface", str),
        ("measured_at", (int, float)),
        ("rtt_ms", dict),
    ):
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise KloudError(f"{path}: field '{key}' is missing or of the wrong type")
    if not 0 <= data["measured_at"] <= LAST_SECOND:
        raise KloudError(f"{path}: field 'measured_at': expected epoch seconds")
    trips: dict[str, float] = {}
    for commune, ms in data["rtt_ms"].items():
        if not isinstance(ms, (int, float)) or isinstance(ms, bool) or not 0 <= ms <= MAX_RTT_MS:
            raise KloudError(f"{path}: field 'rtt_ms.{commune}': expected milliseconds, got {ms!r}")
        trips[commune] = float(ms)
    return RttRecord(data["by"], data["interface"], float(data["measured_at"]), trips)


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
    #: Where the round-trip times came from: "measured over the mesh from X at T", or why none.
    rtt_source: str = "not measured"

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
    rtt_source: str | None = None,
) -> PeerChoice:
    needed = sum(t.quota.disk for t in cabinet.tenants)
    own = next((m.commune for m in registry.members.values() if m.cabinet == cabinet.name), None)
    choice = PeerChoice(cabinet.name, registry.federation, registry.version, needed)
    rtts = rtt_ms or {}
    if rtt_source is not None:
        choice.rtt_source = rtt_source
    elif rtts:
        choice.rtt_source = "given"
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
                    else "not measured (`federation status --interface` on this cabinet"
                    " measures it over the mesh)"
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
    (verified) and the round trips last measured there; None when this fleet holds no
    registry yet."""
    store = RegistryStore(folder)
    if not store.exists():
        return None
    return ranked_choice(folder, cabinet, store.load())


def ranked_choice(folder: Path, cabinet: Cabinet, registry: Registry) -> PeerChoice:
    """The ranking now, with the round trips last measured in `folder`. Round trips measured
    from another member's cabinet say nothing about this one's links: they are not used
    (and the plan says so). What a cabinet actually uses is the recorded, sticky choice
    (`peers.PeerResolver`)."""
    record = measured_rtts(folder)
    own = next((m.commune for m in registry.members.values() if m.cabinet == cabinet.name), None)
    if record is None:
        return choose_peers(registry, cabinet, rtt_source="not measured")
    if record.by != own:
        return choose_peers(
            registry,
            cabinet,
            rtt_source=f"not measured from this cabinet (the record in {folder / RTT_FILE} was"
            f" measured from '{record.by}')",
        )
    return choose_peers(
        registry,
        cabinet,
        rtt_ms=record.rtt_ms,
        rtt_source=f"measured over the mesh ({record.interface}) from '{record.by}' at"
        f" {record.when}",
    )
