"""The federation's registry: a hash-chained log of signed entries, with a version.

Every change is an entry `{version, prev, kind, author, time, body, signature}`:
`version` counts from 1, `prev` is the SHA-256 of the previous entry's canonical JSON
(signature included; 64 zeros for version 1), `signature` is the author's ed25519
signature over the entry's canonical JSON without the signature. Who may sign what:

- `create` (version 1 only): the coordinator, with the key it declares in that entry;
  it names the federation and the mesh address pool;
- `admit` and `revoke`: the coordinator;
- `update`: the member itself (its endpoints, capacity figures and endpoint certificate).

A member document may carry `tls_fingerprint`: the SHA-256 of the certificate of the
member's own registry endpoint (sent in its join request, so signed into its admission),
which other members pin when they fetch the registry from it over the mesh. Members
admitted before it was recorded have none; their entries still verify, and they are not
asked for the registry by other members (`service.fetch_registry`).

Loading replays the whole chain and names the first bad entry by its version. A store
remembers the highest version it accepted and its hash (`held.json`), so an older registry
(a rollback) or a different history at the same version (a fork) is refused.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kloudctl import files
from kloudctl.errors import KloudError
from kloudctl.federation import REGISTRY_FILE, canonical
from kloudctl.federation.keys import MemberKeys, verify

GENESIS = "0" * 64
KINDS = ("create", "admit", "update", "revoke")
ENTRY_KEYS = {"version", "prev", "kind", "author", "time", "body", "signature"}
HELD_FILE = "held.json"
#: What a member's own `update` may change; the rest is the coordinator's to admit.
UPDATABLE = {"endpoints", "capacity", "tls_fingerprint"}
#: A certificate's SHA-256 as `tls.fingerprint_of` writes it: 32 hex pairs joined by colons.
TLS_FINGERPRINT_RE = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){31}$")
_HEAD_RE = re.compile(r"[0-9a-f]{64}")
CAPACITY_KEYS = (
    "spare_disk_declared",
    "spare_disk_measured",
    "power_headroom_declared",
    "power_headroom_measured",
)


class RegistryError(KloudError):
    """A registry that does not verify; the message names the bad entry's version."""


class RollbackRefused(KloudError):
    """A registry older than the one held here, or a different history at its version."""


@dataclass
class Member:
    commune: str
    cabinet: str
    endpoints: list[str]
    wireguard_key: str
    signing_key: str
    mesh_address: str
    capacity: dict[str, int | None]
    #: The certificate of its registry endpoint, pinned by other members (None: unknown).
    tls_fingerprint: str | None = None
    state: str = "active"
    since_version: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "commune": self.commune,
            "cabinet": self.cabinet,
            "endpoints": list(self.endpoints),
            "wireguard_key": self.wireguard_key,
            "signing_key": self.signing_key,
            "mesh_address": self.mesh_address,
            "capacity": dict(self.capacity),
            # Absent, not null, when unknown: old entries keep the shape they were signed in.
            **({"tls_fingerprint": self.tls_fingerprint} if self.tls_fingerprint else {}),
        }


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical.encode(entry)).hexdigest()


def signed_part(entry: dict[str, Any]) -> bytes:
    return canonical.encode({k: v for k, v in entry.items() if k != "signature"})


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what}: expected text, got {value!r}")
    return value


