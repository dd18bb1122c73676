"""A cabinet's effective replication peers: the ones its file names, or, for `peers: auto`,
the federation's choice (`choice.py`), made once and then kept.

The choice is sticky: a copy lives where it was sent, so moving to another peer means a
second full upload and a history split over two repositories. Once made, the choice is
recorded (atomically) in the federation state folder:

    peer-choices/<cabinet>.json
      {"cabinet": "brieux", "peers": ["saint-aubin"], "chosen_at": 1796000000.0,
       "registry_version": 6, "why": "first choice: ...",
       "previous": [{"peers": ["sees"], "chosen_at": ..., "left_at": ...,
                     "registry_version": 9, "why_left": "'sees' was revoked ..."}]}

and kept while every recorded peer stays eligible: an active member of the registry with
enough spare disk for the cabinet's tenants. A new round-trip measurement, or a member
with more spare disk, never moves it (the plan says the ranking would pick another and
why the current one stays). When a recorded peer is revoked, leaves the registry or lacks
the disk, a new one is chosen and the record says why; the copy on the old peer stays where
it is (append-only: nothing here deletes it).

Everything that needs a cabinet's peers asks `PeerResolver`: replication run, status and
check, the peer side (`sources_of`), deploy's roles and inventory, failover's check that
the replica is on the peer.

On a cabinet reached over SSH, the choice is the controller's: `replication deploy` ships
the records the cabinet needs (its own, and those of the auto cabinets whose copies it
hosts) into `<replication state>/peer-choices/`, and the resolver there runs with
`shipped=` that folder. It reads the shipped record and nothing else: it never chooses on
its own (a missing record says "redeploy from the controller"). If the cabinet holds the
federation's registry (a member: `federation_mesh`), a shipped peer the registry now says
is revoked or gone is reported as a warning; the controller chooses again on its next
deploy or run.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kloudctl import files
from kloudctl.errors import InputError, KloudError
from kloudctl.federation import LAST_SECOND
from kloudctl.model import Cabinet, Fleet
from kloudctl.model.types import format_size

if TYPE_CHECKING:
    from kloudctl.federation.choice import PeerChoice
    from kloudctl.federation.registry import Registry

#: The federation state folder's variable (also `--federation-state`'s).
STATE_ENV = "KLOUDCTL_FEDERATION_STATE"
CHOICES = "peer-choices"


def state_folder(root: Path, given: str | Path | None = None) -> Path:
    """The federation state folder: `given`, else KLOUDCTL_FEDERATION_STATE, else
    `<fleet>/.state/federation`."""
    if given:
        return Path(given)
    env = os.environ.get(STATE_ENV)
    return Path(env) if env else root / ".state" / "federation"


class NoRegistry(InputError):
    """`peers: auto` on a fleet that holds no federation registry: exit 2, nothing done."""


class NoEligiblePeer(KloudError):
    """`peers: auto`, and no member of the federation can hold the cabinet's copy: exit 1."""


class NoShippedChoice(KloudError):
    """`peers: auto` on a cabinet, and the controller shipped no choice for it: exit 1 (the
    cabinet never chooses by itself; redeploy from the controller)."""


@dataclass(frozen=True)
class PeerRecord:
    """The recorded choice of an auto cabinet (the file's content)."""

    cabinet: str
    peers: list[str]
    chosen_at: float
    registry_version: int
    why: str
    previous: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def record_path(folder: Path, cabinet: str) -> Path:
    return folder / CHOICES / f"{cabinet}.json"


#: What to do about a damaged record: the controller's (its own to fix or drop), or one
#: shipped to a cabinet (only the controller writes it).
LOCAL_REMEDY = "fix it, or delete it to let kloudctl choose again"


def shipped_remedy(cabinet: str) -> str:
    return (
        "redeploy from the controller (`kloudctl replication deploy"
        f" {cabinet}`): a cabinet never chooses its peers itself"
    )


def load_record(folder: Path, cabinet: str, remedy: str = LOCAL_REMEDY) -> PeerRecord | None:
    """The recorded choice, None before the first; a damaged record is an error naming the
    file and the field (delete it to choose again: the copies already made stay)."""
    path = record_path(folder, cabinet)
    data = files.read_json_object(path, "recorded peer choice", f"expected an object; {remedy}")
    if not data:
        return None
    expected: tuple[tuple[str, type | tuple[type, ...]], ...] = (
        ("cabinet", str),
        ("peers", list),
        ("chosen_at", (int, float)),
        ("registry_version", int),
        ("why", str),
        ("previous", list),
    )
    for key, kind in expected:
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise KloudError(
                f"recorded peer choice {path}: field '{key}' is missing or of the wrong type;"
                f" {remedy}"
            )
    for i, peer in enumerate(data["peers"]):
        if not isinstance(peer, str) or not peer:
            raise KloudError(
                f"recorded peer choice {path}: field 'peers[{i}]': expected a cabinet name,"
                f" got {peer!r}; {remedy}"
            )
    if not data["peers"]:
        raise KloudError(f"recorded peer choice {path}: field 'peers' is empty; {remedy}")
    if not 0 <= data["chosen_at"] <= LAST_SECOND:
        raise KloudError(
            f"recorded peer choice {path}: field 'chosen_at': expected epoch seconds, got"
            f" {data['chosen_at']!r:.40}; {remedy}"
        )
    if data["cabinet"] != cabinet:
        raise KloudError(
            f"recorded peer choice {path}: field 'cabinet' says '{data['cabinet']}', not"
            f" '{cabinet}'; {remedy}"
        )
    return PeerRecord(
        cabinet,
        list(data["peers"]),
        float(data["chosen_at"]),
        data["registry_version"],
        data["why"],
        list(data["previous"]),
    )


