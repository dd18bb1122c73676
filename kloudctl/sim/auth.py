"""Authentication as pveproxy does it: tickets, CSRF prevention tokens, API tokens.

Ticket: `PVE:<userid>:<HEXTIME>::<signature>`, valid two hours, sent back as the
`PVEAuthCookie` cookie. CSRF token: `<HEXTIME>:<signature>` bound to the user, required
in the `CSRFPreventionToken` header on every non-GET call made with a ticket. API tokens:
`Authorization: PVEAPIToken=<user>@<realm>!<tokenid>=<secret>` (no CSRF token needed).
Signatures are HMAC-SHA256 with a key held in memory (a restart invalidates tickets).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time

from kloudctl.sim.perms import Identity

TICKET_LIFETIME = 7200
_TOKEN_HEADER = re.compile(r"^PVEAPIToken=([^\s!=]+@[^\s!=]+)!([A-Za-z][A-Za-z0-9.\-_]+)=(\S+)$")


class AuthError(Exception):
    """401 with the reason pveproxy gives; answered by `dispatch` (internal to the simulator,
    see kloudctl.sim.errors)."""


class TicketSigner:
    def __init__(self, key: bytes | None = None) -> None:
        self.key = key or secrets.token_bytes(32)

    def _sig(self, text: str) -> str:
        mac = hmac.new(self.key, text.encode(), hashlib.sha256).digest()
        return base64.b64encode(mac).decode().rstrip("=")

    def ticket(self, userid: str, now: float | None = None) -> str:
        plain = f"PVE:{userid}:{int(now or time.time()):08X}"
        return f"{plain}::{self._sig(plain)}"

    def csrf(self, userid: str, now: float | None = None) -> str:
        stamp = f"{int(now or time.time()):08X}"
        return f"{stamp}:{self._sig(stamp + ':' + userid)}"

    def verify_ticket(self, ticket: str) -> str:
        m = re.match(r"^(PVE:([^:]+):([0-9A-F]{8}))::(.+)$", ticket)
        if not m or not hmac.compare_digest(self._sig(m.group(1)), m.group(4)):
            raise AuthError("invalid PVE ticket")
        age = time.time() - int(m.group(3), 16)
        if age > TICKET_LIFETIME or age < -300:
            raise AuthError("invalid PVE ticket")
        return m.group(2)

    def verify_csrf(self, token: str | None, userid: str) -> None:
        if not token or ":" not in token:
            raise AuthError("Permission denied - invalid csrf token")
        stamp, sig = token.split(":", 1)
        if not hmac.compare_digest(self._sig(stamp + ":" + userid), sig):
            raise AuthError("Permission denied - invalid csrf token")
        try:
            age = time.time() - int(stamp, 16)
        except ValueError:
            raise AuthError("Permission denied - invalid csrf token") from None
        if age > TICKET_LIFETIME or age < -300:
            raise AuthError("Permission denied - invalid csrf token")


def parse_token_header(header: str) -> tuple[Identity, str]:
    m = _TOKEN_HEADER.match(header.strip())
    if not m:
        raise AuthError("invalid token value!")
    return Identity(m.group(1), m.group(2)), m.group(3)
