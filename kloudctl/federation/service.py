"""What the federation commands do, on one member's state folder.

The state folder (default `<fleet>/.state/federation`) holds this member's keys (0600),
`member.json` (who this member is and how it reaches the coordinator), the registry and
its high-water mark, and on the coordinator the join endpoint's certificate and the
invites. Every operation that changes the registry appends a verified entry and stores
it atomically; a refusal changes nothing.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kloudctl import files, tls
from kloudctl.answers import dig
from kloudctl.capacity.plan import plan_cabinet
from kloudctl.errors import ExternalError, InputError, KloudError, NotFound
from kloudctl.federation import LAST_SECOND, choice, mesh, updates
from kloudctl.federation import endpoint as join_endpoint
from kloudctl.federation.invites import (
    COMMUNE_RE,
    LABEL_RE,
    SHORT_FINGERPRINT_RE,
    Invite,
    InviteBook,
    InviteRefused,
    join_request,
    normal_fingerprint,
    quoted,
    short_fingerprint,
)
from kloudctl.federation.keys import MemberKeys, ensure_keys, key_fingerprint, load_keys
from kloudctl.federation.registry import (
    Member,
    Registry,
    RegistryStore,
    create,
    parse,
)
from kloudctl.federation.reports import (
    ReportBook,
    make_report,
    member_sync,
    propagation,
)
from kloudctl.model import Fleet
from kloudctl.model.schema import Cabinet
from kloudctl.netloc import split_host_port
from kloudctl.retry import Backoff, retrying

MEMBER_FILE = "member.json"
TLS_CERT, TLS_KEY = "join-tls.crt", "join-tls.key"
DEFAULT_JOIN_PORT = 8449


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def declared_capacity(cabinet: Cabinet) -> dict[str, int | None]:
    """What the declaration says the cabinet can spare: disk not promised to tenants, and
    power budget not drawn by the planned load. Measured figures are published by
    `federation update --measure` (`planned_changes`)."""
    plan = plan_cabinet(cabinet)
    disk = next((r for r in plan.resources if r.unit == "bytes" and "disk" in r.name), None)
    spare_disk = int(max(disk.capacity - disk.reserved, 0)) if disk else None
    headroom = int(max(plan.power.budget_watts - plan.power.estimated_watts, 0))
    return {
        "spare_disk_declared": spare_disk,
        "spare_disk_measured": None,
        "power_headroom_declared": headroom,
        "power_headroom_measured": None,
    }


def _endpoint(text: str, field: str) -> str:
    host, port = split_host_port(text, field)
    if port is None:
        raise InputError(f"{field}: expected HOST:PORT, got {text!r}")
    return f"{host}:{port}"


@dataclass
class FederationState:
    folder: Path

    @classmethod
    def for_fleet(cls, root: Path, state_dir: str | None) -> FederationState:
        folder = files.checked_path(state_dir, "--state-dir") if state_dir else None
        return cls(folder or root / ".state" / "federation")

    @property
    def store(self) -> RegistryStore:
        return RegistryStore(self.folder)

    @property
    def book(self) -> InviteBook:
        return InviteBook(self.folder)

    def identity(self) -> dict[str, Any]:
        path = files.existing_store(
            self.folder / MEMBER_FILE,
            "federation member file",
            "run `kloudctl federation init` (coordinator) or `join` first",
        )
        try:
            data = json.loads(path.read_bytes())
        except ValueError as exc:
            raise KloudError(f"{path}: unreadable ({exc})") from None
        if not isinstance(data, dict) or "commune" not in data:
            raise KloudError(f"{path}: not a federation member file")
        problem = _identity_problem(data)
        if problem:
            raise KloudError(
                f"federation member file {path}: {problem} (the file was damaged: restore it"
                " from a backup)"
            )
        return data

    def _save_identity(self, data: dict[str, Any]) -> None:
        files.write_atomic(
            self.folder / MEMBER_FILE, json.dumps(data, indent=1) + "\n", what="member file"
        )

    def _make_folder(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise InputError(
                f"--state-dir {self.folder}: cannot be created ({exc.strerror})"
            ) from None

    def coordinator(self) -> tuple[dict[str, Any], MemberKeys, Registry]:
        identity = self.identity()
        if identity.get("role") != "coordinator":
            raise InputError(
                f"this member ({identity['commune']}) is not the coordinator of federation"
                f" '{identity.get('federation')}': run this on the coordinator"
            )
        return identity, load_keys(self.folder), self.store.load()


def _identity_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with a member file (`member.json`), or None."""
    for key in ("federation", "commune", "cabinet", "role"):
        if not isinstance(data.get(key), str) or not data[key]:
            return f"field '{key}' is missing or not text"
    if data["role"] == "coordinator":
        where: Any = data.get("endpoint")
        field = "endpoint"
    elif data["role"] == "member":
        coordinator = data.get("coordinator")
        if not isinstance(coordinator, dict):
            return "field 'coordinator': expected an object"
        for key in ("tls_fingerprint", "key_fingerprint"):
            if not isinstance(coordinator.get(key), str):
                return f"field 'coordinator.{key}' is missing or not text"
        where, field = coordinator.get("endpoint"), "coordinator.endpoint"
    else:
        return f"field 'role': expected coordinator or member, got {data['role']!r}"
    try:
        _endpoint(where if isinstance(where, str) else "", field)
    except InputError:
        return f"field '{field}': expected HOST:PORT, got {where!r}"
    return None


