"""The coordinator's join endpoint (HTTPS, self-signed certificate pinned by the invite)
and the client newcomers and members use to reach it.

Four routes: `POST /v1/join` (a join request and its HMAC proof: answers the short
fingerprint, or 403 with the reason the invite is refused), `GET /v1/registry` (the
signed registry; its signatures, not the channel, make it trustworthy), `POST /v1/held`
(a member's signed sync report: the version it holds and when it applied it to its mesh)
and `POST /v1/update` (a member's own signed `update` entry: appended as the next version,
409 when signed on an older head, 4xx with the reason otherwise; see `updates.py`).

Every other member runs the same server read-only on its mesh address: `GET /v1/registry`
only (the registry it verified and holds), so members sync from each other when the
coordinator cannot be reached.

Whatever a client sends, the server answers a JSON `{"error": ...}` with a 4xx status (or
drops a connection that stalls), changes nothing on a refusal and keeps serving: each
connection's TLS handshake and request run in its own thread under a timeout, so a client
that sends slowly (or never) holds only its own connection. The client bounds a whole
exchange, not just each read, so an endpoint that answers a byte at a time cannot hold it.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import http.client
import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kloudctl.answers import dig, parse_json
from kloudctl.errors import ExternalError, InputError, KloudError
from kloudctl.federation.invites import InviteBook, InviteRefused
from kloudctl.federation.registry import RegistryStore
from kloudctl.federation.reports import ReportBook, checked_report
from kloudctl.federation.updates import StaleHead, UpdateRefused
from kloudctl.federation.updates import accept as accept_update
from kloudctl.netloc import split_host_port

MAX_BODY = 64 * 1024
#: What of a refused oversized body is drained after the refusal, and for how long.
DRAINED_BODY = 16 * MAX_BODY
LINGER = 2.0
TIMEOUT = 15.0
#: The most of an answer the client reads (a registry is a few hundred kilobytes at most).
MAX_ANSWER = 16 * 1024 * 1024


def _length(headers: Any) -> int:
    """The body length a request declares: 0 without one, -1 when it is not a plain decimal
    (a chunked body, a negative or absurd length)."""
    text = headers.get("Content-Length", "0").strip()
    if headers.get("Transfer-Encoding") is not None:
        return -1  # a chunked body: requests here say their length
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else -1


class _TlsServer(ThreadingHTTPServer):
    """A threading HTTPS server whose TLS handshake happens in the connection's own thread,
    under its timeout: done in `accept`, one client that never says hello would stop the
    server accepting anyone else."""

    daemon_threads = True
    # Many members syncing at once (and a few stalled clients) wait in line, not refused.
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext,
        timeout: float,
        on_drop: Callable[[str], None],
    ) -> None:
        self.context, self.connection_timeout, self.on_drop = context, timeout, on_drop
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(self.connection_timeout)
        with self.context.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that stalls, hangs up or speaks no TLS loses its own connection and
        # nothing else; what it did is not worth a traceback in the endpoint's log.
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            return
        self.on_drop(f"request from {client_address[0]} failed: {type(error).__name__}: {error}")


class CertificateMismatch(KloudError):
    """An endpoint showed a certificate other than the one pinned for it."""


class JoinServer:
    """The join endpoint of the coordinator whose state is in `folder`, in a thread."""

    def __init__(
        self,
        folder: Path,
        cert: Path,
        key: Path,
        host: str,
        port: int,
        *,
        on_event: Callable[[str], None] = lambda _message: None,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        read_only: bool = False,
        timeout: float = TIMEOUT,
    ) -> None:
        book, store, reports = InviteBook(folder), RegistryStore(folder), ReportBook(folder)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # events worth telling go through on_event

            def handle_one_request(self) -> None:
                self.body_read, self.headers = False, None  # type: ignore[assignment]
                self.linger = False
                super().handle_one_request()
                if self.linger:
                    self._linger()

            def _linger(self) -> None:
                """Read and drop what the client still sends of a refused oversized body,
                at most DRAINED_BODY bytes and LINGER seconds, before the connection closes."""
                self.wfile.flush()
                end = time.monotonic() + LINGER
                left = DRAINED_BODY
                try:
                    while left > 0 and (remaining := end - time.monotonic()) > 0:
                        self.connection.settimeout(remaining)
                        piece = self.connection.recv(min(left, MAX_BODY))
                        if not piece:
                            break
                        left -= len(piece)
                except (OSError, ValueError):
                    pass  # the client is gone or slow: closing is all that is left to do

            def _answer(self, status: int, data: Any) -> None:
                body = json.dumps(data).encode()
                if status >= 400:
                    self._discard_body()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if status >= 400:
                    # Whatever is left of a refused request must not be taken for the next
                    # request on this connection.
                    self.close_connection = True
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def send_error(
                self, code: int, message: str | None = None, explain: str | None = None
            ) -> None:
                """http.server's own refusals (a bad request line, a header too long, an
                unknown method) in the shape of every other answer: JSON."""
                if code == 501:  # http.server's word for a method no route takes
                    code, message = 405, f"method {self.command} not allowed"
                if code == 505:  # an HTTP version this server does not speak: the client's
                    code = 400
                # A request line it could not read leaves HTTP/0.9, which has no status
                # line: the answer is HTTP/1.1 all the same, so the client sees why.
                self.request_version = self.protocol_version
                self._answer(code, {"error": message or self.responses.get(code, ("",))[0]})

            def _discard_body(self) -> None:
                """Read a refused request's body (when it says its length and is no larger
                than a request may be) before answering and closing: a connection closed
                on unread data is reset, and the client may lose the answer."""
                length = _length(self.headers) if self.headers is not None else -1
                if not self.body_read and 0 < length <= MAX_BODY:
                    self.body_read = True
                    self.rfile.read(length)
                elif not self.body_read and length > MAX_BODY:
                    # Refused before it is read (as a web server answers 413), then drained
                    # after the answer for a moment (`_linger`): a client still sending it
                    # then reads the refusal rather than a reset connection.
                    self.linger = True

            def _read_json(self, length: int, what: str) -> Any:
                """The request's body (`length` bytes) as JSON; InputError naming `what`
                when it is not JSON (or nests deeper than any request does)."""
                self.body_read = True
                raw = self.rfile.read(length)
                if len(raw) != length:
                    raise InputError(f"{what}: ended after {len(raw)} of {length} bytes")
                try:
                    return json.loads(raw)
                except (ValueError, RecursionError):
                    raise InputError(f"{what}: not JSON") from None

            def do_GET(self) -> None:
                if self.path != "/v1/registry":
                    self._answer(404, {"error": f"no route {self.path}"})
                    return
                try:
                    self._answer(200, store.load().to_json())
                except KloudError as exc:
                    self._answer(500, {"error": str(exc)})

            def do_POST(self) -> None:
                if read_only:
                    self._answer(
                        404,
                        {
                            "error": f"{self.path}: this member serves its registry only"
                            " (joins and sync reports go to the coordinator)"
                        },
                    )
                    return
                if self.path not in ("/v1/join", "/v1/held", "/v1/update"):
                    self._answer(404, {"error": f"no route {self.path}"})
                    return
                length = _length(self.headers)
                if not 0 < length <= MAX_BODY:
                    self._answer(400, {"error": f"a request is 1 to {MAX_BODY} bytes"})
                    return
                if self.path == "/v1/held":
                    self._held(length)
                    return
                if self.path == "/v1/update":
                    self._update(length)
                    return
                try:
                    data = self._read_json(length, "join request")
                    if not isinstance(data, dict):
                        raise InputError("join request: expected an object")
                    fingerprint = book.redeem(data.get("request"), data.get("proof"), clock())
                except InviteRefused as exc:
                    on_event(f"join refused: {exc}")
                    self._answer(403, {"error": str(exc)})
                except InputError as exc:
                    self._answer(400, {"error": str(exc)})
                except KloudError as exc:
                    self._answer(500, {"error": str(exc)})
                else:
                    request = data["request"]
                    on_event(
                        f"join request from commune '{request['commune']}' (cabinet"
                        f" '{request['cabinet']}'): fingerprint {fingerprint}; confirm with"
                        f" `kloudctl federation admit {request['commune']} {fingerprint}`"
                    )
                    self._answer(200, {"status": "pending", "fingerprint": fingerprint})

            def _held(self, length: int) -> None:
                try:
                    report = checked_report(self._read_json(length, "held report"), store.load())
                    reports.record(report)
                except InputError as exc:
                    self._answer(400, {"error": str(exc)})
                except KloudError as exc:
                    self._answer(500, {"error": str(exc)})
                else:
                    self._answer(200, {"status": "recorded"})

            def _update(self, length: int) -> None:
                try:
                    updated = accept_update(folder, self._read_json(length, "update"))
                except InputError as exc:
                    self._answer(400, {"error": str(exc)})
                except StaleHead as exc:
                    self._answer(409, {"error": str(exc), "version": exc.version})
                except UpdateRefused as exc:
                    on_event(f"update refused: {exc}")
                    self._answer(exc.status, {"error": str(exc)})
                except KloudError as exc:
                    self._answer(500, {"error": str(exc)})
                else:
                    entry = updated.entries[-1]
                    on_event(
                        f"update by member '{entry['author']}' ("
                        f"{', '.join(sorted(entry['body']['changes']))}):"
                        f" registry version {updated.version}"
                    )
                    self._answer(200, {"status": "appended", "version": updated.version})

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        try:
            self.httpd = _TlsServer((host, port), Handler, context, timeout, on_event)
        except OSError as exc:
            raise KloudError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> JoinServer:
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.thread is not None:
            self.thread.join()


class _Deadline:
    """Ends a connection whose whole exchange took longer than `seconds`."""

    def __init__(self, sock: ssl.SSLSocket, seconds: float) -> None:
        self.sock, self.passed = sock, threading.Event()
        self.timer = threading.Timer(seconds, self._cut)
        self.timer.daemon = True
        self.timer.start()

    def _cut(self) -> None:
        # shutdown (not close) wakes a read blocked in another thread; the plain socket's,
        # so the TLS object that thread reads through stays in place and fails cleanly.
        self.passed.set()
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def cancel(self) -> None:
        self.timer.cancel()


def _pinned(
    host: str, port: int, fingerprint: str | None, what: str, timeout: float = TIMEOUT
) -> tuple[http.client.HTTPSConnection, _Deadline]:
    """A connection whose certificate's SHA-256 is `fingerprint` (checked before sending):
    the coordinator's from the invite, another member's from its signed registry entry;
    and the timer that cuts it once the whole exchange has taken `2 * timeout` (each read
    is bounded by `timeout`, but an endpoint may answer a byte at a time).

    `None` only where there is nothing to pin against and nothing to lose: a test of a
    member endpoint's refusals. Syncing never asks an unpinned member (`fetch_registry`)."""
    context = ssl.create_default_context()
    # The self-signed certificate is trusted by its pinned fingerprint, not by a CA.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    try:
        raw = socket.create_connection((host, port), timeout)
    except OSError as exc:
        raise ExternalError(f"{what} at {host}:{port} cannot be reached: {exc}") from None
    tls = context.wrap_socket(raw, server_hostname=host, do_handshake_on_connect=False)
    deadline = _Deadline(tls, 2 * timeout)
    try:
        tls.do_handshake()
    except (OSError, ssl.SSLError) as exc:
        deadline.cancel()
        tls.close()
        raise ExternalError(f"{what} at {host}:{port} cannot be reached: {exc}") from None
    connection.sock = tls
    if fingerprint is None:
        return connection, deadline
    der = connection.sock.getpeercert(binary_form=True) or b""
    seen = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    if seen != fingerprint.upper():
        deadline.cancel()
        connection.close()
        raise CertificateMismatch(
            f"{what} at {host}:{port} shows certificate {seen}, not the pinned {fingerprint}:"
            " refused (a different machine, or the certificate was renewed)"
        )
    return connection, deadline


