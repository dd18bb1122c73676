"""The one Proxmox VE API client of kloudctl, on proxmoxer.

- API tokens only (`user@realm!tokenid` + secret), the cabinet's TLS certificate pinned by
  its SHA-256 fingerprint (the cabinet's self-signed certificate is not in any CA store,
  so the fingerprint is the trust anchor: a different certificate is refused);
- every asynchronous call returns a UPID that is waited for: `OK` and `WARNINGS: n` are
  success, anything else fails with Proxmox's own message;
- what Proxmox itself asks clients to retry is retried with a bounded backoff: 5xx
  answers, lock timeouts (`can't lock file ... got timeout`), `got no worker upid`, and a
  400 on the status of a task that was just created.

A `Client` holds a live HTTP session: build one where it is used (e.g. inside each method
of a Pulumi dynamic provider) and never store it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException
from requests.adapters import HTTPAdapter

from kloudctl.errors import ExternalError

_UPID_RE = re.compile(r"^UPID:(?P<node>[^:]+):")
_LOCK_TIMEOUT = re.compile(r"can't lock file .* got timeout|got timeout", re.IGNORECASE)
_NO_WORKER = "got no worker upid"


class ProxmoxError(ExternalError):
    """Proxmox answered an error (after retries where retrying is right)."""

    def __init__(self, message: str, status: int | None = None, errors: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or {}


class TaskFailed(ProxmoxError):
    """A task (UPID) ended with anything but OK or WARNINGS."""

    def __init__(self, upid: str, exitstatus: str) -> None:
        super().__init__(f"Proxmox task {task_type(upid)} failed: {exitstatus}")
        self.upid = upid
        self.exitstatus = exitstatus


def task_type(upid: str) -> str:
    parts = upid.split(":")
    return f"{parts[5]} {parts[6]}".strip() if len(parts) > 6 else upid


def is_upid(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("UPID:")


@dataclass(frozen=True)
class ApiTarget:
    """Where and as whom to reach a cabinet's Proxmox API. `secret` is the token secret."""

    endpoint: str
    fingerprint: str
    token_id: str  # user@realm!tokenid
    secret: str = field(repr=False)

    def as_inputs(self) -> dict[str, str]:
        return {
            "endpoint": self.endpoint,
            "fingerprint": self.fingerprint,
            "token_id": self.token_id,
            "secret": self.secret,
        }

    @classmethod
    def from_inputs(cls, data: dict[str, Any]) -> ApiTarget:
        return cls(data["endpoint"], data["fingerprint"], data["token_id"], data["secret"])


class _PinnedAdapter(HTTPAdapter):
    """Accept exactly the certificate whose SHA-256 fingerprint is pinned."""

    def __init__(self, fingerprint: str) -> None:
        self._fingerprint = fingerprint.replace(":", "").lower()
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_fingerprint"] = self._fingerprint
        kwargs["cert_reqs"] = "CERT_NONE"
        super().init_poolmanager(*args, **kwargs)


@dataclass
class RetryPolicy:
    attempts: int = 8
    first_delay: float = 0.2
    max_delay: float = 3.0
    task_poll: float = 0.25
    task_timeout: float = 600.0


def _retryable(exc: ResourceException) -> bool:
    text = f"{exc.status_message} {exc.content} {exc.errors or ''}"
    if _NO_WORKER in text or _LOCK_TIMEOUT.search(text):
        return True
    return exc.status_code >= 500


def _message(exc: ResourceException) -> str:
    parts = [str(exc.content or exc.status_message).strip()]
    if exc.errors:
        parts.append("; ".join(f"{k}: {str(v).strip()}" for k, v in dict(exc.errors).items()))
    return " - ".join(p for p in parts if p)