def _save(folder: Path, record: PeerRecord) -> None:
    path = record_path(folder, record.cabinet)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record.to_dict(), indent=1, sort_keys=True) + "\n"
    files.write_atomic(path, text, what="recorded peer choice")


@dataclass
class Resolution:
    """A cabinet's effective peers and how they were found."""

    cabinet: str
    peers: list[str]
    #: declared (named in the file), first (first auto choice), kept (the recorded one,
    #: still eligible), moved (a recorded peer is no longer eligible: another was chosen),
    #: shipped (on a cabinet: the controller's record, as `replication deploy` shipped it)
    verdict: str
    why: str
    #: the record as it was before this resolution (auto only)
    recorded: PeerRecord | None = None
    #: the ranking now (auto only)
    choice: PeerChoice | None = None
    #: whether the record was written (or, unless committed, would be)
    saved: bool = False
    #: what the cabinet's registry says against a shipped peer (revoked, gone), by peer
    warnings: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cabinet": self.cabinet,
            "peers": self.peers,
            "verdict": self.verdict,
            "why": self.why,
            "recorded": self.recorded.to_dict() if self.recorded else None,
            "saved": self.saved,
            "warnings": self.warnings,
        }


class PeerResolver:
    """The one answer to "where does this cabinet's copy go?" for a fleet."""

    def __init__(
        self,
        fleet: Fleet,
        folder: Path | None = None,
        clock: Any = time.time,
        *,
        shipped: Path | None = None,
    ) -> None:
        self.fleet = fleet
        self.folder = folder if folder is not None else state_folder(fleet.root)
        self.clock = clock
        #: on a cabinet: the folder of the records `replication deploy` shipped (their
        #: `peer-choices/` parent), the only answer for auto cabinets there
        self.shipped = shipped
        self._registry: Registry | None = None

    def registry(self, cabinet: Cabinet) -> Registry:
        if self._registry is None:
            from kloudctl.federation.registry import RegistryStore  # needs `cryptography`

            store = RegistryStore(self.folder)
            if not store.exists():
                federation = f" '{cabinet.federation.name}'" if cabinet.federation else ""
                raise NoRegistry(
                    f"cabinet '{cabinet.name}': replication.peers is auto, but this fleet holds"
                    f" no registry of federation{federation} in {self.folder} (`kloudctl"
                    " federation init` on the coordinator, `federation join` on a member):"
                    " no peer chosen, nothing copied"
                )
            self._registry = store.load()
        return self._registry

    def peers(self, cabinet: str, *, commit: bool = False, strict: bool = True) -> list[str]:
        """The cabinet's peers. `commit` records a first or changed auto choice (commands that
        copy or deploy); read commands leave the record as it is. Not `strict`: an auto
        choice that cannot be made gives no peers (the hosting side and the inventory skip
        that cabinet; its own run and deploy refuse, saying why)."""
        try:
            return self.resolve(cabinet, commit=commit).peers
        except (NoRegistry, NoEligiblePeer, NoShippedChoice):
            if strict:
                raise
            return []

    def sources_of(self, owner: str) -> list[str]:
        """Cabinets whose copies `owner` hosts (or, for an auto cabinet not yet recorded,
        would host once its first run records the choice)."""
        return sorted(
            c.name
            for c in self.fleet
            if c.replication and owner in self.peers(c.name, strict=False)
        )

    def resolve(self, name: str, *, commit: bool = False) -> Resolution:
        cabinet = self.fleet.cabinet(name)
        rep = cabinet.replication
        if rep is None:
            return Resolution(name, [], "declared", "declares no replication")
        if not rep.auto_peers:
            return Resolution(name, rep.declared_peers, "declared", "named in the cabinet file")
        if self.shipped is not None:
            return self._shipped(name)
        from kloudctl.federation.choice import ranked_choice

        registry = self.registry(cabinet)
        choice = ranked_choice(self.folder, cabinet, registry)
        recorded = load_record(self.folder, name)
        now = float(self.clock())
        if recorded is not None:
            gone = {p: why for p in recorded.peers if (why := _ineligible(registry, choice, p))}
            if not gone:
                return Resolution(
                    name, recorded.peers, "kept", _kept_why(recorded, choice), recorded, choice
                )
        if not choice.chosen:
            left = "; ".join(
                f"{c.cabinet}: {', '.join(c.reasons)}" for c in choice.candidates
            )  # fmt: skip
            raise NoEligiblePeer(
                f"cabinet '{name}': replication.peers is auto, but no member of federation"
                f" '{registry.federation}' (registry version {registry.version}) can hold its"
                f" copy ({format_size(choice.needed_disk)} needed): {left}"
                + (
                    f"; the copy already on {', '.join(recorded.peers)} stays there"
                    if recorded
                    else ""
                )
            )
        reasons = {c.cabinet: c.reasons for c in choice.candidates}
        picked = ", ".join(f"'{p}' ({'; '.join(reasons[p])})" for p in choice.chosen)
        if recorded is None:
            verdict = "first"
            why = f"first choice: {picked}; round-trip times {choice.rtt_source}"
            previous: list[dict[str, Any]] = []
        else:
            verdict = "moved"
            left_why = "; ".join(f"'{p}' {why}" for p, why in sorted(gone.items()))
            why = (
                f"{left_why}: chose {picked} instead; the copy already on"
                f" {', '.join(sorted(gone))} stays there (append-only, nothing deletes it)"
            )
            previous = [
                *recorded.previous,
                {
                    "peers": recorded.peers,
                    "chosen_at": recorded.chosen_at,
                    "left_at": now,
                    "registry_version": registry.version,
                    "why_left": left_why,
                },
            ]
        record = PeerRecord(name, list(choice.chosen), now, registry.version, why, previous)
        if commit:
            _save(self.folder, record)
        return Resolution(name, record.peers, verdict, why, recorded, choice, saved=commit)

    def _shipped(self, name: str) -> Resolution:
        """The choice the controller shipped (on a cabinet): read, checked against the
        cabinet's registry if it holds one, never made or changed here."""
        assert self.shipped is not None
        record = load_record(self.shipped, name, shipped_remedy(name))
        if record is None:
            raise NoShippedChoice(
                f"cabinet '{name}': replication.peers is auto, but the controller's choice is"
                f" not here ({record_path(self.shipped, name)} is missing): " + shipped_remedy(name)
            )
        since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(record.chosen_at))
        why = (
            f"chosen by the controller {since} (registry version {record.registry_version})"
            f" and shipped with `replication deploy`: {record.why}"
        )
        return Resolution(
            name, record.peers, "shipped", why, record, warnings=self._shipped_warnings(record)
        )

    def _shipped_warnings(self, record: PeerRecord) -> dict[str, str]:
        """Shipped peers the cabinet's own registry (a federation member's synced copy) says
        are revoked or gone: reported, not acted on (the controller chooses again)."""
        from kloudctl.federation.registry import RegistryStore  # needs `cryptography`

        store = RegistryStore(self.folder)
        if not store.exists():
            return {}
        registry = store.load()
        again = (
            "the copies still go there until the controller chooses again"
            f" (`kloudctl replication deploy {record.cabinet}` there)"
        )
        return {
            peer: f"shipped peer '{peer}' {why} (registry in {self.folder}): {again}"
            for peer in record.peers
            if (why := _not_member(registry, peer))
        }


