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
from proxmoxer.backends.https import (
    JsonSerializer,
    ProxmoxHTTPApiTokenAuth,
    ProxmoxHTTPAuthBase,
    ProxmoxHttpSession,
)
from proxmoxer.core import ProxmoxResource, ResourceException
from requests.adapters import HTTPAdapter
from requests.cookies import cookiejar_from_dict

from kloudctl import __version__
from kloudctl.answers import UnexpectedAnswer, dig, parse_json
from kloudctl.errors import ExternalError
from kloudctl.retry import Backoff, retrying

_UPID_RE = re.compile(r"^UPID:(?P<node>[^:]+):")
_LOCK_TIMEOUT = re.compile(r"can't lock file .* got timeout|got timeout", re.IGNORECASE)
_NO_WORKER = "got no worker upid"


def user_agent(component: str) -> str:
    """`kloudctl/<version> (<component>)`: which part of kloudctl sends a request."""
    return f"kloudctl/{__version__} ({component})"


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

    @classmethod
    def from_inputs(cls, data: dict[str, Any]) -> ApiTarget:
        return cls(data["endpoint"], data["fingerprint"], data["token_id"], data["secret"])


def api_tool(endpoint: str) -> str:
    """How errors name the program answering."""
    return f"the Proxmox API at {endpoint}"


def api_data(tool: str, body: bytes | str) -> Any:
    """The `data` of a Proxmox API answer (`{"data": ...}`); UnexpectedAnswer otherwise."""
    return dig(tool, parse_json(tool, body), "data")


class _StrictJson(JsonSerializer):
    """proxmoxer's reader, minus its guesses: a 2xx body that is not JSON comes back from
    proxmoxer as `{"errors": body}` (a value callers would take for data), one without
    `data` as a KeyError. Both are UnexpectedAnswer here."""

    def __init__(self, endpoint: str) -> None:
        self.tool = api_tool(endpoint)

    def loads(self, response: Any) -> Any:
        return api_data(self.tool, response.content)

    def loads_errors(self, response: Any) -> Any:
        # Only for the message of an error answer: any body will do, never fail here.
        try:
            body = parse_json(self.tool, response.content)
        except UnexpectedAnswer:
            return None
        errors = body.get("errors") if isinstance(body, dict) else None
        return errors if isinstance(errors, dict) else None  # `_message` reads a mapping


class _PinnedAdapter(HTTPAdapter):
    """Accept exactly the certificate whose SHA-256 fingerprint is pinned."""

    def __init__(self, fingerprint: str) -> None:
        self._fingerprint = fingerprint.replace(":", "").lower()
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        # urllib3 counts a connection whose fingerprint was asserted as verified, so no
        # InsecureRequestWarning is raised and none needs silencing.
        kwargs["assert_fingerprint"] = self._fingerprint
        kwargs["cert_reqs"] = "CERT_NONE"
        super().init_poolmanager(*args, **kwargs)


class _NoAuth(ProxmoxHTTPAuthBase):
    """For the login request itself (proxmoxer's session asks its auth for defaults)."""

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout=timeout, verify_ssl=False)


class _TicketAuth(ProxmoxHTTPAuthBase):
    """A user's ticket, obtained and renewed over the pinned session.

    proxmoxer's own ticket login posts outside its session, where the pinned certificate
    does not apply, so the password would reach whatever answers: logging in here keeps it
    pinned. Tickets live two hours; like proxmoxer, renew after one, with the ticket itself.
    """

    RENEW_AFTER = 3600.0

    def __init__(self, client: Client, userid: str, password: str) -> None:
        super().__init__(timeout=client.timeout, verify_ssl=False)
        self.client, self.userid = client, userid
        self._ticket, self._csrf, self._born = "", "", 0.0
        self._login(password)

    def _login(self, password: str) -> None:
        try:
            answer = self.client.session.request(
                "POST",
                f"{self.client.base_url}/access/ticket",
                data={"username": self.userid, "password": password},
                auth=_NoAuth(self.client.timeout),
            )
        except requests.RequestException as exc:
            raise self.client.unreachable("POST /access/ticket", exc) from None
        if answer.status_code != 200:
            raise ProxmoxError(
                f"{self.client.endpoint}: login as {self.userid} refused "
                f"({answer.status_code} {answer.reason})",
                answer.status_code,
            )
        data = api_data(self.client.tool, answer.content)
        # Checked by hand, not with `dig`: its message would quote the ticket, a credential.
        data = data if isinstance(data, dict) else {}
        ticket, csrf = data.get("ticket"), data.get("CSRFPreventionToken")
        if not isinstance(ticket, str) or not isinstance(csrf, str):
            raise UnexpectedAnswer(
                self.client.tool, "a ticket and a CSRFPreventionToken", "(not shown)"
            )
        self._ticket, self._csrf, self._born = ticket, csrf, time.monotonic()

    def get_cookies(self) -> Any:
        return cookiejar_from_dict({"PVEAuthCookie": self._ticket})

    def __call__(self, req: Any) -> Any:
        if time.monotonic() - self._born >= self.RENEW_AFTER:
            self._login(self._ticket)
        if req.method != "GET":
            req.headers["CSRFPreventionToken"] = self._csrf
        return req


@dataclass
class RetryPolicy:
    attempts: int = 8
    first_delay: float = 0.2
    max_delay: float = 3.0
    task_poll: float = 0.25
    task_timeout: float = 600.0

    def backoff(self) -> Backoff:
        return Backoff(self.attempts, self.first_delay, self.max_delay)


