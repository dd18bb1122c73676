"""Self-signed TLS certificates for the servers kloudctl runs itself (the Proxmox API
simulator, loopback rest-servers), and SHA-256 fingerprints as Proxmox shows them."""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def fingerprint_of(cert_pem: bytes) -> str:
    """SHA-256 fingerprint as Proxmox shows it: `AB:CD:...` (32 pairs)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def self_signed(
    common_name: str,
    host: str,
    dns: list[str],
    *,
    organization: str | None = None,
    as_trust_root: bool = False,
    backdate: datetime.timedelta = datetime.timedelta(days=1),
    valid_for: datetime.timedelta = datetime.timedelta(days=3650),
) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for `host` and the `dns` names.

    `as_trust_root` makes the certificate fit to be given to a client as its CA file
    (restic's --cacert): CA basic constraint, key usages and a subject key identifier.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    subject = x509.Name(attributes)
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(host))]
    sans += [x509.DNSName(d) for d in dict.fromkeys(dns)]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(now + valid_for)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=as_trust_root, path_length=None), critical=True)
    )
    if as_trust_root:
        builder = (
            builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        )
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