def init(
    state: FederationState,
    fleet: Fleet,
    federation: str,
    cabinet_name: str | None,
    endpoint: str | None,
    now: datetime.datetime | None = None,
    mesh_endpoint: str | None = None,
) -> Registry:
    """Create the federation with this fleet's coordinator cabinet as its first member.

    The cabinet must declare `federation: {name: NAME, role: coordinator}`; its WireGuard
    address is the coordinator's mesh address and its network is the address pool."""
    if not LABEL_RE.fullmatch(federation):
        raise InputError(f"NAME: expected 1 to 64 printable characters, got {quoted(federation)}")
    if state.store.exists() or (state.folder / MEMBER_FILE).exists():
        raise InputError(
            f"{state.folder} already holds a federation member: nothing changed"
            " (choose another --state-dir to start another federation)"
        )
    candidates = [
        c
        for c in fleet
        if c.federation is not None
        and c.federation.name == federation
        and c.federation.role == "coordinator"
    ]
    if cabinet_name is not None:
        cabinet = fleet.cabinet(cabinet_name)
        if cabinet not in candidates:
            raise InputError(
                f"cabinet '{cabinet_name}' does not declare `federation: {{name: {federation},"
                " role: coordinator}`"
            )
    elif len(candidates) != 1:
        raise InputError(
            f"{len(candidates)} cabinets declare themselves coordinator of '{federation}':"
            " give --cabinet (or declare `federation: {name: ..., role: coordinator}`)"
        )
    else:
        cabinet = candidates[0]
    assert cabinet.federation is not None
    wireguard = cabinet.federation.wireguard
    join_at = _endpoint(
        endpoint or f"{cabinet.networks.wan.address.ip}:{DEFAULT_JOIN_PORT}", "--endpoint"
    )
    state._make_folder()
    keys = ensure_keys(state.folder)
    state.book.prepare()
    member = {
        "commune": cabinet.name,
        "cabinet": cabinet.name,
        "endpoints": [
            _endpoint(mesh_endpoint, "--mesh-endpoint")
            if mesh_endpoint
            else f"{cabinet.networks.wan.address.ip}:{wireguard.port}"
        ],
        "wireguard_key": keys.wireguard_public,
        "signing_key": keys.signing_public,
        "mesh_address": str(wireguard.address.ip),
        "capacity": declared_capacity(cabinet),
    }
    host = split_host_port(join_at, "--endpoint")[0]
    _ensure_tls(state.folder, host)
    member["tls_fingerprint"] = tls_fingerprint(state)
    registry = create(federation, wireguard.address.network, member, keys, now)
    state.store.accept(registry, "(new federation)")
    state._save_identity(
        {
            "federation": federation,
            "commune": cabinet.name,
            "cabinet": cabinet.name,
            "role": "coordinator",
            "endpoint": join_at,
        }
    )
    return registry


