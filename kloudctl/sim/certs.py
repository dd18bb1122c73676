"""A self-signed certificate per simulated cabinet, and its SHA-256 fingerprint."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kloudctl.sim.persist import write_atomic


def fingerprint_of(cert_pem: bytes) -> str:
    """SHA-256 fingerprint as Proxmox shows it: `AB:CD:...` (32 pairs)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def make_cert(name: str, host: str, dns: list[str]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kloudctl sim"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(host))]
    sans += [x509.DNSName(d) for d in dict.fromkeys([name, *dns, "localhost"])]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


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
