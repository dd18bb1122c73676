"""Single-use, expiring invites, and the coordinator's book of them.

An invite is an opaque string `kfi1.<payload>.<signature>`: the payload (canonical JSON,
base64) carries the federation, the invited commune, the coordinator's join endpoint, the
SHA-256 fingerprint of that endpoint's TLS certificate (pinned by the newcomer), the
coordinator's ed25519 public key (the registry's version 1 must be signed by it), the
invite's id, its secret and its expiry; the coordinator signs the payload, so a string
altered by hand or in transit is refused before anything is sent.

The secret never travels back: the newcomer proves it holds it with an HMAC-SHA256 over
its canonical join request. The coordinator keeps its invites in `invites.json` (0600, it
holds the secrets) and changes them only under an exclusive lock, so one invite is
redeemed once even when several requests race.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kloudctl import files
from kloudctl.errors import InputError, KloudError
from kloudctl.federation import LAST_SECOND, canonical
from kloudctl.federation.keys import MemberKeys, verify
from kloudctl.federation.registry import TLS_FINGERPRINT_RE, checked_member
from kloudctl.netloc import split_host_port

PREFIX = "kfi1"
INVITES_FILE = "invites.json"
LOCK_FILE = "invites.lock"
MIN_TTL, MAX_TTL = 60, 30 * 86400
_TTL_RE = re.compile(r"^([0-9]{1,7})([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: A commune is named like a cabinet (`model.types.Name`): it lands in file names, `wg`
#: peers and messages, so no control character or look-alike ever reaches them.
COMMUNE_RE = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]")
#: Printable text, no control character: what a federation's name may be.
LABEL_RE = re.compile(r"[^\x00-\x1f\x7f-\x9f]{1,64}")
_ID_RE = re.compile(r"[0-9a-f]{8,64}")
_PROOF_RE = re.compile(r"[0-9a-f]{64}")
#: A short fingerprint once normalised (`normal_fingerprint`): 8 base32 characters.
SHORT_FINGERPRINT_RE = re.compile(r"[A-Z2-7]{8}")
INVITE_STATES = ("issued", "redeemed", "admitted")


class InviteRefused(KloudError):
    """An invite that is reused, expired, forged or unconfirmed: nothing was changed."""


def parse_ttl(text: str) -> int:
    match = _TTL_RE.match(text.strip())
    seconds = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if not MIN_TTL <= seconds <= MAX_TTL:
        raise InputError(f"--expires: expected a duration from 1m to 30d such as 1h, got {text!r}")
    return seconds


@dataclass(frozen=True)
class Invite:
    federation: str
    commune: str
    endpoint: str
    tls_fingerprint: str
    coordinator_key: str
    id: str
    secret: str
    expires: int

    def encode(self, keys: MemberKeys) -> str:
        payload = canonical.encode(asdict(self))
        return f"{PREFIX}.{canonical.b64(payload)}.{keys.sign(payload)}"

    @classmethod
    def decode(cls, text: str) -> Invite:
        """The invite in `text`: InputError when it is not one, InviteRefused when it was
        altered (its signature does not match)."""
        parts = text.strip().split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise InputError(
                f"INVITE: not a kloudctl invite (expected {PREFIX}.<payload>.<signature>,"
                " as `kloudctl federation invite` prints it)"
            )
        try:
            payload = canonical.unb64(parts[1])
            data = json.loads(payload)
            invite = cls(**data)
        except (ValueError, TypeError, RecursionError):
            raise InputError("INVITE: the invite string is damaged (cut or mistyped?)") from None
        fields_ok = all(isinstance(v, str) for k, v in asdict(invite).items() if k != "expires")
        if not fields_ok or isinstance(invite.expires, bool) or not isinstance(invite.expires, int):
            raise InputError("INVITE: the invite string is damaged (a field has the wrong type)")
        invite.check()
        if canonical.encode(data) != payload or not verify(
            invite.coordinator_key, parts[2], payload
        ):
            raise InviteRefused(
                f"invite {invite.id}: forged or altered: its signature does not match the"
                " coordinator's key it names; ask the coordinator for a new invite"
            )
        return invite

    def check(self) -> None:
        """InputError naming the first field that no coordinator would have written."""
        problems = {
            "federation": not LABEL_RE.fullmatch(self.federation),
            "commune": not COMMUNE_RE.fullmatch(self.commune),
            "tls_fingerprint": not TLS_FINGERPRINT_RE.match(self.tls_fingerprint),
            "id": not _ID_RE.fullmatch(self.id),
            "secret": len(_unb64_or_empty(self.secret)) < 16,
            "expires": not 0 < self.expires <= LAST_SECOND,
        }
        for name, bad in problems.items():
            if bad:
                shown = quoted(getattr(self, name))
                raise InputError(f"INVITE: field '{name}' is not valid: {shown}")
        try:
            _, port = split_host_port(self.endpoint, "INVITE: field 'endpoint'")
        except InputError:
            port = None
        if port is None:
            shown = quoted(self.endpoint)
            raise InputError(f"INVITE: field 'endpoint': expected HOST:PORT, got {shown}")


def quoted(value: object) -> str:
    """A value from outside, shown escaped (no control character reaches a terminal)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def read_records(
    path: Path, what: str, label: str, problem: Callable[[Any], str | None], remedy: str
) -> dict[str, Any]:
    """A small store's JSON object of records (`{}` before its first write), each record
    checked by `problem`; the first damaged one is an error naming the file, its key and
    the `remedy`."""
    records = files.read_json_object(path, what, f"expected an object of {label}s")
    for key, record in records.items():
        wrong = problem(record)
        if wrong:
            raise KloudError(f"{what} {path}: {label} {quoted(key)}: {wrong} ({remedy})")
    return records