def _endpoint_tls(host: str) -> tuple[bytes, bytes]:
    """A new (certificate, key) for this member's federation endpoint. Peers pin it by its
    fingerprint (the invite's, the registry's), so the names it carries are informative."""
    try:
        ipaddress.ip_address(host)
        address, names = host, []
    except ValueError:
        address, names = "127.0.0.1", [host]
    return tls.self_signed("kloudctl federation join endpoint", address, names)


def _ensure_tls(folder: Path, host: str) -> None:
    cert, key = _endpoint_tls(host)
    if files.create_once(folder / TLS_KEY, key, what="join endpoint key"):
        files.write_atomic(folder / TLS_CERT, cert, what="join endpoint certificate")


def tls_fingerprint(state: FederationState) -> str:
    path = files.existing_store(
        state.folder / TLS_CERT, "join endpoint certificate", "run `kloudctl federation init`"
    )
    try:
        return tls.fingerprint_of(path.read_bytes())
    except ValueError:
        raise KloudError(
            f"join endpoint certificate {path}: not a PEM certificate (the file was damaged:"
            " restore it, with its key, from a backup)"
        ) from None


def invite(
    state: FederationState, commune: str, ttl: int, now: datetime.datetime | None = None
) -> tuple[Invite, str]:
    """A new invite for `commune` and its string (which holds the secret)."""
    if not COMMUNE_RE.fullmatch(commune):
        raise InputError(
            f"COMMUNE: expected a lower-case name such as saint-aubin (letters, digits and"
            f" dashes, 2 to 32), got {quoted(commune)}"
        )
    identity, keys, registry = state.coordinator()
    if commune in registry.active():
        raise InputError(f"commune '{commune}' is already a member of '{registry.federation}'")
    registry.next_address()  # an exhausted pool is said now, not after the newcomer joined
    issued = state.book.issue(
        federation=registry.federation,
        commune=commune,
        endpoint=identity["endpoint"],
        tls_fingerprint=tls_fingerprint(state),
        keys=keys,
        ttl=ttl,
        now=now or _utcnow(),
    )
    return issued, issued.encode(keys)


def admit(
    state: FederationState, commune: str, fingerprint: str, now: datetime.datetime | None = None
) -> Member:
    """Append the admission of `commune` once its fingerprint is confirmed."""
    if not SHORT_FINGERPRINT_RE.fullmatch(normal_fingerprint(fingerprint)):
        raise InputError(
            f"FINGERPRINT: expected the 8 characters `federation join` shows (such as"
            f" ABCD-EF23), got {quoted(fingerprint)}"
        )
    identity, keys, _ = state.coordinator()
    book = state.book
    with book.locked() as invites:
        waiting = [
            (i, r)
            for i, r in invites.items()
            if r["commune"] == commune and r["state"] == "redeemed"
        ]
        if not waiting:
            raise InviteRefused(
                f"no join request from commune '{commune}' is waiting: invite it"
                " (`kloudctl federation invite`), then it runs `kloudctl federation join`"
            )
        match = [
            (i, r)
            for i, r in waiting
            if normal_fingerprint(r["join"]["fingerprint"]) == normal_fingerprint(fingerprint)
        ]
        if not match:
            raise InviteRefused(
                f"fingerprint {fingerprint} does not match the join request of '{commune}':"
                " not admitted; read the fingerprint the newcomer's `federation join` shows"
            )
        _, record = match[0]
        registry = state.store.load()
        member = dict(record["join"]["member"], mesh_address=registry.next_address())
        updated = registry.append("admit", identity["commune"], {"member": member}, keys, now)
        state.store.accept(updated, "(admission)")
        record["state"] = "admitted"
        book.save(invites)
    return updated.members[commune]


def revoke(
    state: FederationState, commune: str, reason: str, now: datetime.datetime | None = None
) -> Registry:
    identity, keys, _ = state.coordinator()
    # The invites' lock also serialises every change of the coordinator's registry.
    with state.book.locked():
        registry = state.store.load()
        if commune not in registry.members:
            raise NotFound(f"commune '{commune}' is not a member of '{registry.federation}'")
        if commune not in registry.active():
            raise InputError(f"commune '{commune}' is already revoked: nothing changed")
        if commune == identity["commune"]:
            raise InputError("the coordinator cannot revoke itself")
        body = {"commune": commune, "reason": reason}
        updated = registry.append("revoke", identity["commune"], body, keys, now)
        state.store.accept(updated, "(revocation)")
    return updated


