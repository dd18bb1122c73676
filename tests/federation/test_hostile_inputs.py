"""Hostile and malformed inputs to the federation, each attack kept as a test.

Invites forged or damaged by hand, arguments out of range, answers of a hostile endpoint
(plain HTTP, another certificate, garbage, a 500, a huge or cut or endless answer), requests
a hostile client sends to the real join endpoint (HTTPS on 127.0.0.1), state files damaged
on disk. Each must end in a clear refusal (exit 2 for bad input, 1 for a refusal or a tool's
failure; 4xx with a JSON reason from the endpoint), never an internal error or a traceback,
and change nothing. Nothing here is mocked: the hostile endpoints are real TLS servers on
loopback, written to misbehave.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kloudctl import tls
from kloudctl.errors import ExternalError, InputError, KloudError
from kloudctl.federation import canonical, choice, peers, service
from kloudctl.federation.endpoint import MAX_ANSWER, MAX_BODY, JoinServer, call
from kloudctl.federation.invites import Invite, join_request, proof
from kloudctl.federation.keys import MemberKeys
from kloudctl.model import load_fleet
from tests.unit.inprocess import Ran, invoke, tree


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def k(fleet: Path, state: Path, *args: str) -> Ran:
    return invoke("--fleet", str(fleet), *args[:2], "--state-dir", str(state), *args[2:])


def refused_cleanly(ran: Ran, code: int, *fragments: str) -> None:
    """Exit `code`, saying each fragment, and no internal error or raw control character."""
    assert ran.code == code, ran.output
    assert "internal error" not in ran.output and "Traceback" not in ran.output, ran.output
    assert "\x1b" not in ran.output, repr(ran.output)
    for fragment in fragments:
        assert fragment in ran.flat(), ran.output


# --- invites forged by hand ---------------------------------------------------------------

GOOD_FIELDS: dict[str, Any] = {
    "federation": "bocage",
    "commune": "mortree",
    "endpoint": "127.0.0.1:9",
    "tls_fingerprint": ":".join(["AB"] * 32),
    "id": "0123456789abcdef",
    "secret": canonical.b64(b"s" * 32),
    "expires": 4102444800,  # 2100-01-01
}
MISSING = object()


def forged(**changes: Any) -> str:
    """An invite string signed by a key of its own (anyone can make one: the key it names
    signs it), with `changes` to its fields (MISSING removes one)."""
    keys = MemberKeys.generate()
    fields = {**GOOD_FIELDS, "coordinator_key": keys.signing_public, **changes}
    fields = {name: value for name, value in fields.items() if value is not MISSING}
    payload = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return f"kfi1.{canonical.b64(payload)}.{keys.sign(payload)}"


def b64(data: bytes) -> str:
    return canonical.b64(data)


HOSTILE_INVITES = {
    "empty": ("", "not a kloudctl invite"),
    "spaces": ("   ", "not a kloudctl invite"),
    "random base64": (f"kfi1.{b64(os.urandom(48))}.{b64(os.urandom(64))}", "damaged"),
    "base64 of text": (f"kfi1.{b64(b'hello, council')}.{b64(b'x')}", "damaged"),
    "not base64": ("kfi1.!!!$$$.sig", "damaged"),
    "non-ASCII payload": ("kfi1.é.sig", "damaged"),
    "a JSON list": (f"kfi1.{b64(b'[1, 2]')}.{b64(b'x')}", "damaged"),
    "a JSON number": (f"kfi1.{b64(b'12')}.{b64(b'x')}", "damaged"),
    "deeply nested": (f"kfi1.{b64(b'[' * 50000)}.{b64(b'x')}", "damaged"),
    "four parts": ("kfi1.a.b.c", "not a kloudctl invite"),
    "another prefix": ("kfi9.a.b", "not a kloudctl invite"),
    "missing secret": (forged(secret=MISSING), "damaged"),
    "missing expires": (forged(expires=MISSING), "damaged"),
    "an extra field": (forged(admin=True), "damaged"),
    "expires as text": (forged(expires="tomorrow"), "wrong type"),
    "expires as true": (forged(expires=True), "wrong type"),
    "expires as a float": (forged(expires=1.5e9), "wrong type"),
    "commune as a number": (forged(commune=61063), "wrong type"),
    "endpoint as a list": (forged(endpoint=["127.0.0.1", 9]), "wrong type"),
    "a huge expiry": (forged(expires=10**30), "field 'expires'"),
    "a negative expiry": (forged(expires=-(10**20)), "field 'expires'"),
    "a zero expiry": (forged(expires=0), "field 'expires'"),
    "endpoint without a port": (forged(endpoint="coordinator.example"), "field 'endpoint'"),
    "endpoint port 0": (forged(endpoint="127.0.0.1:0"), "field 'endpoint'"),
    "endpoint port too large": (forged(endpoint="127.0.0.1:99999"), "field 'endpoint'"),
    "endpoint port a word": (forged(endpoint="127.0.0.1:https"), "field 'endpoint'"),
    "endpoint empty": (forged(endpoint=""), "field 'endpoint'"),
    "endpoint a URL": (forged(endpoint="https://127.0.0.1:8449/v1"), "field 'endpoint'"),
    "fingerprint not hex": (forged(tls_fingerprint="sha256:abc"), "field 'tls_fingerprint'"),
    "secret not base64": (forged(secret="***"), "field 'secret'"),
    "secret non-ASCII": (forged(secret="sécret"), "field 'secret'"),
    "secret too short": (forged(secret=b64(b"ab")), "field 'secret'"),
    "id with a slash": (forged(id="../../etc/passwd"), "field 'id'"),
    "commune with an escape": (forged(commune="mortree\x1b[2J"), "field 'commune'"),
    "commune with a newline": (forged(commune="mor\ntree"), "field 'commune'"),
    "commune with an accent": (forged(commune="mortrée"), "field 'commune'"),
    "commune empty": (forged(commune=""), "field 'commune'"),
    "commune right-to-left": (forged(commune="mortree\u202e"), "field 'commune'"),
    "federation with a bell": (forged(federation="bocage\x07"), "field 'federation'"),
    "federation too long": (forged(federation="b" * 65), "field 'federation'"),
}


@pytest.mark.parametrize("text,said", HOSTILE_INVITES.values(), ids=HOSTILE_INVITES.keys())
def test_a_hostile_invite_is_bad_input_and_nothing_is_sent(
    example_fleet: Path, tmp_path: Path, text: str, said: str
) -> None:
    state = tmp_path / "newcomer"
    ran = k(example_fleet, state, "federation", "join", text, "--cabinet", "mortree")
    refused_cleanly(ran, 2, "INVITE", said)
    assert not state.exists()


def test_an_invite_signed_by_another_key_than_it_names_is_refused(
    example_fleet: Path, tmp_path: Path
) -> None:
    prefix, payload, _ = forged().split(".")
    _, _, other = forged(id="fedcba9876543210").split(".")
    state = tmp_path / "newcomer"
    ran = k(example_fleet, state, "federation", "join", f"{prefix}.{payload}.{other}",
            "--cabinet", "mortree")  # fmt: skip
    refused_cleanly(ran, 1, "forged or altered")
    assert not state.exists()


def test_a_decoded_invite_is_checked_field_by_field() -> None:
    """The same checks, without the CLI: every field of a well-formed invite passes."""
    invite = Invite.decode(forged())
    assert (invite.commune, invite.endpoint, invite.expires) == ("mortree", "127.0.0.1:9",
                                                                 4102444800)  # fmt: skip
    with pytest.raises(InputError, match="field 'endpoint'"):
        Invite.decode(forged(endpoint="[::1]"))
    assert Invite.decode(forged(endpoint="[::1]:8449")).endpoint == "[::1]:8449"


# --- arguments of the coordinator's commands ----------------------------------------------


@pytest.fixture
def coordinator_state(example_fleet: Path, tmp_path: Path) -> Path:
    state = tmp_path / "coordinator"
    ran = k(example_fleet, state, "federation", "init", "bocage", "--endpoint",
            f"127.0.0.1:{free_port()}")  # fmt: skip
    assert ran.code == 0, ran.output
    return state


@pytest.mark.parametrize(
    "expires", ["garbage", "", "0", "0s", "0m", "-1h", "59s", "31d", "9999999d", "1y", "1.5h",
                "\uff11h", "1h30m", "h", "10**9s", "1e3s"],
)  # fmt: skip
def test_invite_expires_out_of_range_is_bad_input(
    example_fleet: Path, coordinator_state: Path, expires: str
) -> None:
    before = tree(coordinator_state)
    ran = k(example_fleet, coordinator_state, "federation", "invite", "mortree", "--expires",
            expires)  # fmt: skip
    refused_cleanly(ran, 2, "--expires: expected a duration from 1m to 30d")
    assert tree(coordinator_state) == before


@pytest.mark.parametrize(
    "commune", ["", "Mortree", "mortree\x1b[31m", "mor tree", "-mortree", "m", "a" * 40,
                "mortrée", "../brieux", "mortree\n"],
)  # fmt: skip
def test_invite_for_a_malformed_commune_name_is_bad_input(
    example_fleet: Path, coordinator_state: Path, commune: str
) -> None:
    before = tree(coordinator_state)
    ran = k(example_fleet, coordinator_state, "federation", "invite", "--", commune)
    refused_cleanly(ran, 2, "COMMUNE: expected a lower-case name")
    assert tree(coordinator_state) == before


def test_init_with_a_control_character_in_the_name_is_bad_input(
    example_fleet: Path, tmp_path: Path
) -> None:
    state = tmp_path / "coordinator"
    ran = k(example_fleet, state, "federation", "init", "bo\x1bcage", "--endpoint",
            "127.0.0.1:8449")  # fmt: skip
    refused_cleanly(ran, 2, "NAME: expected 1 to 64 printable characters")
    assert not state.exists()


@pytest.mark.parametrize(
    "fingerprint,code,said",
    [
        ("", 2, "FINGERPRINT: expected the 8 characters"),
        ("ABCD-EFG", 2, "FINGERPRINT: expected the 8 characters"),
        ("ABCD-EFGHI", 2, "FINGERPRINT: expected the 8 characters"),
        ("ABCD-EF01", 2, "FINGERPRINT: expected the 8 characters"),  # 0 and 1 are not base32
        ("ABCD\x1b-EFGH", 2, "FINGERPRINT: expected the 8 characters"),
        ("ABCD-EFGH", 1, "no join request from commune 'mortree' is waiting"),
    ],
)
def test_admit_with_a_malformed_or_wrong_fingerprint_changes_nothing(
    example_fleet: Path, coordinator_state: Path, fingerprint: str, code: int, said: str
) -> None:
    before = tree(coordinator_state)
    ran = k(example_fleet, coordinator_state, "federation", "admit", "mortree", fingerprint)
    refused_cleanly(ran, code, said)
    assert tree(coordinator_state) == before


@pytest.mark.parametrize(
    "commune,said",
    [
        ("atlantis", "commune 'atlantis' is not a member of 'bocage'"),
        ("brieux", "the coordinator cannot revoke itself"),
        ("", "commune '' is not a member"),
    ],
)
def test_revoke_an_unknown_commune_or_the_coordinator_changes_nothing(
    example_fleet: Path, coordinator_state: Path, commune: str, said: str
) -> None:
    before = tree(coordinator_state)
    ran = k(example_fleet, coordinator_state, "federation", "revoke", commune)
    refused_cleanly(ran, 2, said)
    assert tree(coordinator_state) == before


@pytest.mark.parametrize(
    "args,said",
    [
        (("failover", "atlantis", "web"), "no cabinet named 'atlantis'"),
        (("failback", "atlantis", "web"), "no cabinet named 'atlantis'"),
        (("failover", "brieux", "no-such-vm"), "no-such-vm"),
        (("failback", "brieux", "no-such-vm"), "no-such-vm"),
        (("backup", "atlantis"), "no cabinet named 'atlantis'"),
    ],
)
def test_failover_of_an_unknown_cabinet_or_vm_is_bad_input(
    example_fleet: Path, coordinator_state: Path, tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    before = tree(coordinator_state)
    ran = invoke("--fleet", str(example_fleet), "federation", *args, "--state-dir",
                 str(coordinator_state), "--replication-state", str(tmp_path / "replication"))  # fmt: skip
    refused_cleanly(ran, 2, said)
    assert tree(coordinator_state) == before
    assert not (tmp_path / "replication").exists()


# --- a hostile client against the real join endpoint --------------------------------------


@dataclass
class Served:
    state: service.FederationState
    server: JoinServer
    port: int
    events: list[str]

    def invite(self, commune: str = "mortree") -> Invite:
        return service.invite(self.state, commune, 3600)[0]


#: The server's per-connection timeout in these tests (its default is endpoint.TIMEOUT).
CONNECTION_TIMEOUT = 3.0


@pytest.fixture
def served(example_fleet: Path, tmp_path: Path) -> Iterator[Served]:
    state = service.FederationState(tmp_path / "coordinator")
    port = free_port()
    service.init(state, load_fleet(example_fleet), "bocage", None, f"127.0.0.1:{port}")
    events: list[str] = []
    server = JoinServer(
        state.folder, state.folder / service.TLS_CERT, state.folder / service.TLS_KEY,
        "127.0.0.1", port, on_event=events.append, timeout=CONNECTION_TIMEOUT,
    ).start()  # fmt: skip
    try:
        yield Served(state, server, port, events)
    finally:
        server.stop()


def _client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the endpoint's own client pins; this one attacks
    return context


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def _read_answer(sock: socket.socket, head_only: bool = False) -> Answer | None:
    """One HTTP answer from `sock`, or None when the server closed without one."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head_only else int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return Answer(status, headers, json.loads(rest[:length]) if length else None)