def _unb64_or_empty(text: str) -> bytes:
    try:
        return canonical.unb64(text)
    except ValueError:
        return b""


def proof(secret: str, request: dict[str, Any]) -> str:
    """HMAC-SHA256 of the canonical request, keyed with the invite's secret."""
    return hmac.new(canonical.unb64(secret), canonical.encode(request), hashlib.sha256).hexdigest()


def short_fingerprint(invite_id: str, signing_key: str, wireguard_key: str) -> str:
    """8 base32 characters both sides show and the coordinator confirms (`XXXX-XXXX`)."""
    digest = hashlib.sha256(
        canonical.encode({"invite": invite_id, "signing": signing_key, "wireguard": wireguard_key})
    ).digest()
    text = base64.b32encode(digest).decode()[:8]
    return f"{text[:4]}-{text[4:]}"


def normal_fingerprint(text: str) -> str:
    return text.strip().upper().replace("-", "").replace(" ", "")


@dataclass
class InviteBook:
    """The coordinator's invites: `invites.json` under `invites.lock`."""

    folder: Path

    @property
    def path(self) -> Path:
        return self.folder / INVITES_FILE

    def prepare(self) -> None:
        """Make the lock file now, with the coordinator's state: a refused change, which
        still takes the lock, then leaves the state folder exactly as it was."""
        files.create_once(self.folder / LOCK_FILE, b"", what="invites lock")

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """The invites, read under an exclusive lock; write them back with `self.save`."""
        with files.exclusive_lock(self.folder / LOCK_FILE):
            yield self.read()

    def read(self) -> dict[str, Any]:
        return read_records(
            self.path,
            "invites",
            "invite",
            _record_problem,
            "the file was damaged: restore it from a backup, or remove that invite",
        )

    def save(self, invites: dict[str, Any]) -> None:
        data = json.dumps(invites, indent=1, sort_keys=True) + "\n"
        files.write_atomic(self.path, data, mode=0o600, what="invites")

    def issue(
        self,
        *,
        federation: str,
        commune: str,
        endpoint: str,
        tls_fingerprint: str,
        keys: MemberKeys,
        ttl: int,
        now: datetime.datetime,
    ) -> Invite:
        invite = Invite(
            federation=federation,
            commune=commune,
            endpoint=endpoint,
            tls_fingerprint=tls_fingerprint,
            coordinator_key=keys.signing_public,
            id=secrets.token_hex(8),
            secret=canonical.b64(secrets.token_bytes(32)),
            expires=int(now.timestamp()) + ttl,
        )
        with self.locked() as invites:
            invites[invite.id] = {
                "commune": commune,
                "secret": invite.secret,
                "expires": invite.expires,
                "issued": int(now.timestamp()),
                "state": "issued",
                "join": None,
            }
            self.save(invites)
        return invite

    def redeem(self, request: Any, mac: Any, now: datetime.datetime) -> str:
        """Record a join request against its invite; its short fingerprint.

        Refused (InviteRefused, nothing recorded) when the invite is unknown, the proof does
        not match its secret, it is expired, or it was already used."""
        if not isinstance(request, dict) or not isinstance(mac, str):
            raise InputError("join request: expected an object with request and proof")
        if not _PROOF_RE.fullmatch(mac):
            raise InputError("join request: proof: expected 64 hexadecimal digits")
        invite_id = request.get("invite")
        try:
            signed = canonical.encode(request)
        except (KloudError, RecursionError):
            raise InputError("join request: request: not a document a proof can cover") from None
        with self.locked() as invites:
            record = invites.get(invite_id) if isinstance(invite_id, str) else None
            if record is None:
                shown = quoted(invite_id)
                raise InviteRefused(f"invite {shown}: unknown here (forged?)")
            expected = hmac.new(
                canonical.unb64(record["secret"]), signed, hashlib.sha256
            ).hexdigest()
            if not hmac.compare_digest(expected, mac):
                raise InviteRefused(
                    f"invite {invite_id}: forged: the proof does not match the invite's secret"
                )
            if record["state"] != "issued":
                raise InviteRefused(f"invite {invite_id}: already used (invites are single-use)")
            if now.timestamp() >= record["expires"]:
                when = datetime.datetime.fromtimestamp(record["expires"], datetime.UTC)
                raise InviteRefused(f"invite {invite_id}: expired at {when.isoformat()}")
            if request.get("commune") != record["commune"]:
                raise InviteRefused(
                    f"invite {invite_id}: issued to commune '{record['commune']}', not"
                    f" {quoted(request.get('commune'))}"
                )
            member = _member_request(request)
            if not verify(
                member["signing_key"], str(request.get("signature_of_keys")), _keys_blob(member)
            ):
                raise InviteRefused(
                    f"invite {invite_id}: the newcomer did not prove it holds its signing key"
                )
            fingerprint = short_fingerprint(
                str(invite_id), member["signing_key"], member["wireguard_key"]
            )
            record["state"] = "redeemed"
            record["join"] = {"member": member, "fingerprint": fingerprint}
            self.save(invites)
        return fingerprint

    def pending(self) -> list[dict[str, Any]]:
        """Redeemed invites waiting for `admit`: commune, cabinet, fingerprint."""
        return [
            {
                "invite": i,
                "commune": r["commune"],
                "cabinet": r["join"]["member"]["cabinet"],
                "fingerprint": r["join"]["fingerprint"],
            }
            for i, r in sorted(self.read().items())
            if r["state"] == "redeemed"
        ]