def join(
    state: FederationState,
    fleet: Fleet,
    invite_text: str,
    cabinet_name: str,
    endpoints: list[str],
    now: datetime.datetime | None = None,
) -> tuple[Invite, str]:
    """Send this cabinet's join request; (the invite, the short fingerprint to confirm)."""
    invite_ = Invite.decode(invite_text)
    cabinet = fleet.cabinet(cabinet_name)
    moment = now or _utcnow()
    if moment.timestamp() >= invite_.expires:
        when = datetime.datetime.fromtimestamp(invite_.expires, datetime.UTC).isoformat()
        raise InviteRefused(f"invite {invite_.id}: expired at {when}; ask for a new one")
    if (state.folder / MEMBER_FILE).exists():
        raise InputError(f"{state.folder} already holds a federation member: nothing sent")
    checked = [_endpoint(e, "--endpoint") for e in endpoints]
    if not checked and cabinet.federation is not None:
        checked = [f"{cabinet.networks.wan.address.ip}:{cabinet.federation.wireguard.port}"]
    keys = MemberKeys.generate()
    # The certificate of the registry endpoint this member will serve over the mesh: its
    # fingerprint goes into the signed admission, and the other members pin it.
    cert, cert_key = _endpoint_tls(str(cabinet.networks.wan.address.ip))
    request, mac = join_request(
        invite_,
        keys,
        cabinet.name,
        checked,
        declared_capacity(cabinet),
        tls.fingerprint_of(cert),
    )
    status, answer = join_endpoint.call(
        invite_.endpoint,
        invite_.tls_fingerprint,
        "POST",
        "/v1/join",
        {"request": request, "proof": mac},
    )
    if status == 403:
        raise InviteRefused(f"the coordinator refused the join: {answer}")
    if status != 200:
        raise ExternalError(f"the coordinator's join endpoint failed (HTTP {status}): {answer}")
    tool = f"the federation's join endpoint at {invite_.endpoint}"
    answered = dig(tool, answer, "fingerprint", kind=str)
    fingerprint = short_fingerprint(invite_.id, keys.signing_public, keys.wireguard_public)
    if normal_fingerprint(answered) != normal_fingerprint(fingerprint):
        raise KloudError(
            f"the coordinator answered fingerprint {answered!r}, this side"
            f" computed {fingerprint}: the request was changed on the way; do not admit it"
        )
    # Accepted: only now does anything land on this side.
    state._make_folder()
    keys.save(state.folder)
    # Replaced, not kept: this join is a new identity, its certificate the one just sent.
    files.write_atomic(state.folder / TLS_KEY, cert_key, mode=0o600, what="join endpoint key")
    files.write_atomic(state.folder / TLS_CERT, cert, what="join endpoint certificate")
    state._save_identity(
        {
            "federation": invite_.federation,
            "commune": invite_.commune,
            "cabinet": cabinet.name,
            "role": "member",
            "coordinator": {
                "endpoint": invite_.endpoint,
                "tls_fingerprint": invite_.tls_fingerprint,
                "key_fingerprint": key_fingerprint(invite_.coordinator_key),
            },
        }
    )
    return invite_, fingerprint


SYNCED_FILE = "synced.json"


@dataclass
class Synced:
    """One sync: the version held before and after, what the mesh interface became, and
    whether the coordinator recorded the report (None: no report to send)."""

    held: int
    fetched: int
    source: str
    applied: mesh.Applied | None = None
    reported: str | None = None


#: How long a sync waits for another member's read-only endpoint over the mesh (a peer
#: that is down must not hold the sync for the whole join-endpoint timeout).
MEMBER_TIMEOUT = 3.0


@dataclass(frozen=True)
class Source:
    """Where a sync may fetch the registry: HOST:PORT, its certificate's pinned fingerprint
    (the invite's for the coordinator, the registry's for a member; None when the registry
    records none for that member: it is not asked), and who answers there."""

    where: str
    tls_fingerprint: str | None
    who: str  # "the coordinator" or "member 'COMMUNE'"
    coordinator: bool = False


