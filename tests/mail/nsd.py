"""A real authoritative DNS server (NSD, from Debian) on loopback, serving test zones."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype

from kloudctl.mail.dns import Record

SOA = (
    "@ 3600 IN SOA ns1.{origin} hostmaster.{origin} 1 3600 600 86400 300\n"
    "@ 3600 IN NS ns1\n"
    "ns1 3600 IN A 127.0.0.1\n"
)


def free_port(host: str = "127.0.0.1") -> int:
    # A port free for both UDP and TCP.
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def zone_text(origin: str, records: list[Record]) -> str:
    from kloudctl.mail.dns import _txt_chunks

    lines = [f"$ORIGIN {origin}", SOA.format(origin=origin)]
    for r in records:
        value = _txt_chunks(r.value) if r.type == "TXT" else r.value
        lines.append(f"{r.name} 3600 IN {r.type} {value}")
    return "\n".join(lines) + "\n"


class Nsd:
    def __init__(self, workdir: Path, zones: dict[str, str], address: str = "127.0.0.1") -> None:
        self.dir, self.address, self.port = workdir, address, free_port(address)
        workdir.mkdir(parents=True, exist_ok=True)
        conf = [
            "server:",
            f"  ip-address: {address}@{self.port}",
            f"  port: {self.port}",
            '  username: ""',
            '  chroot: ""',
            f'  zonesdir: "{workdir}"',
            '  database: ""',
            f'  pidfile: "{workdir}/nsd.pid"',
            f'  xfrdfile: "{workdir}/xfrd.state"',
            f'  zonelistfile: "{workdir}/zone.list"',
            f'  xfrdir: "{workdir}"',
            f'  logfile: "{workdir}/nsd.log"',
            "  server-count: 1",
            "  verbosity: 1",
            "remote-control:",
            "  control-enable: no",
        ]
        for origin, text in zones.items():
            name = origin.rstrip(".")
            (workdir / f"{name}.zone").write_text(text)
            conf += ["zone:", f"  name: {name}", f'  zonefile: "{name}.zone"']
        (workdir / "nsd.conf").write_text("\n".join(conf) + "\n")
        checked = subprocess.run(
            ["nsd-checkconf", str(workdir / "nsd.conf")], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stderr
        self.proc = subprocess.Popen(
            [self.binary(), "-d", "-c", str(workdir / "nsd.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait(next(iter(zones)))

    @staticmethod
    def binary() -> str:
        return shutil.which("nsd") or "/usr/sbin/nsd"

    @property
    def server(self) -> str:
        return f"{self.address}:{self.port}"

    def _wait(self, origin: str) -> None:
        query = dns.message.make_query(origin, dns.rdatatype.SOA)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nsd exited: {self.proc.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                answer = dns.query.udp(query, self.address, port=self.port, timeout=0.5)
                if answer.answer:
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"nsd did not answer; log: {(self.dir / 'nsd.log').read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
