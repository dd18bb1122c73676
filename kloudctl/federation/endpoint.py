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
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import ssl
import threading
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

MAX_BODY = 64 * 1024
TIMEOUT = 15.0


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
    ) -> None:
        book, store, reports = InviteBook(folder), RegistryStore(folder), ReportBook(folder)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # events worth telling go through on_event

            def _answer(self, status: int, data: Any) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

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
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    length = -1
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
                    data = json.loads(self.rfile.read(length))
                    if not isinstance(data, dict):
                        raise InputError("join request: expected an object")
                    fingerprint = book.redeem(data.get("request"), data.get("proof"), clock())
                except ValueError:
                    self._answer(400, {"error": "join request: not JSON"})
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
                    report = checked_report(json.loads(self.rfile.read(length)), store.load())
                    reports.record(report)
                except ValueError:
                    self._answer(400, {"error": "held report: not JSON"})
                except InputError as exc:
                    self._answer(400, {"error": str(exc)})
                except KloudError as exc:
                    self._answer(500, {"error": str(exc)})
                else:
                    self._answer(200, {"status": "recorded"})

            def _update(self, length: int) -> None:
                try:
                    updated = accept_update(folder, json.loads(self.rfile.read(length)))
                except ValueError:
                    self._answer(400, {"error": "update: not JSON"})
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
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise KloudError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
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


def _pinned(
    host: str, port: int, fingerprint: str | None, what: str, timeout: float = TIMEOUT
) -> http.client.HTTPSConnection:
    """A connection whose certificate's SHA-256 is `fingerprint` (checked before sending):
    the coordinator's from the invite, another member's from its signed registry entry.

    `None` only where there is nothing to pin against and nothing to lose: a test of a
    member endpoint's refusals. Syncing never asks an unpinned member (`fetch_registry`)."""
    context = ssl.create_default_context()
    # The self-signed certificate is trusted by its pinned fingerprint, not by a CA.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    try:
        connection.connect()
    except (OSError, ssl.SSLError) as exc:
        raise ExternalError(f"{what} at {host}:{port} cannot be reached: {exc}") from None
    assert connection.sock is not None
    if fingerprint is None:
        return connection
    der = connection.sock.getpeercert(binary_form=True) or b""
    seen = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    if seen != fingerprint.upper():
        connection.close()
        raise CertificateMismatch(
            f"{what} at {host}:{port} shows certificate {seen}, not the pinned {fingerprint}:"
            " refused (a different machine, or the certificate was renewed)"
        )
    return connection


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
    host, _, port = endpoint.rpartition(":")
    tool = f"{what} at {endpoint}"
    connection = _pinned(host, int(port), fingerprint, what, timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read(16 * 1024 * 1024)
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        raise ExternalError(f"{tool}: the exchange failed: {exc}") from None
    finally:
        connection.close()
    answer = parse_json(tool, raw)
    if response.status != 200:
        message = dig(tool, answer, "error", kind=str)
        return response.status, message
    return response.status, answer