def fetch_registry(
    state: FederationState, identity: dict[str, Any], sources: list[Source]
) -> tuple[Registry, str]:
    """The verified registry from the first source that gives one.

    The coordinator's answer is authoritative: the first one received is verified and
    anything wrong with it is an error, as always. Only when the coordinator cannot be
    reached are the other members asked, over the mesh; an answer of theirs that does not
    verify, or is older than what is held here, is noted and the next member asked."""
    problems = []
    for source in sources:
        if source.tls_fingerprint is None:
            # No certificate to pin: WireGuard would vouch for the address, but a member's
            # endpoint is trusted only the way the coordinator's is, by its fingerprint.
            problems.append(
                f"{source.who} at {source.where}: not asked, the registry records no"
                " certificate fingerprint for it (admitted before members' certificates were"
                " recorded; it must join again to be pinned)"
            )
            continue
        try:
            status_, answer = join_endpoint.call(
                source.where,
                source.tls_fingerprint,
                "GET",
                "/v1/registry",
                what=f"{source.who}'s registry endpoint",
                timeout=join_endpoint.TIMEOUT if source.coordinator else MEMBER_TIMEOUT,
            )
        except ExternalError as exc:
            problems.append(str(exc))
            continue
        except join_endpoint.CertificateMismatch as exc:
            if source.coordinator:
                raise
            problems.append(str(exc))
            continue
        if status_ != 200:
            problems.append(f"{source.where}: {answer}")
            continue
        label = f"from {source.who} at {source.where}"
        if source.coordinator:
            return _verified_for_member(state, identity, answer, label), label
        try:
            registry = _verified_for_member(state, identity, answer, label)
            state.store.check_not_older(registry, label)
        except KloudError as exc:
            problems.append(str(exc))
            continue
        return registry, label
    raise ExternalError("registry: no source answered: " + "; ".join(problems))


def _sources(
    state: FederationState, identity: dict[str, Any], interface: str | None
) -> list[Source]:
    """The coordinator over the mesh first (its mesh address, the join endpoint's port) when
    this member has a mesh, then the endpoint its invite named; then, over the mesh, every
    other active member's read-only endpoint (same port), in the registry's order."""
    coordinator = identity["coordinator"]
    endpoint, pinned = coordinator["endpoint"], coordinator["tls_fingerprint"]
    if interface is None or not state.store.exists():
        return [Source(endpoint, pinned, "the coordinator", coordinator=True)]
    held = state.store.load()
    port = endpoint.rpartition(":")[2]
    first = held.members[held.coordinator]
    others = [
        Source(f"{m.mesh_address}:{port}", m.tls_fingerprint, f"member '{c}'")
        for c, m in held.active().items()
        if c not in (held.coordinator, identity["commune"])
    ]
    return [
        Source(f"{first.mesh_address}:{port}", pinned, "the coordinator", coordinator=True),
        Source(endpoint, pinned, "the coordinator", coordinator=True),
        *others,
    ]


def serving(state: FederationState, listen: str | None) -> tuple[str, int, bool]:
    """Where `federation serve` listens and whether read-only: the coordinator serves its
    join endpoint (default: the endpoint given to `init`); any other member its registry,
    read-only, on its mesh address (default: the join endpoint's port there), with a
    certificate of its own made on first use."""
    identity = state.identity()
    if identity.get("role") == "coordinator":
        host, port = split_host_port(listen or identity["endpoint"], "--listen")
        return host, port or DEFAULT_JOIN_PORT, False
    registry = state.store.load()
    me = registry.members.get(identity["commune"])
    if me is None:
        raise InputError(
            f"commune '{identity['commune']}' is not in the registry held here: sync first"
        )
    port = identity["coordinator"]["endpoint"].rpartition(":")[2]
    host, chosen = split_host_port(listen or f"{me.mesh_address}:{port}", "--listen")
    _ensure_tls(state.folder, host)
    return host, chosen or DEFAULT_JOIN_PORT, True


