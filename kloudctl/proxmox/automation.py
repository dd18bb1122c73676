"""The automation user and its API token, created through the Proxmox API (root ticket once).

Proxmox does not let an API token create tokens, so the first one is made with a root
ticket; from then on kloudctl uses only the token. Used by host bootstrap (a real or test
cabinet) and by `tenants use-sim` (simulated cabinets). The secret goes to the caller, to
be kept in a secret store; it never reaches output or messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from kloudctl.answers import UnexpectedAnswer, dig
from kloudctl.errors import ExternalError
from kloudctl.proxmox.client import ApiTarget, Client, ProxmoxError, RetryPolicy

#: A token check or a bootstrap is one attempt and a short pause: a cabinet that does not
#: answer is reported, not waited for.
_QUICK = RetryPolicy(attempts=3, first_delay=0.2, max_delay=1.0)


@dataclass(frozen=True)
class TokenResult:
    token_id: str  # user@realm!id
    secret: str = field(repr=False)
    created: bool


def token_works(target: ApiTarget) -> bool:
    """Does the API accept this token? (False when refused; ProxmoxError when unreachable.)"""
    try:
        Client(target, _QUICK).get("version")
    except ProxmoxError as exc:
        if exc.status in (401, 403):
            return False
        raise
    return True


def _rows(client: Client, path: str) -> list[dict[str, Any]]:
    """A listing (users, ACL entries, tokens): a list of objects, or UnexpectedAnswer."""
    rows = client.get(path)
    if rows is None:
        return []
    for i, _ in enumerate(dig(client.tool, rows, kind=list)):
        dig(client.tool, rows, i, kind=dict)
    return list(rows)


def ensure_automation_token(
    endpoint: str,
    fingerprint: str,
    *,
    root_user: str,
    root_password: str,
    user: str,
    token_id: str,
    known_secret: str | None = None,
    role: str = "Administrator",
) -> TokenResult:
    """Make `user` (with `role` on /) and its token exist; reuse a stored secret that works,
    otherwise (re)create the token: its secret cannot be read back."""
    full = f"{user}!{token_id}"
    if known_secret and token_works(ApiTarget(endpoint, fingerprint, full, known_secret)):
        return TokenResult(full, known_secret, created=False)
    root = Client.login(endpoint, fingerprint, root_user, root_password, _QUICK)
    if user not in {u.get("userid") for u in _rows(root, "access/users")}:
        root.post("access/users", userid=user, comment="kloudctl automation")
    acl = _rows(root, "access/acl")
    if not any(
        a.get("path") == "/" and a.get("ugid") == user and a.get("roleid") == role for a in acl
    ):
        root.put("access/acl", path="/", roles=role, users=user, propagate=1)
    tokens_path = f"access/users/{quote(user, safe='')}/token"
    path = f"{tokens_path}/{quote(token_id, safe='')}"
    if token_id in {t.get("tokenid") for t in _rows(root, tokens_path)}:
        root.delete(path)  # its secret is lost (or stale): rotate it
    made = root.post(path, privsep=0, comment="kloudctl automation")
    # Checked by hand, not with `dig`: its message would quote the answer, a secret.
    if not isinstance(made, dict) or not isinstance(made.get("value"), str):
        raise UnexpectedAnswer(root.tool, "the new token's value", "(not shown: a secret)")
    secret = made["value"]
    if not token_works(ApiTarget(endpoint, fingerprint, full, secret)):
        raise ExternalError(f"{endpoint}: the new token {full} is refused by the API")
    return TokenResult(full, secret, created=True)