def _member(doc: Any, what: str) -> Member:
    """A member document from an entry's body; ValueError naming the bad field."""
    if not isinstance(doc, dict):
        raise ValueError(f"{what}: expected an object")
    expected = {"commune", "cabinet", "endpoints", "wireguard_key", "signing_key"}
    expected |= {"mesh_address", "capacity"}
    if set(doc) - {"tls_fingerprint"} != expected:
        odd = sorted((set(doc) - {"tls_fingerprint"}) ^ expected)
        raise ValueError(f"{what}: unexpected or missing fields {', '.join(odd)}")
    endpoints = doc["endpoints"]
    if not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints):
        raise ValueError(f"{what}.endpoints: expected a list of host:port")
    capacity = doc["capacity"]
    if not isinstance(capacity, dict) or set(capacity) - set(CAPACITY_KEYS):
        raise ValueError(f"{what}.capacity: expected {', '.join(CAPACITY_KEYS)}")
    for key, value in capacity.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ValueError(
                f"{what}.capacity.{key}: expected a whole number, 0 or more, got {value!r}"
            )
    try:
        ipaddress.IPv4Address(_text(doc["mesh_address"], f"{what}.mesh_address"))
    except ipaddress.AddressValueError:
        raise ValueError(f"{what}.mesh_address: expected an IPv4 address") from None
    pin = doc.get("tls_fingerprint")
    if pin is not None and not (isinstance(pin, str) and TLS_FINGERPRINT_RE.match(pin)):
        raise ValueError(
            f"{what}.tls_fingerprint: expected a SHA-256 fingerprint (32 hex pairs AB:CD:...),"
            f" got {pin!r}"
        )
    return Member(
        commune=_text(doc["commune"], f"{what}.commune"),
        cabinet=_text(doc["cabinet"], f"{what}.cabinet"),
        endpoints=list(endpoints),
        wireguard_key=_text(doc["wireguard_key"], f"{what}.wireguard_key"),
        signing_key=_text(doc["signing_key"], f"{what}.signing_key"),
        mesh_address=doc["mesh_address"],
        capacity={k: capacity.get(k) for k in CAPACITY_KEYS},
        tls_fingerprint=pin,
    )


def checked_member(doc: Any, what: str) -> Member:
    """The member document `doc` (an admission's body), checked field by field; ValueError
    naming the bad field (`what.field`)."""
    member = _member(doc, what)
    try:
        wireguard = base64.b64decode(member.wireguard_key, validate=True)
        signing = canonical.unb64(member.signing_key)
    except ValueError:
        wireguard = signing = b""
    if len(wireguard) != 32 or len(signing) != 32:
        raise ValueError(f"{what}: wireguard_key and signing_key: expected 32-byte public keys")
    return member


def now_text(now: datetime.datetime | None = None) -> str:
    moment = now or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).replace(microsecond=0).isoformat()