def pin_problem(state: FederationState) -> str | None:
    """Why other members will not fetch from this member's endpoint (its certificate is not
    the one its registry entry records, or none is recorded), or None when they will."""
    identity = state.identity()
    if identity.get("role") == "coordinator":
        return None  # pinned by the invites, and the authority anyway
    me = state.store.load().members.get(identity["commune"])
    recorded = me.tls_fingerprint if me else None
    if recorded is None:
        return (
            "the registry records no certificate for this member (joined before certificates"
            " were recorded): other members will not ask it for the registry"
        )
    if recorded != tls_fingerprint(state):
        return (
            f"this certificate is not the {recorded} the registry records for this member:"
            " other members will refuse it (restore the certificate and key of the join)"
        )
    return None


def sync(state: FederationState, interface: str | None = None) -> Synced:
    """Fetch the coordinator's registry, verify it, hold it unless older; with `interface`,
    apply it to this member's mesh interface; report the version held to the coordinator
    (the coordinator itself only applies what it holds, with `interface`)."""
    if interface is not None:
        mesh.checked_interface(interface)
    identity = state.identity()
    if identity.get("role") == "coordinator":
        if interface is None:
            raise InputError("the coordinator holds the registry: nothing to fetch")
        registry = state.store.load()
        result = Synced(registry.version, registry.version, "held here")
    else:
        registry, source = fetch_registry(state, identity, _sources(state, identity, interface))
        held = state.store.held()[0]
        state.store.accept(registry, source)
        result = Synced(held, registry.version, source)
    keys = load_keys(state.folder)
    if interface is not None:
        result.applied = mesh.apply(registry, identity["commune"], keys, interface)
    # Without a mesh interface (a member on loopback, an admin box) holding is applying.
    applied_at = time.time()
    files.write_atomic(
        state.folder / SYNCED_FILE,
        json.dumps({"version": registry.version, "applied_at": applied_at}) + "\n",
        what="sync record",
    )
    report = make_report(identity["commune"], registry, applied_at, keys)
    if identity.get("role") == "coordinator":
        ReportBook(state.folder).record(report["report"])
        result.reported = "recorded here"
        return result
    try:
        # To the coordinator only, at its first address (the members' endpoints are read-only).
        where = _sources(state, identity, interface)[0].where
        status_, answer = join_endpoint.call(
            where, identity["coordinator"]["tls_fingerprint"], "POST", "/v1/held", report
        )
        result.reported = (
            f"recorded by the coordinator at {where}"
            if status_ == 200
            else (f"refused by the coordinator: {answer}")
        )
    except ExternalError as exc:  # the registry is applied; the report waits for next time
        result.reported = f"not sent: {exc}"
    return result


def _verified_for_member(
    state: FederationState, identity: dict[str, Any], answer: Any, source: str
) -> Registry:
    coordinator = identity["coordinator"]
    registry = parse(json.dumps(answer).encode(), source)
    anchor = registry.members[registry.coordinator].signing_key
    if key_fingerprint(anchor) != coordinator["key_fingerprint"]:
        raise KloudError(
            f"registry {source}: entry version 1 is signed by a key other than the"
            " coordinator's named in the invite: refused"
        )
    if registry.federation != identity["federation"]:
        raise KloudError(
            f"registry {source} is federation '{registry.federation}', not"
            f" '{identity['federation']}'"
        )
    member = registry.members.get(identity["commune"])
    if member is None or member.signing_key != load_keys(state.folder).signing_public:
        raise InviteRefused(
            f"commune '{identity['commune']}' is not admitted yet (registry version"
            f" {registry.version}): the coordinator must confirm the fingerprint with"
            " `kloudctl federation admit`"
        )
    return registry