def _not_member(registry: Registry, peer: str) -> str | None:
    """Why `peer` is no longer an active member of the registry's federation, None if it is."""
    members = {m.cabinet: m for m in registry.members.values()}
    member = members.get(peer)
    if member is None:
        return f"is no longer a member of federation '{registry.federation}'"
    if member.state != "active":
        return f"was {member.state} in registry version {registry.version}"
    return None


def _ineligible(registry: Registry, choice: PeerChoice, peer: str) -> str | None:
    """Why a recorded peer can no longer keep the copy, None while it can: it must stay an
    active member with enough spare disk (its power headroom or round-trip time, which
    vary, never move a copy)."""
    if (gone := _not_member(registry, peer)) is not None:
        return gone
    candidate = next((c for c in choice.candidates if c.cabinet == peer), None)
    spare = candidate.spare_disk if candidate else None
    if spare is None or spare < choice.needed_disk:
        shown = "unknown" if spare is None else format_size(spare)
        return f"has spare disk {shown} < {format_size(choice.needed_disk)} needed"
    return None


def _kept_why(recorded: PeerRecord, choice: PeerChoice) -> str:
    since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(recorded.chosen_at))
    kept = ", ".join(recorded.peers)
    if sorted(choice.chosen) == sorted(recorded.peers):
        return f"recorded {since}, still the ranking's first"
    now = ", ".join(choice.chosen) or "none"
    return (
        f"recorded {since} and kept (sticky): the ranking would now pick {now}"
        f" (round-trip times {choice.rtt_source}), but {kept} is still an active member with"
        " enough spare disk and holds the copies; moving would upload everything again"
    )
