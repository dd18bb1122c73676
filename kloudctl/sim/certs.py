"""A self-signed certificate per simulated cabinet, and its SHA-256 fingerprint."""

from __future__ import annotations

from pathlib import Path

from kloudctl.sim.persist import write_atomic
from kloudctl.tls import fingerprint_of, self_signed

__all__ = ["ensure_cert", "fingerprint_of", "make_cert"]


def make_cert(name: str, host: str, dns: list[str]) -> tuple[bytes, bytes]:
    return self_signed(name, host, [name, *dns, "localhost"], organization="kloudctl sim")


def ensure_cert(folder: Path | None, name: str, host: str, dns: list[str]) -> tuple[bytes, bytes]:
    """Reuse the cabinet's certificate when it has a state folder (stable fingerprint)."""
    if folder is not None:
        cert_path, key_path = folder / "pve-ssl.pem", folder / "pve-ssl.key"
        if cert_path.exists() and key_path.exists():
            return cert_path.read_bytes(), key_path.read_bytes()
    cert, key = make_cert(name, host, dns)
    if folder is not None:
        write_atomic(folder / "pve-ssl.key", key, 0o600)
        write_atomic(folder / "pve-ssl.pem", cert, 0o644)
    return cert, key
