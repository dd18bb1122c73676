"""The Proxmox client over real HTTPS and real proxmoxer, against a scripted loopback server.

The server stands in for pveproxy only to script the answers retries and task waits must
survive (the simulator covers the rest in test_e2e.py). Its certificate is self-signed and
generated at run time, like a cabinet's.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import ssl
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kloudctl.proxmox import ApiTarget, Client, ProxmoxError, RetryPolicy, TaskFailed

UPID = "UPID:pve1:00001234:00005678:6560A000:qmclone:1000:kloudctl@pve!automation:"


def _cert(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pve1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


class Script:
    """Answers per path, consumed in order; the last one repeats."""

    def __init__(self) -> None:
        self.answers: dict[str, deque] = {}
        self.seen: list[tuple[str, str, str]] = []

    def on(self, method: str, path: str, *answers: tuple[int, object]) -> None:
        self.answers[f"{method} {path}"] = deque(answers)

    def answer(self, method: str, path: str) -> tuple[int, object]:
        queue = self.answers.get(f"{method} {path}")
        if not queue:
            return 404, {"data": None, "message": "no such path"}
        return queue.popleft() if len(queue) > 1 else queue[0]


@pytest.fixture
def server(tmp_path):
    fingerprint = _cert(tmp_path)
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            path = self.path.split("?")[0].removeprefix("/api2/json")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            script.seen.append((self.command, path, self.headers.get("Authorization", "")))
            status, payload = script.answer(self.command, path)
            if isinstance(payload, str):
                data = payload.encode()
                reason = payload
            else:
                data = json.dumps(payload).encode()
                reason = "OK" if status == 200 else "error"
            self.send_response(status, reason)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            del body

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], fingerprint, script
    httpd.shutdown()
    httpd.server_close()


def client(port: int, fingerprint: str, attempts: int = 5) -> Client:
    target = ApiTarget(f"https://127.0.0.1:{port}", fingerprint, "kloudctl@pve!automation", "s3")
    return Client(target, RetryPolicy(attempts=attempts, first_delay=0.01, task_poll=0.01))


def test_token_header_and_pinned_fingerprint(server):
    port, fingerprint, script = server
    script.on("GET", "/version", (200, {"data": {"version": "9.1.3"}}))
    assert client(port, fingerprint).get("version") == {"version": "9.1.3"}
    assert script.seen[-1][2] == "PVEAPIToken=kloudctl@pve!automation=s3"


def test_a_different_certificate_is_refused(server):
    port, fingerprint, script = server
    script.on("GET", "/version", (200, {"data": {}}))
    wrong = "00:" + fingerprint[3:]
    with pytest.raises(ProxmoxError, match="fingerprint"):
        client(port, wrong).get("version")


def test_5xx_lock_timeout_and_no_worker_are_retried(server):
    port, fingerprint, script = server
    script.on(
        "POST",
        "/nodes/pve1/qemu/9000/clone",
        (503, "Service Unavailable"),
        (500, "can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout"),
        (500, "got no worker upid - start worker failed"),
        (200, {"data": UPID}),
    )
    script.on(
        "GET",
        f"/nodes/pve1/tasks/{UPID}/status",
        (400, {"data": None, "errors": {"upid": "no such task"}}),
        (200, {"data": {"status": "running"}}),
        (200, {"data": {"status": "stopped", "exitstatus": "WARNINGS: 2"}}),
    )
    c = client(port, fingerprint)
    assert c.post("nodes/pve1/qemu/9000/clone", newid=1000) == UPID
    assert c.retries == 3


def test_task_failure_carries_proxmox_message(server):
    port, fingerprint, script = server
    script.on("POST", "/nodes/pve1/qemu/9000/clone", (200, {"data": UPID}))
    script.on(
        "GET",
        f"/nodes/pve1/tasks/{UPID}/status",
        (200, {"data": {"status": "stopped", "exitstatus": "storage 'local-lvm' is full"}}),
    )
    with pytest.raises(TaskFailed, match="storage 'local-lvm' is full"):
        client(port, fingerprint).post("nodes/pve1/qemu/9000/clone", newid=1000)


def test_400_parameter_errors_are_not_retried_and_keep_the_field(server):
    port, fingerprint, script = server
    script.on(
        "POST",
        "/pools",
        (400, {"data": None, "errors": {"poolid": "pool 'council' already exists"}}),
    )
    c = client(port, fingerprint)
    with pytest.raises(ProxmoxError, match="already exists") as failed:
        c.post("pools", poolid="council")
    assert failed.value.status == 400 and c.retries == 0


def test_persistent_5xx_gives_up_with_the_message(server):
    port, fingerprint, script = server
    script.on("GET", "/cluster/resources", (503, "Service Unavailable"))
    with pytest.raises(ProxmoxError, match=r"503|Service Unavailable"):
        client(port, fingerprint, attempts=3).get("cluster/resources", type="vm")