def status(state: FederationState, interface: str | None = None) -> dict[str, Any]:
    """The registry held here; on the coordinator, what every member reported holding and
    the latest revocation's propagation; with `interface`, the mesh's health seen from here."""
    if interface is not None:
        mesh.checked_interface(interface)
    identity = state.identity()
    registry = state.store.load()
    me = identity["commune"]
    coordinator = identity.get("role") == "coordinator"
    reports = ReportBook(state.folder).read() if coordinator else {}
    synced = _own_sync(state)
    health = mesh.health(registry, me, interface) if interface else {}
    if interface:
        # The last measurement is what `replication.peers: auto` ranks by (`kloudctl plan`).
        choice.record_rtts(state.folder, me, interface, health)
    members = []
    for c, m in sorted(registry.members.items()):
        version, synced_at = member_sync(reports.get(c))
        if c == me:
            version, synced_at = registry.version, synced[1] or synced_at
        members.append(
            {
                **m.to_dict(),
                "state": m.state,
                "admitted_in_version": m.since_version,
                # Known on the coordinator from the members' signed sync reports.
                "registry_version": version,
                "synced_at": synced_at,
                "mesh": health.get(c),
            }
        )
    return {
        "federation": registry.federation,
        "this_member": me,
        "role": identity.get("role"),
        "coordinator": registry.coordinator,
        "registry_version": registry.version,
        "registry_head": registry.head,
        "mesh": f"interface {interface}" if interface else "not read here (give --interface)",
        "pool": str(registry.pool),
        "addresses_left": sum(1 for a in registry.pool.hosts() if a not in registry.used_addresses)
        if registry.pool
        else 0,
        "revocation": propagation(registry, reports) if coordinator else None,
        "members": members,
    }


def _own_sync(state: FederationState) -> tuple[int | None, str | None]:
    path = state.folder / SYNCED_FILE
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_bytes())
    except ValueError:
        data = None
    if (
        not isinstance(data, dict)
        or isinstance(data.get("version"), bool)
        or not isinstance(data.get("version"), int)
        or not isinstance(data.get("applied_at"), int | float)
        or not 0 <= data["applied_at"] <= LAST_SECOND
    ):
        raise KloudError(
            f"sync record {path}: unreadable, or its field 'version' or 'applied_at' is not"
            " valid (it is rewritten by the next sync)"
        )
    return member_sync(data)


# --- a member's own update: measured capacity, renewed certificate, endpoints ------------


@dataclass(frozen=True)
class Measured:
    """What the member measured of itself (`--measure`): spare disk in bytes and power
    headroom in watts, each None when it could not be measured, and why (`notes`)."""

    spare_disk: int | None
    power_headroom: int | None
    notes: tuple[str, ...] = ()


@dataclass
class Updated:
    """One `federation update`: the changes published (none: "no change"), the registry
    version they made (or the one held when nothing changed), the attempts it took (a
    stale head is read again and signed again) and what measuring said."""

    changes: dict[str, Any]
    version: int
    attempts: int = 1
    notes: tuple[str, ...] = ()
    certificate_renewed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed": bool(self.changes),
            "changes": self.changes,
            "registry_version": self.version,
            "attempts": self.attempts,
            "notes": list(self.notes),
            "certificate_renewed": self.certificate_renewed,
        }


#: A stale head (another entry appended meanwhile) is read again and signed again.
UPDATE_BACKOFF = Backoff(attempts=5, first=0.1, maximum=1.0)


def planned_changes(
    member: Member,
    cabinet: Cabinet,
    measured: Measured | None,
    certificate: str | None,
    endpoints: list[str] | None,
) -> dict[str, Any]:
    """What differs between the member's registry entry and what it is now: its declared
    capacity (always recomputed from the declaration), its measured figures (when measured
    now; else those held are kept), its endpoint certificate, its endpoints (when given).
    The capacity goes whole: an update replaces the member's capacity document."""
    capacity = {
        **declared_capacity(cabinet),
        "spare_disk_measured": member.capacity.get("spare_disk_measured"),
        "power_headroom_measured": member.capacity.get("power_headroom_measured"),
    }
    if measured is not None:
        capacity["spare_disk_measured"] = measured.spare_disk
        capacity["power_headroom_measured"] = measured.power_headroom
    wanted: dict[str, Any] = {"capacity": capacity}
    if certificate is not None:
        wanted["tls_fingerprint"] = certificate
    if endpoints is not None:
        wanted["endpoints"] = [_endpoint(e, "--endpoint") for e in endpoints]
    current = member.to_dict()
    return {k: v for k, v in wanted.items() if current.get(k) != v}