def exchange(port: int, raw: bytes, head_only: bool = False) -> Answer | None:
    """Send `raw` bytes over TLS to the endpoint; its answer."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as plain,
        _client_context().wrap_socket(plain) as sock,
    ):
        sock.sendall(raw)
        return _read_answer(sock, head_only)


def post(path: str, body: bytes, **headers: str) -> bytes:
    fields = {"Host": "x", "Content-Length": str(len(body)), **headers}
    fields = {name.replace("_", "-"): value for name, value in fields.items() if value != "-"}
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + body


def still_serving(port: int) -> None:
    """The endpoint answers a well-formed request, through the client kloudctl uses."""
    status, answer = call(f"127.0.0.1:{port}", None, "GET", "/v1/registry", timeout=5)
    assert status == 200 and answer["federation"] == "bocage"


@pytest.fixture
def no_traceback(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """The server's threads write nothing to stderr (http.server prints a traceback there
    for any exception that escapes a handler)."""
    yield
    _, err = capfd.readouterr()
    assert "Traceback" not in err and "Exception" not in err, err


def join_body(request: Any, mac: Any = "0" * 64) -> bytes:
    return post("/v1/join", json.dumps({"request": request, "proof": mac}).encode())


def held(**changes: Any) -> bytes:
    report = {"commune": "brieux", "version": 1, "head": "0" * 64, "applied_at_ms": 1, **changes}
    return post("/v1/held", json.dumps({"report": report, "signature": "x"}).encode())


BIG = str(MAX_BODY + 1)
RAW_ATTACKS: dict[str, tuple[bytes, int, str]] = {
    "no Content-Length": (post("/v1/join", b"", Content_Length="-"), 400, "1 to 65536 bytes"),
    "Content-Length 0": (post("/v1/join", b""), 400, "1 to 65536 bytes"),
    "negative length": (post("/v1/join", b"", Content_Length="-5"), 400, "1 to 65536"),
    "huge length": (post("/v1/join", b"", Content_Length="9" * 40), 400, "1 to 65536"),
    "length a word": (post("/v1/join", b"{}", Content_Length="two"), 400, "1 to 65536"),
    "length in Arabic digits": (post("/v1/join", b"{}", Content_Length="٢"), 400, "1 to 65536"),
    "body over MAX_BODY": (post("/v1/join", b"", Content_Length=BIG), 400, "1 to 65536"),
    "chunked body": (
        post("/v1/join", b"2\r\n{}\r\n0\r\n\r\n", Content_Length="-", Transfer_Encoding="chunked"),
        400,
        "1 to 65536",
    ),
    "chunked and a length": (
        post("/v1/join", b"2\r\n{}\r\n0\r\n\r\n", Transfer_Encoding="chunked"),
        400,
        "1 to 65536",
    ),
    "not JSON": (post("/v1/join", b"hello"), 400, "join request: not JSON"),
    "not UTF-8": (post("/v1/join", b"\xff\xfe{"), 400, "join request: not JSON"),
    "NaN": (post("/v1/join", b"NaN"), 400, "join request: expected an object"),
    "deeply nested": (post("/v1/join", b"[" * 60000), 400, "join request: not JSON"),
    "a JSON array": (post("/v1/join", b"[]"), 400, "join request: expected an object"),
    "a JSON string": (post("/v1/join", b'"join"'), 400, "join request: expected an object"),
    "request a list": (join_body([], "x"), 400, "expected an object with request and proof"),
    "proof a number": (join_body({}, 5), 400, "expected an object with request and proof"),
    "proof non-ASCII": (join_body({}, "é" * 64), 400, "proof: expected 64 hexadecimal digits"),
    "proof too short": (join_body({}, "0" * 63), 400, "proof: expected 64 hexadecimal digits"),
    "invite id a list": (join_body({"invite": []}), 403, "unknown here"),
    "unknown invite": (join_body({"invite": "\x1b[2J"}), 403, "unknown here"),
    "a float to sign": (join_body({"invite": "x", "n": 1.5}), 400, "not a document a proof"),
    "held: not JSON": (post("/v1/held", b"{"), 400, "held report: not JSON"),
    "held: an array": (post("/v1/held", b"[]"), 400, "held report: expected report and"),
    "held: commune a list": (held(commune=[]), 400, "is not a member"),
    "held: commune an object": (held(commune={}), 400, "is not a member"),
    "held: commune unknown": (held(commune="atlantis"), 400, "'atlantis' is not a member"),
    "held: version text": (held(version="1"), 400, "version must be a whole number"),
    "held: version huge": (held(version=10**300), 400, "is not in this registry"),
    "held: version negative": (held(version=-1), 400, "is not in this registry"),
    "held: head wrong": (held(head=[]), 400, "differs from this registry's"),
    "held: a field more": (held(extra=1), 400, "expected the fields"),
    "unknown route": (post("/v1/admin", b"{}"), 404, "no route /v1/admin"),
    "path with dots": (post("/v1/registry/../held", b"{}"), 404, "no route"),
    "path with a query": (post("/v1/join?x=1", b"{}"), 404, "no route"),
    # http.server itself reads a path starting `//` as `/` (a guard of its own against
    # open redirects): the route is /v1/join, and the body is refused.
    "double slash": (post("//v1/join", b"{}"), 400, "expected an object with request and"),
    "double slash, unknown": (post("//evil.example/v1/join", b"{}"), 404, "no route"),
    "trailing slash": (post("/v1/held/", b"{}"), 404, "no route"),
    "encoded path": (post("/v1/%6Aoin", b"{}"), 404, "no route"),
    "GET with dots": (b"GET /v1/join/../registry HTTP/1.1\r\nHost: x\r\n\r\n", 404, "no route"),
    "GET with a query": (b"GET /v1/registry?all HTTP/1.1\r\nHost: x\r\n\r\n", 404, "no route"),
    "GET absolute URL": (
        b"GET https://evil.example/v1/registry HTTP/1.1\r\nHost: x\r\n\r\n",
        404,
        "no route",
    ),
    "PUT": (b"PUT /v1/join HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 405, "PUT"),
    "DELETE": (b"DELETE /v1/registry HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method DELETE"),
    "PATCH": (b"PATCH /v1/held HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method PATCH"),
    "OPTIONS": (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method OPTIONS"),
    "a garbage request line": (b"\x00\x01\x02 garbage\r\n\r\n", 400, "Bad HTTP/0.9 request"),
    "a bare word": (b"hello\r\n\r\n", 400, "Bad request syntax"),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "Invalid HTTP version"),
    "a header line too long": (
        b"GET /v1/registry HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
        431,
        "",
    ),
    "too many headers": (
        b"GET /v1/registry HTTP/1.1\r\n" + b"X: a\r\n" * 150 + b"\r\n",
        431,
        "",
    ),
}


@pytest.mark.parametrize("raw,status,said", RAW_ATTACKS.values(), ids=RAW_ATTACKS.keys())
def test_a_hostile_request_is_refused_with_a_reason_and_changes_nothing(
    served: Served, no_traceback: None, raw: bytes, status: int, said: str
) -> None:
    served.invite()  # an invite waiting: a refusal must not redeem it
    before = tree(served.state.folder)
    answer = exchange(served.port, raw)
    assert answer is not None
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/json"
    assert isinstance(answer.body["error"], str) and said in answer.body["error"], answer
    assert answer.headers["connection"] == "close"
    assert tree(served.state.folder) == before
    assert served.state.book.pending() == []
    still_serving(served.port)


def test_head_is_refused_without_a_body(served: Served, no_traceback: None) -> None:
    answer = exchange(served.port, b"HEAD /v1/registry HTTP/1.1\r\nHost: x\r\n\r\n", True)
    assert answer is not None and answer.status == 405
    still_serving(served.port)


def test_a_plain_http_client_is_dropped_and_the_endpoint_serves_on(
    served: Served, no_traceback: None
) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as plain:
        plain.sendall(b"GET /v1/registry HTTP/1.1\r\nHost: x\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):
            assert plain.recv(65536)[:1] != b"{"  # a TLS alert at most, never the registry
    still_serving(served.port)


def _valid_request(invite: Invite, **changes: Any) -> tuple[dict[str, Any], str]:
    """A join request holding `changes`, and the proof its sender (who holds the invite)
    computes over it, made by hand: kloudctl's own code would not sign some of them."""
    request, _ = join_request(invite, MemberKeys.generate(), "mortree", ["198.51.100.9:51820"],
                              {"spare_disk_declared": 10**12})  # fmt: skip
    request.update(changes)
    request = {name: value for name, value in request.items() if value is not MISSING}
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    secret = canonical.unb64(invite.secret)
    return request, hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


