"""The automation user and its API token, created through the Proxmox API (root ticket once).

Proxmox does not let an API token create tokens, so the first one is made with a root
ticket (``POST /access/ticket``); from then on kloudctl uses only the token. The cabinet's
TLS certificate is pinned by its SHA-256 fingerprint (it is self-signed: no CA vouches
for it). The secret goes to the secret store (`kloudctl.hosts.secrets`), never to output.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from kloudctl.errors import ExternalError

TIMEOUT = 15


class _Pinned(HTTPAdapter):
    """Accept exactly the certificate whose SHA-256 fingerprint is pinned."""

    def __init__(self, fingerprint: str) -> None:
        self._fingerprint = fingerprint.replace(":", "").lower()
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_fingerprint"] = self._fingerprint
        kwargs["cert_reqs"] = ssl.CERT_NONE
        super().init_poolmanager(*args, **kwargs)


@dataclass(frozen=True)
class TokenResult:
    token_id: str  # user@realm!id
    secret: str
    created: bool


def fingerprint_of(pem_der: bytes) -> str:
    digest = hashlib.sha256(pem_der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


class Api:
    def __init__(self, endpoint: str, fingerprint: str) -> None:
        parts = urlsplit(endpoint)
        self.base = f"{parts.scheme}://{parts.netloc}/api2/json"
        self.session = requests.Session()
        self.session.mount("https://", _Pinned(fingerprint))
        self.session.verify = False

    def call(self, method: str, path: str, /, **data: Any) -> Any:
        try:
            resp = self.session.request(
                method,
                f"{self.base}/{path.lstrip('/')}",
                data=data if method != "GET" else None,
                params=data if method == "GET" else None,
                timeout=TIMEOUT,
                # The pinned fingerprint is the check (see _Pinned); passed per request, as
                # REQUESTS_CA_BUNDLE in the environment would override the session's value.
                verify=False,
            )
        except requests.exceptions.SSLError:
            raise ExternalError(
                f"{self.base}: the TLS certificate does not match the pinned fingerprint"
            ) from None
        except requests.RequestException as exc:
            raise ExternalError(f"{self.base}: {type(exc).__name__}") from None
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, _reason(resp), path)
        return (resp.json() or {}).get("data")

    def login(self, user: str, password: str) -> None:
        ticket = self.call("POST", "access/ticket", username=user, password=password)
        self.session.cookies.set("PVEAuthCookie", ticket["ticket"])
        self.session.headers["CSRFPreventionToken"] = ticket["CSRFPreventionToken"]

    def use_token(self, token_id: str, secret: str) -> None:
        self.session.cookies.clear()
        self.session.headers.pop("CSRFPreventionToken", None)
        self.session.headers["Authorization"] = f"PVEAPIToken={token_id}={secret}"


class ApiError(ExternalError):
    def __init__(self, status: int, reason: str, path: str) -> None:
        self.status = status
        super().__init__(f"Proxmox API {path}: HTTP {status} {reason}")


def _reason(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.reason or ""
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors:
        return "; ".join(f"{k}: {v}" for k, v in errors.items())
    return str(body.get("message") or resp.reason or "").strip()


def token_works(endpoint: str, fingerprint: str, token_id: str, secret: str) -> bool:
    api = Api(endpoint, fingerprint)
    api.use_token(token_id, secret)
    try:
        api.call("GET", "version")
    except ApiError as exc:
        if exc.status in (401, 403):
            return False
        raise
    return True


def ensure_token(
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
    """Make `user` (with `role` on /) and its token exist; reuse a stored secret that works."""
    full = f"{user}!{token_id}"
    if known_secret and token_works(endpoint, fingerprint, full, known_secret):
        return TokenResult(full, known_secret, created=False)
    api = Api(endpoint, fingerprint)
    api.login(root_user, root_password)
    users = {u.get("userid") for u in api.call("GET", "access/users") or []}
    if user not in users:
        api.call("POST", "access/users", userid=user, comment="kloudctl automation")
    acl = api.call("GET", "access/acl") or []
    if not any(
        a.get("path") == "/" and a.get("ugid") == user and a.get("roleid") == role for a in acl
    ):
        api.call("PUT", "access/acl", path="/", roles=role, users=user, propagate=1)
    path = f"access/users/{quote(user, safe='')}/token/{quote(token_id, safe='')}"
    tokens = {
        t.get("tokenid")
        for t in api.call("GET", f"access/users/{quote(user, safe='')}/token") or []
    }
    if token_id in tokens:  # its secret is lost (or stale): rotate it
        api.call("DELETE", path)
    made = api.call("POST", path, privsep=0, comment="kloudctl automation")
    secret = str(made["value"])
    if not token_works(endpoint, fingerprint, full, secret):
        raise ExternalError(f"{endpoint}: the new token {full} is refused by the API")
    return TokenResult(full, secret, created=True)