@dataclass
class Registry:
    """A verified chain and the state it builds (build one with `Registry.verified`)."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    federation: str = ""
    coordinator: str = ""
    pool: ipaddress.IPv4Network | None = None
    members: dict[str, Member] = field(default_factory=dict)
    #: Every mesh address ever given: never given again, even after a revocation.
    used_addresses: set[ipaddress.IPv4Address] = field(default_factory=set)

    @property
    def version(self) -> int:
        return len(self.entries)

    @property
    def head(self) -> str:
        return entry_hash(self.entries[-1]) if self.entries else GENESIS

    def active(self) -> dict[str, Member]:
        return {c: m for c, m in self.members.items() if m.state == "active"}

    @classmethod
    def verified(cls, entries: Any, source: str) -> Registry:
        """Replay `entries`; RegistryError naming the first bad entry."""
        if not isinstance(entries, list) or not entries:
            raise RegistryError(f"registry {source}: expected a non-empty list of entries")
        registry = cls()
        for position, entry in enumerate(entries, start=1):
            registry._apply(entry, position, source)
        return registry

    def _apply(self, entry: Any, position: int, source: str) -> None:
        if not isinstance(entry, dict) or set(entry) != ENTRY_KEYS:
            raise RegistryError(
                f"registry {source}: entry at position {position} is not an entry"
                f" (expected the fields {', '.join(sorted(ENTRY_KEYS))})"
            )
        version = entry["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version != position:
            raise RegistryError(
                f"registry {source}: entry version {version!r} is out of place: expected"
                f" version {position} at position {position} (an entry was removed, added or"
                " reordered, or its version altered)"
            )
        where = f"registry {source}: entry version {version}"
        if entry["prev"] != self.head:
            raise RegistryError(
                f"{where}: its link to entry version {version - 1} ('prev') does not match"
                f" that entry's hash: the chain was altered"
                if version > 1
                else f"{where}: 'prev' must be {GENESIS} for the first entry"
            )
        kind, author, body = entry["kind"], entry["author"], entry["body"]
        if kind not in KINDS:
            raise RegistryError(f"{where}: unknown kind {kind!r} (expected {', '.join(KINDS)})")
        if (kind == "create") != (version == 1):
            raise RegistryError(f"{where}: only entry version 1 creates the federation")
        if not isinstance(entry["time"], str) or not isinstance(body, dict):
            raise RegistryError(f"{where}: 'time' must be text and 'body' an object")
        if not isinstance(author, str):
            raise RegistryError(f"{where}: 'author' must be a commune's name, got {author!r}")
        signer = self._signer(kind, author, body, where)
        try:
            good = isinstance(entry["signature"], str) and verify(
                signer, entry["signature"], signed_part(entry)
            )
        except Exception:  # a malformed key or signature is a bad entry, like a wrong one
            good = False
        if not good:
            raise RegistryError(
                f"{where} ({kind} by {author!r}): the signature does not verify: the entry"
                f" was altered after it was signed, or {author!r} did not sign it"
            )
        try:
            getattr(self, f"_{kind}")(body, version)
        except ValueError as exc:
            raise RegistryError(f"{where} ({kind}): {exc}") from None
        self.entries.append(entry)

    def _signer(self, kind: str, author: Any, body: dict[str, Any], where: str) -> str:
        """The public key that must have signed this entry."""
        if kind == "create":
            doc = body.get("member")
            if not isinstance(doc, dict) or author != doc.get("commune"):
                raise RegistryError(f"{where}: the creator must be the member it declares")
            key = doc.get("signing_key")
            return key if isinstance(key, str) else ""
        if kind in ("admit", "revoke"):
            if author != self.coordinator:
                raise RegistryError(
                    f"{where}: {'an admission' if kind == 'admit' else 'a revocation'} must be"
                    f" signed by the coordinator"
                    f" {self.coordinator!r}, not {author!r}"
                )
        elif body.get("commune") != author or author not in self.active():
            raise RegistryError(f"{where}: an update is signed by the active member it changes")
        return self.members[str(author)].signing_key

    def _check_address(self, member: Member) -> None:
        address = ipaddress.IPv4Address(member.mesh_address)
        if self.pool is None or address not in self.pool:
            raise ValueError(f"mesh address {address} is outside the pool {self.pool}")
        if address in self.used_addresses:
            raise ValueError(
                f"mesh address {address} was already given (addresses are never reused)"
            )
        self.used_addresses.add(address)

    def _create(self, body: dict[str, Any], version: int) -> None:
        if set(body) != {"federation", "pool", "member"}:
            raise ValueError("body: expected federation, pool and member")
        self.federation = _text(body["federation"], "body.federation")
        try:
            self.pool = ipaddress.IPv4Network(_text(body["pool"], "body.pool"))
        except ValueError:
            raise ValueError(f"body.pool: expected a network, got {body['pool']!r}") from None
        member = _member(body["member"], "body.member")
        self._check_address(member)
        member.since_version = version
        self.coordinator = member.commune
        self.members[member.commune] = member

    def _admit(self, body: dict[str, Any], version: int) -> None:
        if set(body) != {"member"}:
            raise ValueError("body: expected member")
        member = _member(body["member"], "body.member")
        if member.commune in self.active():
            raise ValueError(f"commune {member.commune!r} is already a member")
        self._check_address(member)
        member.since_version = version
        self.members[member.commune] = member

    def _update(self, body: dict[str, Any], version: int) -> None:
        changes = body.get("changes")
        if set(body) != {"commune", "changes"} or not isinstance(changes, dict):
            raise ValueError("body: expected commune and changes")
        if not changes or set(changes) - UPDATABLE:
            raise ValueError(
                f"body.changes: a member may change only {', '.join(sorted(UPDATABLE))}"
            )
        current = self.members[body["commune"]]
        updated = _member({**current.to_dict(), **changes}, "body.changes")
        updated.since_version = current.since_version
        self.members[current.commune] = updated

    def _revoke(self, body: dict[str, Any], version: int) -> None:
        if set(body) != {"commune", "reason"} or not isinstance(body["reason"], str):
            raise ValueError("body: expected commune and reason")
        commune = body["commune"]
        if not isinstance(commune, str) or commune not in self.active():
            raise ValueError(f"commune {commune!r} is not an active member")
        if commune == self.coordinator:
            raise ValueError("the coordinator cannot revoke itself")
        self.members[commune].state = "revoked"

    # --- making entries -----------------------------------------------------------------

    def append(
        self,
        kind: str,
        author: str,
        body: dict[str, Any],
        keys: MemberKeys,
        now: datetime.datetime | None = None,
    ) -> Registry:
        """A new registry: this one plus an entry signed with `keys` (verified by replay)."""
        entry: dict[str, Any] = {
            "version": self.version + 1,
            "prev": self.head,
            "kind": kind,
            "author": author,
            "time": now_text(now),
            "body": body,
        }
        entry["signature"] = keys.sign(signed_part(entry))
        return Registry.verified([*self.entries, entry], "(new entry)")

    def next_address(self) -> str:
        """The lowest pool address never given (the network and broadcast excluded)."""
        assert self.pool is not None
        for address in self.pool.hosts():
            if address not in self.used_addresses:
                return str(address)
        raise KloudError(
            f"the mesh address pool {self.pool} of federation '{self.federation}' is exhausted:"
            f" its {len(self.used_addresses)} addresses were all given, and addresses are never"
            " reused (a revoked member keeps its address in the record): create the federation"
            " with a larger pool"
        )

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, "federation": self.federation, "entries": self.entries}


def create(
    federation: str,
    pool: ipaddress.IPv4Network,
    member: dict[str, Any],
    keys: MemberKeys,
    now: datetime.datetime | None = None,
) -> Registry:
    return Registry().append(
        "create",
        member["commune"],
        {"federation": federation, "pool": str(pool), "member": member},
        keys,
        now,
    )


def parse(data: bytes, source: str) -> Registry:
    """A registry from its JSON file form, verified."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise RegistryError(f"registry {source}: not JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != 1:
        raise RegistryError(f"registry {source}: expected a registry document (format 1)")
    registry = Registry.verified(document.get("entries"), source)
    if document.get("federation") != registry.federation:
        raise RegistryError(
            f"registry {source}: names federation {document.get('federation')!r}, but its"
            f" entries create {registry.federation!r}"
        )
    return registry


