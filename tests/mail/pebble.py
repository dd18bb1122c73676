"""Pebble, Let's Encrypt's ACME test server (built by the `tools` step), run on this machine
bound to a test network's gateway address, resolving names through a real NSD.

Pebble's own HTTPS listener gets a certificate made here for the gateway address (Pebble's
bundled one names only localhost); `listener_ca` is what a client trusts to reach the
directory. The root that signs the certificates Pebble issues changes at every start and
is read from its management API (`root()`)."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def binary() -> str:
    own = ROOT / ".tools" / "bin" / "pebble"
    found = str(own) if own.exists() else shutil.which("pebble")
    if found is None:
        raise RuntimeError("pebble is not built: run `make tools` (scripts/tools.sh)")
    return found


def listener_certificate(workdir: Path, address: str) -> tuple[Path, Path]:
    """The certificate (and key) of Pebble's own HTTPS listener on `address`, made once in
    `workdir`: a client of the directory trusts the certificate file."""
    cert, key = workdir / "listener.pem", workdir / "listener.key"
    if not cert.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "2", "-subj", f"/CN=kloudctl test ACME listener {address}",
             "-addext", f"subjectAltName=IP:{address}", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
    return cert, key


class Pebble:
    DIRECTORY_PORT = 14000
    MANAGEMENT_PORT = 15000

    def __init__(self, workdir: Path, address: str, dns_server: str, http_port: int = 80) -> None:
        self.dir, self.address = workdir, address
        workdir.mkdir(parents=True, exist_ok=True)
        self.listener_ca, key = listener_certificate(workdir, address)
        config = {
            "pebble": {
                "listenAddress": f"{address}:{self.DIRECTORY_PORT}",
                "managementListenAddress": f"{address}:{self.MANAGEMENT_PORT}",
                "certificate": str(self.listener_ca),
                "privateKey": str(key),
                "httpPort": http_port,
                "tlsPort": 443,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "retryAfter": {"authz": 1, "order": 1},
                "keyAlgorithm": "ecdsa",
                "profiles": {"default": {"description": "test", "validityPeriod": 7776000}},
            }
        }
        (workdir / "pebble.json").write_text(json.dumps(config))
        self.log = (workdir / "pebble.log").open("wb")
        self.proc = subprocess.Popen(
            [binary(), "-config", str(workdir / "pebble.json"), "-dnsserver", dns_server],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            # Validate at once, and never reject a nonce on purpose (retries slow tests down).
            env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PATH": "/usr/bin:/bin"},
        )
        self._wait()

    @property
    def directory(self) -> str:
        return f"https://{self.address}:{self.DIRECTORY_PORT}/dir"

    def _get(self, url: str) -> bytes:
        ctx = ssl.create_default_context(cafile=str(self.listener_ca))
        with urllib.request.urlopen(url, context=ctx, timeout=10) as answer:
            body: bytes = answer.read()
            return body

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pebble exited: {self.log_text()}")
            try:
                self._get(self.directory)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pebble did not answer: {self.log_text()}") from None
                time.sleep(0.2)

    def root(self) -> str:
        """The PEM root of the certificates Pebble issues (from its management API)."""
        url = f"https://{self.address}:{self.MANAGEMENT_PORT}/roots/0"
        return self._get(url).decode()

    def log_text(self) -> str:
        self.log.flush()
        return (self.dir / "pebble.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
