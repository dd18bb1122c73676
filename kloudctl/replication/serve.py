"""rest-server for cabinets simulated on this machine: one per cabinet, on its own loopback
address (127.0.0.x), with the same flags the `replication_target` role uses on a real
cabinet: `--append-only --private-repos --tls`, one htpasswd identity per source cabinet.

Used by `kloudctl replication serve`, the end-to-end tests, the bench and `make demo`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kloudctl import files
from kloudctl.errors import ExternalError, ToolMissing
from kloudctl.model import Fleet
from kloudctl.replication.layout import Layout, sources_of
from kloudctl.tls import self_signed


@dataclass
class RestServer:
    cabinet: str
    address: str
    port: int
    data_dir: Path
    cert: Path
    key: Path
    htpasswd: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"

    def argv(self, binary: str, max_size: int | None = None) -> list[str]:
        argv = [
            binary,
            "--listen", f"{self.address}:{self.port}",
            "--path", str(self.data_dir),
            "--htpasswd-file", str(self.htpasswd),
            "--append-only",
            "--private-repos",
            "--tls", "--tls-cert", str(self.cert), "--tls-key", str(self.key),
        ]  # fmt: skip
        if max_size:
            argv += ["--max-size", str(max_size)]
        return argv

    def start(self, max_size: int | None = None) -> None:
        binary = shutil.which("rest-server")
        if not binary:
            raise ToolMissing("rest-server is not on PATH; `make tools` builds it into .tools/bin")
        assert self.log is not None
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.argv(binary, max_size),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={"PATH": os.environ.get("PATH", os.defpath), "HOME": str(self.data_dir)},
                start_new_session=True,
            )
        wait_listening(self.address, self.port, self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass
class Loopback:
    servers: dict[str, RestServer] = field(default_factory=dict)

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def wait_listening(
    address: str, port: int, process: subprocess.Popen[bytes], timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ExternalError(f"rest-server on {address}:{port} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise ExternalError(f"rest-server on {address}:{port} did not start listening")


def write_self_signed(cert: Path, key: Path, address: str, name: str) -> None:
    """A self-signed certificate for the loopback rest-server; restic trusts it via --cacert."""
    cert_pem, key_pem = self_signed(
        f"rest-server {name}",
        address,
        [name],
        as_trust_root=True,
        backdate=datetime.timedelta(minutes=5),
    )
    files.write_atomic(key, key_pem, mode=0o600, what="TLS key")
    files.write_atomic(cert, cert_pem, what="TLS certificate")


def prepare(layout: Layout, fleet: Fleet, owner: str, address: str) -> RestServer:
    """Data folder, TLS pair and htpasswd (one identity per source cabinet) of `owner`."""
    base = layout.cabinet_dir(owner) / "rest-server"
    data, tls = base / "data", base / "tls"
    data.mkdir(parents=True, exist_ok=True)
    tls.mkdir(parents=True, exist_ok=True)
    cert, key = tls / "cert.pem", tls / "key.pem"
    old = layout.endpoints()["cabinets"].get(owner, {}).get("server") or {}
    if not cert.exists() or not old.get("url", "").startswith(f"https://{address}:"):
        write_self_signed(cert, key, address, owner)
    htpasswd = base / "htpasswd"
    lines = [layout.htpasswd_line(source, owner) for source in sources_of(fleet, owner)]
    files.write_atomic(htpasswd, "".join(line + "\n" for line in lines), mode=0o600)
    return RestServer(owner, address, 0, data, cert, key, htpasswd, log=base / "rest-server.log")


@contextlib.contextmanager
def loopback(
    layout: Layout, fleet: Fleet, cabinets: list[str] | None = None, max_size: int | None = None
) -> Iterator[Loopback]:
    """Start one rest-server per cabinet on 127.0.0.(2+i); record them in endpoints.json."""
    names = sorted(cabinets if cabinets is not None else [c.name for c in fleet])
    servers = Loopback()
    try:
        endpoints = layout.endpoints()
        for i, name in enumerate(names):
            address = f"127.0.{i // 250}.{i % 250 + 2}"
            server = prepare(layout, fleet, name, address)
            server.port = free_port(address)
            server.start(max_size)
            servers.servers[name] = server
            entry = endpoints["cabinets"].setdefault(name, {})
            entry["server"] = {
                "url": server.url,
                "cacert": str(server.cert),
                "data_dir": str(server.data_dir),
            }
        layout.write_endpoints(endpoints)
        yield servers
    finally:
        servers.stop()