def _retryable(exc: Exception) -> bool:
    """What Proxmox's own clients retry: 5xx, lock timeouts, no worker; and a connection
    that failed or timed out (never a certificate that does not match the pin)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    if not isinstance(exc, ResourceException):
        return False
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
    """A small, retrying, task-waiting facade over proxmoxer, on one pinned session.

    `Client(target)` authenticates with the target's API token; `Client.login(...)` with a
    user's ticket (what a token may not do: create API tokens).
    """

    def __init__(
        self,
        target: ApiTarget,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[str], None] | None = None,
        timeout: float = 30.0,
        *,
        password_of: str | None = None,
        password: str | None = None,
        deadline: float | None = None,
        component: str = "core",
    ) -> None:
        url = urlsplit(target.endpoint)
        if url.scheme != "https" or not url.hostname:
            raise ProxmoxError(f"endpoint must be https://HOST:PORT, got {target.endpoint!r}")
        self.endpoint = target.endpoint
        self.tool = api_tool(target.endpoint)
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self.retries = 0
        self.timeout = timeout
        #: A `time.monotonic()` time past which no call starts, waits or is retried: the
        #: whole budget of a caller (one cabinet's status), retries included.
        self.deadline = deadline
        netloc = url.netloc if url.port else f"{url.netloc}:8006"
        self.base_url = f"https://{netloc}/api2/json"
        # proxmoxer's session (uploads, agent commands...) with the certificate pinned, and no
        # CA bundle or proxy taken from the environment.
        self.session = ProxmoxHttpSession()
        self.session.trust_env = False
        self.session.mount("https://", _PinnedAdapter(target.fingerprint))
        self.session.headers["accept"] = "application/json"
        # who calls, for Proxmox's access log and the simulator's usage log
        self.session.headers["User-Agent"] = user_agent(component)
        if password_of is not None:
            self.session.auth = _TicketAuth(self, password_of, password or "")
        else:
            user, _, token_name = target.token_id.partition("!")
            if not token_name:
                raise ProxmoxError(f"token id must be user@realm!tokenid, got {target.token_id!r}")
            self.session.auth = ProxmoxHTTPApiTokenAuth(
                user, token_name, target.secret, timeout=timeout, verify_ssl=False
            )
        self.api = ProxmoxResource(
            base_url=self.base_url, session=self.session, serializer=_StrictJson(target.endpoint)
        )

    @classmethod
    def login(
        cls,
        endpoint: str,
        fingerprint: str,
        userid: str,
        password: str,
        retry: RetryPolicy | None = None,
        *,
        component: str = "core",
    ) -> Client:
        """A client acting as `userid` with a ticket (the password is sent pinned, once)."""
        target = ApiTarget(endpoint, fingerprint, userid, "")
        return cls(target, retry, password_of=userid, password=password, component=component)

    def unreachable(self, what: str, exc: Exception) -> ProxmoxError:
        if isinstance(exc, requests.exceptions.SSLError):
            return ProxmoxError(
                f"{self.endpoint}: its TLS certificate does not match the pinned "
                "fingerprint (a different machine, or the certificate was renewed)"
            )
        return ProxmoxError(f"{what}: cannot reach Proxmox: {type(exc).__name__}")

    # -- raw calls -------------------------------------------------------------------

    def call(self, method: str, path: str, /, **params: Any) -> Any:
        """One API call, retried where Proxmox's own clients retry."""
        params = {k: v for k, v in params.items() if v is not None}
        where = f"{method} /{path.strip('/')}"

        def once() -> Any:
            self._bound_by_deadline(where)
            resource = self.api(path.strip("/"))
            return getattr(resource, method.lower())(**params)

        def note(exc: Exception, _pause: float) -> None:
            detail = _message(exc) if isinstance(exc, ResourceException) else type(exc).__name__
            self._note_retry(f"{method} {path}: {detail}")

        try:
            return retrying(
                once,
                retry_if=_retryable,
                pauses=self.retry.backoff(),
                before_retry=note,
                deadline=self.deadline,
            )
        except ResourceException as exc:
            raise ProxmoxError(f"{where}: {_message(exc)}", exc.status_code, exc.errors) from None
        except requests.RequestException as exc:
            raise self.unreachable(where, exc) from None

    def _bound_by_deadline(self, where: str) -> None:
        """Give the next request only the time left before the deadline (requests' timeout,
        read from the session's auth by proxmoxer); none left is a failure now."""
        if self.deadline is None:
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ProxmoxError(f"{where}: no answer from {self.endpoint} in the time given")
        auth = self.session.auth
        if isinstance(auth, ProxmoxHTTPAuthBase):
            auth.timeout = min(self.timeout, left)

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
            # A status without `status` would be polled until the timeout: say so now.
            state = dig(self.tool, status, "status", kind=str)
            if state == "stopped":
                exitstatus = dig(self.tool, status, "exitstatus", kind=str)
                if exitstatus == "OK" or exitstatus.startswith("WARNINGS"):
                    return exitstatus
                raise TaskFailed(upid, exitstatus)
            if time.monotonic() > deadline:
                raise ProxmoxError(f"task {task_type(upid)} still running after timeout")
            time.sleep(self.retry.task_poll)

    # -- lookups ---------------------------------------------------------------------

    def guests(self) -> list[dict[str, Any]]:
        """Every guest of the cluster, wherever HA put it, each with an integer `vmid`."""
        found = self.get("cluster/resources", type="vm")
        for i, _ in enumerate(dig(self.tool, found, kind=list)):
            dig(self.tool, found, i, "vmid", kind=int)
        return list(found)

    def find_guest(self, vmid: int) -> dict[str, Any] | None:
        for guest in self.guests():
            if guest["vmid"] == int(vmid):
                return guest
        return None