WRONG_FIELDS: dict[str, tuple[dict[str, Any], int, str]] = {
    "commune a number": ({"commune": 5}, 403, "issued to commune 'mortree', not 5"),
    "commune with an escape": ({"commune": "mortree\x1b[2J"}, 403, "issued to commune"),
    "cabinet missing": ({"cabinet": MISSING}, 400, "cabinet: expected text"),
    "cabinet empty": ({"cabinet": ""}, 400, "cabinet: expected text"),
    "cabinet with a newline": ({"cabinet": "mor\ntree"}, 400, "cabinet: expected a lower-case"),
    "signing key a list": ({"signing_key": []}, 400, "signing_key: expected text"),
    "wireguard key an object": ({"wireguard_key": {}}, 400, "wireguard_key: expected text"),
    "wireguard key with a newline": (
        {"wireguard_key": "abc\n[Peer]"},
        400,
        "expected 32-byte public keys",
    ),
    "signing key not a key": ({"signing_key": "AAAA"}, 400, "expected 32-byte public keys"),
    "endpoints text": ({"endpoints": "198.51.100.9:51820"}, 400, "endpoints: expected a list"),
    "endpoints numbers": ({"endpoints": [51820]}, 400, "endpoints: expected a list"),
    "an endpoint without a port": ({"endpoints": ["198.51.100.9"]}, 400, "endpoints[0]"),
    "an endpoint with a bad port": ({"endpoints": ["h:0"]}, 400, "endpoints[0]"),
    "capacity a list": ({"capacity": []}, 400, "capacity: expected an object"),
    "capacity an unknown figure": ({"capacity": {"cpu": 4}}, 400, "capacity: expected"),
    "capacity as text": (
        {"capacity": {"spare_disk_declared": "1T"}},
        400,
        "expected a whole number",
    ),
    "capacity a float": (
        {"capacity": {"spare_disk_declared": 1.5}},
        400,
        "not a document a proof can cover",
    ),
    "capacity true": ({"capacity": {"spare_disk_declared": True}}, 400, "whole number"),
    "tls fingerprint garbage": ({"tls_fingerprint": "zz"}, 400, "tls_fingerprint: expected"),
    "signature of keys wrong": ({"signature_of_keys": "AAAA"}, 403, "did not prove it holds"),
}