def call(
    endpoint: str,
    fingerprint: str | None,
    method: str,
    path: str,
    body: Any = None,
    *,
    what: str = "the federation's join endpoint",
    timeout: float = TIMEOUT,
) -> tuple[int, Any]:
    """(HTTP status, JSON answer) from the join endpoint `endpoint` (HOST:PORT), or from a
    member's read-only endpoint over the mesh (each pinned by `fingerprint`, see `_pinned`)."""
    host, port = split_host_port(endpoint, what)
    if not host or port is None:
        raise InputError(f"{what}: expected HOST:PORT, got {endpoint!r}")
    tool = f"{what} at {endpoint}"
    connection, deadline = _pinned(host, port, fingerprint, what, timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read(MAX_ANSWER + 1)
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        raise ExternalError(f"{tool}: the exchange failed: {exc}") from None
    finally:
        deadline.cancel()
        connection.close()
    if deadline.passed.is_set():
        # What was read before the cut is not an answer, whatever it looks like.
        raise ExternalError(
            f"{tool}: the exchange failed: no complete answer within {2 * timeout:g} s"
        )
    if len(raw) > MAX_ANSWER:
        raise ExternalError(f"{tool}: answered more than {MAX_ANSWER} bytes: refused")
    if response.length:  # what its Content-Length promised and never came
        promised = len(raw) + response.length
        raise ExternalError(f"{tool}: its answer ended after {len(raw)} of {promised} bytes")
    answer = parse_json(tool, raw)
    if response.status != 200:
        message = dig(tool, answer, "error", kind=str)
        return response.status, message
    return response.status, answer