class Client:
    """A small, retrying, task-waiting facade over proxmoxer."""

    def __init__(
        self,
        target: ApiTarget,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[str], None] | None = None,
        timeout: float = 30.0,
    ) -> None:
        url = urlsplit(target.endpoint)
        if url.scheme != "https" or not url.hostname:
            raise ProxmoxError(f"endpoint must be https://HOST:PORT, got {target.endpoint!r}")
        user, _, token_name = target.token_id.partition("!")
        if not token_name:
            raise ProxmoxError(f"token id must be user@realm!tokenid, got {target.token_id!r}")
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.api = ProxmoxAPI(
            url.hostname,
            port=url.port or 8006,
            backend="https",
            user=user,
            token_name=token_name,
            token_value=target.secret,
            verify_ssl=False,
            timeout=timeout,
        )
        session: requests.Session = self.api._store["session"]
        session.mount("https://", _PinnedAdapter(target.fingerprint))
        self.endpoint = target.endpoint
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self.retries = 0

    # -- raw calls -------------------------------------------------------------------

    def call(self, method: str, path: str, /, **params: Any) -> Any:
        """One API call, retried where Proxmox's own clients retry."""
        params = {k: v for k, v in params.items() if v is not None}
        delay = self.retry.first_delay
        for attempt in range(1, self.retry.attempts + 1):
            try:
                resource = self.api(path.strip("/"))
                return getattr(resource, method.lower())(**params)
            except ResourceException as exc:
                if attempt < self.retry.attempts and _retryable(exc):
                    self._note_retry(f"{method} {path}: {_message(exc)}")
                    time.sleep(delay)
                    delay = min(delay * 2, self.retry.max_delay)
                    continue
                raise ProxmoxError(
                    f"{method} /{path.strip('/')}: {_message(exc)}", exc.status_code, exc.errors
                ) from None
            except requests.exceptions.SSLError:
                raise ProxmoxError(
                    f"{self.endpoint}: its TLS certificate does not match the pinned "
                    "fingerprint (a different machine, or the certificate was renewed)"
                ) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt < self.retry.attempts:
                    self._note_retry(f"{method} {path}: {type(exc).__name__}")
                    time.sleep(delay)
                    delay = min(delay * 2, self.retry.max_delay)
                    continue
                raise ProxmoxError(
                    f"{method} /{path.strip('/')}: cannot reach Proxmox: {type(exc).__name__}"
                ) from None
        raise AssertionError("unreachable")

    def _note_retry(self, what: str) -> None:
        self.retries += 1
        if self.on_retry:
            self.on_retry(what)

    def get(self, path: str, /, **params: Any) -> Any:
        return self.call("GET", path, **params)

    def post(self, path: str, /, **params: Any) -> Any:
        return self.wait(self.call("POST", path, **params))

    def put(self, path: str, /, **params: Any) -> Any:
        return self.wait(self.call("PUT", path, **params))

    def delete(self, path: str, /, **params: Any) -> Any:
        return self.wait(self.call("DELETE", path, **params))

    # -- tasks -----------------------------------------------------------------------

    def wait(self, result: Any) -> Any:
        """Wait for `result` when it is a UPID; return it unchanged otherwise."""
        if is_upid(result):
            self.wait_task(result)
        return result

    def wait_task(self, upid: str) -> str:
        """Poll a task until it stops; return its exit status (`OK` or `WARNINGS: n`)."""
        match = _UPID_RE.match(upid)
        if not match:
            raise ProxmoxError(f"not a task id: {upid!r}")
        node = match.group("node")
        deadline = time.monotonic() + self.retry.task_timeout
        early_400 = 0
        while True:
            try:
                status = self.api.nodes(node).tasks(upid).status.get()
            except ResourceException as exc:
                # A just-created task may not be visible yet: Proxmox answers 400 for a moment.
                if exc.status_code == 400 and early_400 < 20:
                    early_400 += 1
                    time.sleep(self.retry.task_poll)
                    continue
                if _retryable(exc) and time.monotonic() < deadline:
                    self._note_retry(f"task status {task_type(upid)}: {_message(exc)}")
                    time.sleep(self.retry.task_poll)
                    continue
                raise ProxmoxError(
                    f"task {task_type(upid)}: {_message(exc)}", exc.status_code
                ) from None
            if status.get("status") == "stopped":
                exitstatus = str(status.get("exitstatus", ""))
                if exitstatus == "OK" or exitstatus.startswith("WARNINGS"):
                    return exitstatus
                raise TaskFailed(upid, exitstatus)
            if time.monotonic() > deadline:
                raise ProxmoxError(f"task {task_type(upid)} still running after timeout")
            time.sleep(self.retry.task_poll)

    # -- lookups ---------------------------------------------------------------------

    def guests(self) -> list[dict[str, Any]]:
        """Every guest of the cluster, wherever HA put it."""
        return list(self.get("cluster/resources", type="vm") or [])

    def find_guest(self, vmid: int) -> dict[str, Any] | None:
        for guest in self.guests():
            if int(guest.get("vmid", -1)) == int(vmid):
                return guest
        return None


class UserSession:
    """A user's own ticket session (pinned TLS too), for what API tokens may not do.

    Proxmox does not let an API token create API tokens, so a tenant's token is created by
    the tenant's user itself, logged in with the initial password kloudctl gave it.
    """

    def __init__(self, target: ApiTarget, userid: str, password: str, timeout: float = 30.0):
        self.base = target.endpoint.rstrip("/") + "/api2/json"
        self.session = requests.Session()
        self.session.mount("https://", _PinnedAdapter(target.fingerprint))
        self.session.verify = False
        self.session.trust_env = False  # no CA bundle or proxy from the environment
        self.timeout = timeout
        self.endpoint = target.endpoint
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        answer = self._send("POST", "access/ticket", {"username": userid, "password": password})
        self.session.cookies.set("PVEAuthCookie", answer["ticket"])
        self.session.headers["CSRFPreventionToken"] = answer["CSRFPreventionToken"]

    def _send(self, method: str, path: str, params: dict[str, Any]) -> Any:
        try:
            response = self.session.request(
                method,
                f"{self.base}/{path.strip('/')}",
                data=params,
                timeout=self.timeout,
                verify=False,  # the pinned fingerprint is the check (see _PinnedAdapter)
            )
        except requests.exceptions.SSLError:
            raise ProxmoxError(
                f"{self.endpoint}: its TLS certificate does not match the pinned fingerprint"
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ProxmoxError(f"cannot reach Proxmox: {type(exc).__name__}") from None
        if response.status_code != 200:
            try:
                errors = response.json().get("errors")
            except ValueError:
                errors = None
            detail = f" - {errors}" if errors else ""
            raise ProxmoxError(
                f"{method} /{path.strip('/')}: {response.status_code} {response.reason}{detail}",
                response.status_code,
                errors,
            )
        return response.json().get("data")

    def call(self, method: str, path: str, /, **params: Any) -> Any:
        params = {k: v for k, v in params.items() if v is not None}
        delay = 0.2
        for attempt in range(1, 6):
            try:
                return self._send(method, path, params)
            except ProxmoxError as exc:
                if attempt < 5 and (exc.status or 0) >= 500 and "already exists" not in str(exc):
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise
        raise AssertionError("unreachable")