@pytest.mark.parametrize("changes,status,said", WRONG_FIELDS.values(), ids=WRONG_FIELDS.keys())
def test_a_join_request_with_a_wrong_field_is_refused_and_the_invite_stays_unused(
    served: Served, no_traceback: None, changes: dict[str, Any], status: int, said: str
) -> None:
    """Each request carries a valid proof (its sender holds the invite): the fields are
    checked all the same, before anything is recorded."""
    invite = served.invite()
    request, mac = _valid_request(invite, **changes)
    before = tree(served.state.folder)
    answered, message = call(invite.endpoint, invite.tls_fingerprint, "POST", "/v1/join",
                             {"request": request, "proof": mac})  # fmt: skip
    assert (answered, said in message) == (status, True), message
    assert tree(served.state.folder) == before
    # The invite is still good for a well-formed request.
    request, mac = _valid_request(invite)
    assert call(invite.endpoint, invite.tls_fingerprint, "POST", "/v1/join",
                {"request": request, "proof": mac})[0] == 200  # fmt: skip


def test_a_proof_for_one_invite_is_worthless_for_another(
    served: Served, no_traceback: None
) -> None:
    first, second = served.invite("mortree"), served.invite("saint-aubin")
    request, mac = _valid_request(first)
    before = tree(served.state.folder)
    # The same request sent for the second invite, with the first one's proof.
    moved = {**request, "invite": second.id, "commune": "saint-aubin"}
    assert call(second.endpoint, second.tls_fingerprint, "POST", "/v1/join",
                {"request": moved, "proof": mac}) == (403, f"invite {second.id}: forged: the"
                                                      " proof does not match the invite's"
                                                      " secret")  # fmt: skip
    # A proof made with the first invite's secret over a request for the second.
    assert call(second.endpoint, second.tls_fingerprint, "POST", "/v1/join",
                {"request": moved, "proof": proof(first.secret, moved)})[0] == 403  # fmt: skip
    assert tree(served.state.folder) == before