class RegistryStore:
    """The registry a member holds, and the highest version it ever accepted."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / REGISTRY_FILE
        self.held_path = folder / HELD_FILE

    def exists(self) -> bool:
        return self.path.is_file()

    def held(self) -> tuple[int, str]:
        if not self.held_path.is_file():
            return 0, GENESIS
        try:
            held = json.loads(self.held_path.read_bytes())
        except ValueError as exc:
            raise KloudError(
                f"registry high-water mark {self.held_path}: not JSON ({exc}); restore it from"
                " a backup"
            ) from None
        version = held.get("version") if isinstance(held, dict) else None
        head = held.get("head") if isinstance(held, dict) else None
        for name, bad in (
            ("version", isinstance(version, bool) or not isinstance(version, int) or version < 0),
            ("head", not isinstance(head, str) or not _HEAD_RE.fullmatch(head)),
        ):
            if bad:
                raise KloudError(
                    f"registry high-water mark {self.held_path}: field '{name}' is missing or"
                    " not valid; restore it from a backup"
                )
        assert isinstance(version, int) and isinstance(head, str)
        return version, head

    def load(self) -> Registry:
        path = files.existing_store(
            self.path, "federation registry", "run `kloudctl federation init` or `join` first"
        )
        registry = parse(path.read_bytes(), str(path))
        self.check_not_older(registry, str(path))
        return registry

    def check_not_older(self, registry: Registry, source: str) -> None:
        """RollbackRefused unless `registry` is newer than, or the same as, what is held."""
        version, head = self.held()
        if registry.version < version:
            raise RollbackRefused(
                f"registry {source} is at version {registry.version}, older than version"
                f" {version} already accepted here: a rolled-back registry is refused"
                " (restore the newer one, or fetch it with `kloudctl federation sync`)"
            )
        if version and entry_hash(registry.entries[version - 1]) != head:
            raise RollbackRefused(
                f"registry {source}: entry version {version} differs from the one accepted"
                " here: a different history (a fork) is refused"
            )

    def accept(self, registry: Registry, source: str) -> bool:
        """Hold `registry` if it is not older than what is held; True when it is newer."""
        self.check_not_older(registry, source)
        if self.exists():
            current = parse(self.path.read_bytes(), str(self.path))
            if current.federation != registry.federation:
                raise RollbackRefused(
                    f"registry {source} is federation '{registry.federation}', this member"
                    f" belongs to '{current.federation}'"
                )
        if registry.version == self.held()[0] and self.exists():
            return False
        data = json.dumps(registry.to_json(), indent=1, ensure_ascii=False) + "\n"
        files.write_atomic(self.path, data, what="federation registry")
        held = {"version": registry.version, "head": registry.head}
        files.write_atomic(self.held_path, json.dumps(held) + "\n", what="registry high-water mark")
        return True