def update(
    state: FederationState,
    fleet: Fleet,
    *,
    measure: Callable[[Cabinet], Measured] | None = None,
    endpoints: list[str] | None = None,
    renew_certificate: bool = False,
    now: datetime.datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Updated:
    """Publish this member's own changes as a signed `update` entry (read, compare, plan,
    act): to the coordinator over its pinned HTTPS endpoint (`POST /v1/update`), or, on the
    coordinator, straight into the registry it holds. Nothing is sent when nothing changed.

    `renew_certificate` makes a new certificate for this member's registry endpoint; it is
    written here only once the registry records its fingerprint, so peers never meet a
    certificate they cannot pin (until then the old one stays)."""
    identity = state.identity()
    commune = identity["commune"]
    coordinator = identity.get("role") == "coordinator"
    keys = load_keys(state.folder)
    cabinet = fleet.cabinet(identity.get("cabinet") or commune)
    if renew_certificate and coordinator:
        raise InputError(
            "the coordinator's certificate is pinned by every member from its invite: it is"
            " not renewed by `federation update` (nothing changed)"
        )
    renewed: tuple[bytes, bytes] | None = None
    if renew_certificate:
        renewed = _endpoint_tls(str(cabinet.networks.wan.address.ip))
        certificate: str | None = tls.fingerprint_of(renewed[0])
    elif (state.folder / TLS_CERT).is_file():
        certificate = tls_fingerprint(state)
    else:
        certificate = None
    measured = measure(cabinet) if measure is not None else None
    notes = measured.notes if measured is not None else ()
    attempts = 0

    def attempt() -> Updated:
        nonlocal attempts
        attempts += 1
        registry = state.store.load()
        me = registry.members.get(commune)
        if me is None or me.state != "active":
            raise InputError(
                f"commune '{commune}' is not an active member in the registry held here"
                f" (version {registry.version}): nothing sent"
            )
        changes = planned_changes(me, cabinet, measured, certificate, endpoints)
        if not changes:
            return Updated({}, registry.version, attempts, notes)
        body = {"commune": commune, "changes": changes}
        entry = registry.append("update", commune, body, keys, now).entries[-1]
        if coordinator:
            try:
                version = updates.accept(state.folder, {"entry": entry}).version
            except updates.UpdateRefused as exc:
                raise InputError(f"update refused: {exc}") from None
        else:
            version = _post_update(identity, entry)
        return Updated(changes, version, attempts, notes)

    def read_again(_exc: Exception, _pause: float) -> None:
        if not coordinator:  # the coordinator's own store is the head, read at each attempt
            _hold_latest(state, identity)

    done = retrying(
        attempt,
        retry_if=lambda exc: isinstance(exc, updates.StaleHead),
        pauses=UPDATE_BACKOFF,
        before_retry=read_again,
        sleep=sleep,
    )
    if done.changes and not coordinator:
        # Held at once, so that the next run compares with what the registry now says.
        _hold_latest(state, identity)
    if renewed is not None and "tls_fingerprint" in done.changes:
        cert, cert_key = renewed
        files.write_atomic(state.folder / TLS_KEY, cert_key, mode=0o600, what="endpoint key")
        files.write_atomic(state.folder / TLS_CERT, cert, what="endpoint certificate")
        done.certificate_renewed = True
    return done


def _hold_latest(state: FederationState, identity: dict[str, Any]) -> None:
    """Fetch the coordinator's registry (verified, never older) and hold it."""
    registry, source = fetch_registry(state, identity, _sources(state, identity, None))
    state.store.accept(registry, source)


def _post_update(identity: dict[str, Any], entry: dict[str, Any]) -> int:
    """The registry version the coordinator made of `entry`; StaleHead on 409."""
    coordinator = identity["coordinator"]
    where = coordinator["endpoint"]
    status_, answer = join_endpoint.call(
        where, coordinator["tls_fingerprint"], "POST", "/v1/update", {"entry": entry}
    )
    if status_ == 409:
        raise updates.StaleHead(0, f"the coordinator at {where}: {answer}")
    if status_ != 200:
        raise updates.UpdateRefused(
            status_, f"the coordinator at {where} refused the update (HTTP {status_}): {answer}"
        )
    return dig(f"the federation's join endpoint at {where}", answer, "version", kind=int)