def _record_problem(record: Any) -> str | None:
    """What is wrong with one record of the invites file, or None."""
    if not isinstance(record, dict):
        return "expected an object"
    for key, kind in (("commune", str), ("secret", str), ("expires", int), ("state", str)):
        value = record.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"field '{key}' is missing or of the wrong type"
    if record["state"] not in INVITE_STATES:
        return f"field 'state': expected {', '.join(INVITE_STATES)}, got {record['state']!r}"
    if not _unb64_or_empty(record["secret"]):
        return "field 'secret': expected base64"
    join = record.get("join")
    if record["state"] == "issued":
        return None
    if (
        not isinstance(join, dict)
        or not isinstance(join.get("fingerprint"), str)
        or not isinstance(join.get("member"), dict)
        or not isinstance(join["member"].get("cabinet"), str)
    ):
        return "field 'join': expected the member and fingerprint of its join request"
    return None


def _keys_blob(member: dict[str, Any]) -> bytes:
    return canonical.encode(
        {"signing_key": member["signing_key"], "wireguard_key": member["wireguard_key"]}
    )


def _member_request(request: dict[str, Any]) -> dict[str, Any]:
    """The member document a join request declares (without a mesh address yet)."""
    member: dict[str, Any] = {}
    for key in ("commune", "cabinet", "signing_key", "wireguard_key"):
        if not isinstance(request.get(key), str) or not request[key]:
            raise InputError(f"join request: {key}: expected text")
        member[key] = request[key]
    endpoints = request.get("endpoints")
    if not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints):
        raise InputError("join request: endpoints: expected a list of host:port")
    capacity = request.get("capacity")
    if not isinstance(capacity, dict):
        raise InputError("join request: capacity: expected an object")
    member["endpoints"] = endpoints
    member["capacity"] = capacity
    # Absent from a request made by an older kloudctl: the member is admitted unpinned.
    pin = request.get("tls_fingerprint")
    if pin is not None:
        if not isinstance(pin, str) or not TLS_FINGERPRINT_RE.match(pin):
            raise InputError(
                "join request: tls_fingerprint: expected a SHA-256 fingerprint (AB:CD:...)"
            )
        member["tls_fingerprint"] = pin
    for name in ("commune", "cabinet"):
        if not COMMUNE_RE.fullmatch(member[name]):
            shown = quoted(member[name])
            raise InputError(f"join request: {name}: expected a lower-case name, got {shown}")
    for i, endpoint in enumerate(endpoints):
        _, port = split_host_port(endpoint, f"join request: endpoints[{i}]")
        if port is None:
            raise InputError(f"join request: endpoints[{i}]: expected HOST:PORT")
    try:
        # The member document admission will sign: refused now, not at `admit`.
        checked_member({**member, "mesh_address": "0.0.0.0"}, "join request")
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return member


def join_request(
    invite: Invite,
    keys: MemberKeys,
    cabinet: str,
    endpoints: list[str],
    capacity: dict[str, Any],
    tls_fingerprint: str | None = None,
) -> tuple[dict[str, Any], str]:
    """The newcomer's request and its proof (the secret itself is never sent). The proof
    covers the whole request, its registry endpoint's certificate fingerprint included."""
    member = {"signing_key": keys.signing_public, "wireguard_key": keys.wireguard_public}
    request = {
        "invite": invite.id,
        "federation": invite.federation,
        "commune": invite.commune,
        "cabinet": cabinet,
        **member,
        "signature_of_keys": keys.sign(_keys_blob(member)),
        "endpoints": endpoints,
        "capacity": capacity,
        "nonce": secrets.token_hex(8),
    }
    if tls_fingerprint is not None:
        request["tls_fingerprint"] = tls_fingerprint
    return request, proof(invite.secret, request)