def test_a_join_replayed_after_admission_is_refused(served: Served, no_traceback: None) -> None:
    invite = served.invite()
    request, mac = _valid_request(invite)
    body = {"request": request, "proof": mac}
    status, answer = call(invite.endpoint, invite.tls_fingerprint, "POST", "/v1/join", body)
    assert status == 200
    service.admit(served.state, "mortree", answer["fingerprint"])
    before = tree(served.state.folder)
    for _ in range(2):
        assert call(invite.endpoint, invite.tls_fingerprint, "POST", "/v1/join", body) == (
            403, f"invite {invite.id}: already used (invites are single-use)")  # fmt: skip
    assert tree(served.state.folder) == before
    assert served.state.store.load().version == 2


def test_slow_clients_hold_only_their_own_connection(served: Served, no_traceback: None) -> None:
    """A client that opens TCP and never starts TLS, one that stops in the middle of its
    headers, one that promises a body and never sends it: the others are served meanwhile,
    and the server drops each once its per-connection timeout has passed."""
    silent = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    half = _client_context().wrap_socket(socket.create_connection(("127.0.0.1", served.port),
                                                                  timeout=10))  # fmt: skip
    half.sendall(b"POST /v1/join HTTP/1.1\r\nHost: x\r\nContent-Le")
    promised = _client_context().wrap_socket(socket.create_connection(
        ("127.0.0.1", served.port), timeout=10))  # fmt: skip
    promised.sendall(post("/v1/join", b"{", Content_Length="100"))
    try:
        started = time.monotonic()
        for _ in range(3):
            still_serving(served.port)
        assert time.monotonic() - started < CONNECTION_TIMEOUT * 3
        for sock in (silent, half, promised):
            # Dropped by the server: end of stream (or a reset), well before our 10 s.
            with contextlib.suppress(ConnectionResetError, ssl.SSLError):
                assert sock.recv(1024) == b""
    finally:
        for sock in (silent, half, promised):
            sock.close()
    still_serving(served.port)


def test_many_parallel_requests_are_all_answered(served: Served, no_traceback: None) -> None:
    invite = served.invite()
    answers: list[tuple[str, int]] = []
    lock = threading.Lock()

    def good() -> None:
        status, _ = call(invite.endpoint, invite.tls_fingerprint, "GET", "/v1/registry")
        with lock:
            answers.append(("good", status))

    def bad() -> None:
        answer = exchange(served.port, post("/v1/join", b"[" * 1000))
        with lock:
            answers.append(("bad", answer.status if answer else 0))

    threads = [threading.Thread(target=good if i % 2 else bad) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(answers) == [("bad", 400)] * 20 + [("good", 200)] * 20


# --- a hostile endpoint against the newcomer's client ---------------------------------------

Behaviour = Callable[[socket.socket, threading.Event], None]


class HostileEndpoint:
    """A real server on 127.0.0.1 (TLS unless told otherwise, with a certificate of its own)
    that reads each request and then does `behave`."""

    def __init__(self, folder: Path, behave: Behaviour, *, use_tls: bool = True) -> None:
        cert, key = tls.self_signed("hostile endpoint", "127.0.0.1", [])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "hostile.crt").write_bytes(cert)
        (folder / "hostile.key").write_bytes(key)
        self.fingerprint = tls.fingerprint_of(cert)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(folder / "hostile.crt", folder / "hostile.key")
        self.behave, self.use_tls = behave, use_tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.stop = threading.Event()
        self.received: list[bytes] = []  # what a plain HTTP endpoint was sent
        self.threads = [threading.Thread(target=self._accept)]
        self.threads[0].start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._handle, args=(conn,))
            self.threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(10)
            if not self.use_tls:
                # A plain HTTP server (as nginx on a port without TLS): what comes first, a
                # TLS hello, is a bad request.
                self.received.append(conn.recv(65536))
                conn.sendall(http("400 Bad Request", b"plain HTTP here"))
                return
            sock = self.context.wrap_socket(conn, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
            while len(body) < length:  # read it all: a close on unread data resets
                body += sock.recv(65536)
            self.behave(sock, self.stop)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
        self.listener.close()


def answering(raw: bytes) -> Behaviour:
    def behave(sock: socket.socket, stop: threading.Event) -> None:
        sock.sendall(raw)

    return behave


def http(status: str, body: bytes, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return f"HTTP/1.1 {status}\r\nContent-Length: {size}\r\n\r\n".encode() + body


def huge(sock: socket.socket, stop: threading.Event) -> None:
    sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {MAX_ANSWER + 4096}\r\n\r\n".encode())
    block = b" " * 65536
    for _ in range(MAX_ANSWER // len(block) + 2):
        sock.sendall(block)


def silent(sock: socket.socket, stop: threading.Event) -> None:
    stop.wait(60)


def trickling(sock: socket.socket, stop: threading.Event) -> None:
    """One byte of a header at a time, each well within the client's read timeout."""
    sock.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    while not stop.wait(0.1):
        sock.sendall(b"z")


HOSTILE_ANSWERS: dict[str, tuple[Behaviour, int, str]] = {
    "garbage": (answering(os.urandom(300)), 1, "the exchange failed"),
    "a bad status line": (answering(b"HTTP/1.1 abc\r\n\r\n"), 1, "the exchange failed"),
    "nothing": (answering(b""), 1, "the exchange failed"),
    "not JSON": (answering(http("200 OK", b"hello")), 1, "answered unexpectedly: expected JSON"),
    "deeply nested JSON": (answering(http("200 OK", b"[" * 100000)), 1, "expected JSON"),
    "a 500 in HTML": (
        answering(http("500 Internal Server Error", b"<html>oops</html>")),
        1,
        "expected JSON",
    ),
    "a 500 without a reason": (answering(http("500 Oops", b'{"x": 1}')), 1, "expected error"),
    "a 500 with a reason": (
        answering(http("500 Oops", b'{"error": "disk full"}')),
        1,
        "failed (HTTP 500): disk full",
    ),
    "a 403": (
        answering(http("403 Forbidden", b'{"error": "no"}')),
        1,
        "refused the join: no",
    ),
    "no fingerprint": (
        answering(http("200 OK", b'{"status": "pending"}')),
        1,
        "expected fingerprint",
    ),
    "a fingerprint number": (
        answering(http("200 OK", b'{"fingerprint": 5}')),
        1,
        "fingerprint to be a string",
    ),
    "another fingerprint": (
        answering(http("200 OK", b'{"fingerprint": "AAAA-AAAA"}')),
        1,
        "changed on the way",
    ),
    "an answer cut short": (
        answering(http("200 OK", b'{"fingerpr', length=1000)),
        1,
        "its answer ended after 10 of 1000 bytes",
    ),
    "a huge answer": (huge, 1, f"answered more than {MAX_ANSWER} bytes"),
}


@pytest.mark.parametrize("behave,code,said", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
def test_join_against_a_hostile_endpoint_fails_cleanly_and_keeps_nothing(
    example_fleet: Path, tmp_path: Path, behave: Behaviour, code: int, said: str
) -> None:
    hostile = HostileEndpoint(tmp_path / "hostile", behave)
    try:
        text = forged(endpoint=hostile.endpoint, tls_fingerprint=hostile.fingerprint)
        state = tmp_path / "newcomer"
        ran = k(example_fleet, state, "federation", "join", text, "--cabinet", "mortree")
    finally:
        hostile.close()
    refused_cleanly(ran, code, said)
    assert not state.exists()


def test_join_against_plain_http_or_another_certificate_sends_nothing(
    example_fleet: Path, tmp_path: Path
) -> None:
    requests: list[bytes] = []

    def record(sock: socket.socket, stop: threading.Event) -> None:
        requests.append(b"request")
        sock.sendall(http("200 OK", b'{"fingerprint": "AAAA-AAAA"}'))

    plain = HostileEndpoint(tmp_path / "plain", record, use_tls=False)
    other = HostileEndpoint(tmp_path / "other", record)
    state = tmp_path / "newcomer"
    try:
        text = forged(endpoint=plain.endpoint, tls_fingerprint=plain.fingerprint)
        ran = k(example_fleet, state, "federation", "join", text, "--cabinet", "mortree")
        refused_cleanly(ran, 1, f"join endpoint at 127.0.0.1:{plain.port} cannot be reached")
        # Pinned: the invite's fingerprint, not the one this endpoint shows.
        text = forged(endpoint=other.endpoint)
        ran = k(example_fleet, state, "federation", "join", text, "--cabinet", "mortree")
        refused_cleanly(ran, 1, f"shows certificate {other.fingerprint}, not the pinned")
    finally:
        plain.close()
        other.close()
    assert requests == [] and not state.exists()
    assert plain.received and not any(b"POST" in sent for sent in plain.received)


def test_join_to_a_closed_port_fails_cleanly(example_fleet: Path, tmp_path: Path) -> None:
    state = tmp_path / "newcomer"
    ran = k(example_fleet, state, "federation", "join",
            forged(endpoint=f"127.0.0.1:{free_port()}"), "--cabinet", "mortree")  # fmt: skip
    refused_cleanly(ran, 1, "cannot be reached")
    assert not state.exists()


@pytest.mark.parametrize("behave", [silent, trickling], ids=["never answering", "trickling"])
def test_an_endpoint_that_never_finishes_its_answer_is_cut_off_in_bounded_time(
    tmp_path: Path, behave: Behaviour
) -> None:
    """Each read waits `timeout` at most, and the whole exchange twice that: an endpoint
    that sends a byte now and then cannot hold the client either."""
    hostile = HostileEndpoint(tmp_path / "hostile", behave)
    started = time.monotonic()
    try:
        with pytest.raises(ExternalError, match="the exchange failed"):
            call(hostile.endpoint, hostile.fingerprint, "GET", "/v1/registry", timeout=0.5)
        took = time.monotonic() - started
    finally:
        hostile.close()
    assert took < 5, f"the client waited {took:.1f} s"


def test_a_member_endpoint_that_is_not_host_port_is_bad_input() -> None:
    for endpoint in ("coordinator", "127.0.0.1:", "127.0.0.1:0", "[::1", ":8449"):
        with pytest.raises(InputError):
            call(endpoint, None, "GET", "/v1/registry", timeout=0.5)


# --- state files damaged on disk ----------------------------------------------------------


def _registry_with(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], bytes]:
    def damaged(state: Path) -> bytes:
        document = json.loads((state / "registry.json").read_bytes())
        change(document)
        return json.dumps(document).encode()

    return damaged


def _truncated(state: Path) -> bytes:
    data = (state / "registry.json").read_bytes()
    return data[: len(data) // 2]


def _entry(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["entries"][0].update(changes)

    return change


Damage = bytes | Callable[[Path], bytes]
READERS = [("status", "--json"), ("pending", "--json"), ("invite", "mortree"),
           ("revoke", "mortree"), ("admit", "mortree", "ABCD-EFGH")]  # fmt: skip
#: What the readers answer on an intact state (nobody asked to join, mortree no member).
READERS_OWN_REFUSAL = {"revoke": "is not a member of", "admit": "no join request from"}
DAMAGED: dict[str, tuple[str, Damage, str]] = {
    "registry empty": ("registry.json", b"", "not JSON"),
    "registry cut": ("registry.json", _truncated, "not JSON"),
    "registry not JSON": ("registry.json", b"\xff{", "not JSON"),
    "registry nested": ("registry.json", b"[" * 100000, "not JSON"),
    "registry a list": ("registry.json", b"[]", "expected a registry document"),
    "registry entries text": (
        "registry.json",
        _registry_with(lambda d: d.update(entries="x")),
        "non-empty list",
    ),
    "registry an entry a number": (
        "registry.json",
        _registry_with(lambda d: d.update(entries=[5])),
        "is not an entry",
    ),
    "registry author a list": (
        "registry.json",
        _registry_with(_entry(author=["brieux"])),
        "'author' must be",
    ),
    "registry version text": (
        "registry.json",
        _registry_with(_entry(version="1")),
        "is out of place",
    ),
    "registry body a list": ("registry.json", _registry_with(_entry(body=[])), "'body' an"),
    "registry a float in the body": (
        "registry.json",
        _registry_with(_entry(time=1.5)),
        "'time' must be text",
    ),
    "registry signature altered": (
        "registry.json",
        _registry_with(_entry(signature="AAAA")),
        "does not verify",
    ),
    "held not JSON": ("held.json", b"{", "not JSON"),
    "held a list": ("held.json", b"[]", "field 'version'"),
    "held version negative": (
        "held.json",
        b'{"version": -100, "head": "' + b"0" * 64 + b'"}',
        "field 'version'",
    ),
    "held version infinite": (
        "held.json",
        b'{"version": 1e400, "head": "' + b"0" * 64 + b'"}',
        "field 'version'",
    ),
    "held version text": ("held.json", b'{"version": "1", "head": "x"}', "field 'version'"),
    "held head a number": ("held.json", b'{"version": 1, "head": 5}', "field 'head'"),
    "invites not JSON": ("invites.json", b"{", "unreadable"),
    "invites a list": ("invites.json", b"[]", "expected an object of invites"),
    "invites an invite a number": ("invites.json", b'{"abc": 5}', "expected an object"),
    "invites a redeemed invite without its join": (
        "invites.json",
        json.dumps(
            {
                "abc": {
                    "commune": "mortree",
                    "secret": "AAAA",
                    "expires": 1,
                    "state": "redeemed",
                    "join": None,
                }
            }
        ).encode(),
        "field 'join'",
    ),
    "invites an unknown state": (
        "invites.json",
        json.dumps(
            {"abc": {"commune": "mortree", "secret": "AAAA", "expires": 1, "state": "stolen"}}
        ).encode(),
        "field 'state'",
    ),
    "member not JSON": ("member.json", b"{", "unreadable"),
    "member a list": ("member.json", b"[]", "not a federation member file"),
    "member without a role": ("member.json", b'{"commune": "brieux"}', "field 'federation'"),
    "member endpoint a number": (
        "member.json",
        json.dumps(
            {
                "federation": "bocage",
                "commune": "brieux",
                "cabinet": "brieux",
                "role": "coordinator",
                "endpoint": 5,
            }
        ).encode(),
        "field 'endpoint'",
    ),
    "member an unknown role": (
        "member.json",
        json.dumps(
            {
                "federation": "bocage",
                "commune": "brieux",
                "cabinet": "brieux",
                "role": "king",
                "endpoint": "127.0.0.1:8449",
            }
        ).encode(),
        "field 'role'",
    ),
    "signing key garbage": ("signing.key", b"-----BEGIN PRIVATE KEY-----\nxx\n", "cannot be read"),
    "signing key empty": ("signing.key", b"", "cannot be read"),
    "endpoint certificate garbage": ("join-tls.crt", b"not a certificate", "join-tls.crt"),
}


@pytest.mark.parametrize("name,damage,said", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_state_file_is_named_and_nothing_changes(
    example_fleet: Path, coordinator_state: Path, name: str, damage: Damage, said: str
) -> None:
    path = coordinator_state / name
    data = damage if isinstance(damage, bytes) else damage(coordinator_state)
    path.write_bytes(data)
    before = tree(coordinator_state)
    refusals = []
    for args in READERS:
        ran = k(example_fleet, coordinator_state, "federation", *args)
        assert "internal error" not in ran.output, ran.output
        if ran.code == 0 or READERS_OWN_REFUSAL.get(args[0], "\0") in ran.output:
            continue  # a command that does not read this file: its own answer
        refused_cleanly(ran, 1, name)
        assert tree(coordinator_state) == before, args
        refusals.append(ran.flat())
    assert refusals and all(said in refusal for refusal in refusals), refusals


def test_held_reports_and_sync_record_damaged_are_named(
    example_fleet: Path, coordinator_state: Path
) -> None:
    for name, data in (
        ("held-reports.json", b'{"mortree": 5}'),
        ("held-reports.json", b'{"mortree": {"first_applied": {"one": 1}}}'),
        ("held-reports.json", b'{"mortree": {"first_applied": {}, "applied_at": 1e300}}'),
        ("held-reports.json", b"[]"),
        ("synced.json", b'{"version": 1, "applied_at": "now"}'),
        ("synced.json", b'{"version": 1, "applied_at": 1e300}'),
        ("synced.json", b"{"),
    ):
        (coordinator_state / name).write_bytes(data)
        before = tree(coordinator_state)
        ran = k(example_fleet, coordinator_state, "federation", "status", "--json")
        refused_cleanly(ran, 1, name)
        assert tree(coordinator_state) == before
        (coordinator_state / name).unlink()
    assert k(example_fleet, coordinator_state, "federation", "status").code == 0


@pytest.mark.parametrize(
    "damage,code,said",
    [
        (lambda p: p.chmod(0o644), 2, "can be read by others (mode 0644)"),
        (lambda p: p.chmod(0o640), 2, "can be read by others (mode 0640)"),
        (lambda p: p.unlink(), 2, "does not exist"),
        (lambda p: (p.unlink(), p.mkdir()), 2, "is a folder, not a file"),
        (lambda p: (p.unlink(), p.symlink_to("/dev/zero")), 2, "not a file"),
    ],
    ids=["world-readable", "group-readable", "missing", "a folder", "a link to a device"],
)
def test_a_key_file_open_to_others_missing_or_not_a_file_is_refused(
    example_fleet: Path, coordinator_state: Path, damage: Callable[[Path], Any], code: int,
    said: str,
) -> None:  # fmt: skip
    for name in ("signing.key", "wireguard.key"):
        path = coordinator_state / name
        saved = path.read_bytes()
        damage(path)
        before = tree(coordinator_state)
        ran = k(example_fleet, coordinator_state, "federation", "invite", "mortree")
        refused_cleanly(ran, code, name, said)
        assert tree(coordinator_state) == before
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink(missing_ok=True)
        path.write_bytes(saved)
        path.chmod(0o600)
    assert k(example_fleet, coordinator_state, "federation", "invite", "mortree").code == 0


def test_a_key_of_the_wrong_kind_is_refused(example_fleet: Path, coordinator_state: Path) -> None:
    (coordinator_state / "wireguard.key").write_bytes((coordinator_state / "signing.key")
                                                      .read_bytes())  # fmt: skip
    ran = k(example_fleet, coordinator_state, "federation", "invite", "mortree")
    refused_cleanly(ran, 2, "wireguard.key is not an X25519 key")


def test_a_signed_sync_report_with_an_absurd_time_is_refused(
    served: Served, no_traceback: None
) -> None:
    from kloudctl.federation.keys import load_keys
    from kloudctl.federation.reports import make_report

    keys, registry = load_keys(served.state.folder), served.state.store.load()
    before = tree(served.state.folder)
    for moment in (10**400, 10**30):
        report = make_report("brieux", registry, 1.0, keys)
        report["report"]["applied_at_ms"] = moment
        report["signature"] = keys.sign(canonical.encode(report["report"]))
        status, answer = call(f"127.0.0.1:{served.port}", None, "POST", "/v1/held", report)
        assert (status, answer) == (400, "held report: applied_at_ms must be a time in"
                                         " milliseconds")  # fmt: skip
    assert tree(served.state.folder) == before


RTT_DAMAGE = {
    "not JSON": b"{",
    "a list": b"[]",
    "measured_at huge": b'{"by": "brieux", "interface": "kfed0", "measured_at": 1e400,'
    b' "rtt_ms": {}}',
    "measured_at a huge integer": b'{"by": "brieux", "interface": "kfed0", "measured_at": 1'
    + b"0" * 400
    + b', "rtt_ms": {}}',
    "measured_at negative": b'{"by": "brieux", "interface": "kfed0", "measured_at": -1e12,'
    b' "rtt_ms": {}}',
    "a round trip NaN": b'{"by": "brieux", "interface": "kfed0", "measured_at": 1,'
    b' "rtt_ms": {"mortree": NaN}}',
    "a round trip infinite": b'{"by": "brieux", "interface": "kfed0", "measured_at": 1,'
    b' "rtt_ms": {"mortree": Infinity}}',
    "a round trip text": b'{"by": "brieux", "interface": "kfed0", "measured_at": 1,'
    b' "rtt_ms": {"mortree": "fast"}}',
    "by a number": b'{"by": 5, "interface": "kfed0", "measured_at": 1, "rtt_ms": {}}',
}


@pytest.mark.parametrize("data", RTT_DAMAGE.values(), ids=RTT_DAMAGE.keys())
def test_damaged_round_trip_times_are_named(tmp_path: Path, data: bytes) -> None:
    (tmp_path / choice.RTT_FILE).write_bytes(data)
    with pytest.raises(KloudError, match=choice.RTT_FILE) as caught:
        choice.measured_rtts(tmp_path)
    assert not isinstance(caught.value, ExternalError)


PEER_RECORD = {"cabinet": "brieux", "peers": ["mortree"], "chosen_at": 1.0,
               "registry_version": 2, "why": "first choice", "previous": []}  # fmt: skip
PEER_DAMAGE = {
    "chosen_at huge": {"chosen_at": 10**400},
    "chosen_at infinite": {"chosen_at": float("inf")},
    "chosen_at NaN": {"chosen_at": float("nan")},
    "chosen_at negative": {"chosen_at": -1e15},
    "peers a number": {"peers": 5},
    "a peer a list": {"peers": [["mortree"]]},
    "registry_version text": {"registry_version": "2"},
}


@pytest.mark.parametrize("changes", PEER_DAMAGE.values(), ids=PEER_DAMAGE.keys())
def test_a_damaged_peer_choice_record_is_named(tmp_path: Path, changes: dict[str, Any]) -> None:
    path = peers.record_path(tmp_path, "brieux")
    path.parent.mkdir()
    path.write_text(json.dumps({**PEER_RECORD, **changes}))
    with pytest.raises(KloudError, match=r"recorded peer choice .*brieux\.json: field"):
        peers.load_record(tmp_path, "brieux")


def test_the_serve_command_logs_no_traceback_under_attack(
    example_fleet: Path, coordinator_state: Path
) -> None:
    """`kloudctl federation serve` as its own process: plain HTTP, a TLS client that hangs
    up mid-request, garbage and an unknown method leave no traceback in its log (stderr),
    and it still serves, then stops on SIGTERM."""
    identity = json.loads((coordinator_state / "member.json").read_text())
    port = int(identity["endpoint"].rpartition(":")[2])
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("KLOUDCTL_FEDERATION_STATE", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "kloudctl", "--fleet", str(example_fleet), "federation", "serve",
         "--state-dir", str(coordinator_state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1]
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
            plain.sendall(b"GET /v1/registry HTTP/1.1\r\n\r\n")
            with contextlib.suppress(OSError):
                plain.recv(1024)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            _client_context().wrap_socket(raw) as sock,
        ):
            sock.sendall(b"POST /v1/join HTTP/1.1\r\nContent-Length: 50\r\n\r\n{")
        for attack in (b"\x00garbage\r\n\r\n", b"BREW /v1/registry HTTP/1.1\r\n\r\n",
                       post("/v1/join", b"[" * 60000)):  # fmt: skip
            answer = exchange(port, attack)
            assert answer is not None and 400 <= answer.status < 500
        still_serving(port)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "internal error" not in err, err


MEMBER = {
    "federation": "bocage",
    "commune": "mortree",
    "cabinet": "mortree",
    "role": "member",
    "coordinator": {
        "endpoint": "127.0.0.1:8449",
        "tls_fingerprint": GOOD_FIELDS["tls_fingerprint"],
        "key_fingerprint": "0" * 64,
    },
}


@pytest.mark.parametrize(
    "coordinator,said",
    [
        (None, "field 'coordinator': expected an object"),
        ({**MEMBER["coordinator"], "endpoint": "coordinator"}, "field 'coordinator.endpoint'"),
        ({**MEMBER["coordinator"], "endpoint": ["127.0.0.1", 8449]}, "coordinator.endpoint"),
        ({**MEMBER["coordinator"], "tls_fingerprint": 5}, "coordinator.tls_fingerprint"),
        ({"endpoint": "127.0.0.1:8449"}, "coordinator.tls_fingerprint"),
    ],
)
def test_a_members_damaged_member_file_is_named_before_anything_is_asked(
    example_fleet: Path, tmp_path: Path, coordinator: Any, said: str
) -> None:
    state = tmp_path / "member"
    state.mkdir()
    (state / "member.json").write_text(json.dumps({**MEMBER, "coordinator": coordinator}))
    before = tree(state)
    for args in (("sync",), ("status", "--json"), ("serve",)):
        ran = k(example_fleet, state, "federation", *args)
        refused_cleanly(ran, 1, "member.json", said)
    assert tree(state) == before


def test_an_endpoint_that_accepts_and_never_starts_tls_is_cut_off_in_bounded_time() -> None:
    """A listening socket nobody accepts on: TCP connects (the kernel's backlog), the TLS
    hello is never answered."""
    with socket.create_server(("127.0.0.1", 0)) as mute:
        endpoint = f"127.0.0.1:{mute.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(ExternalError, match="cannot be reached"):
            call(endpoint, GOOD_FIELDS["tls_fingerprint"], "GET", "/v1/registry", timeout=0.5)
        took = time.monotonic() - started
    assert took < 5, f"the client waited {took:.1f} s"
