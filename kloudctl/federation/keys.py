"""A member's keys: ed25519 to sign registry entries, X25519 for its WireGuard interface.

Private keys live in the federation state folder, 0600, written once (`files.create_once`),
never printed and never put in the registry; the registry holds the public halves.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from kloudctl import files
from kloudctl.errors import InputError, KloudError
from kloudctl.federation.canonical import b64, unb64

SIGNING_KEY = "signing.key"
WIREGUARD_KEY = "wireguard.key"


def key_fingerprint(public_key: str) -> str:
    """SHA-256 of a public key's raw bytes, hex: what an invite pins."""
    return hashlib.sha256(unb64(public_key)).hexdigest()


def verify(public_key: str, signature: str, data: bytes) -> bool:
    """Whether `signature` (base64) is `public_key`'s ed25519 signature of `data`."""
    try:
        Ed25519PublicKey.from_public_bytes(unb64(public_key)).verify(unb64(signature), data)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class MemberKeys:
    signing: Ed25519PrivateKey
    wireguard: X25519PrivateKey

    @property
    def signing_public(self) -> str:
        raw = self.signing.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return b64(raw)

    @property
    def wireguard_public(self) -> str:
        """Standard base64 with padding: the form `wg` reads and shows."""
        raw = self.wireguard.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode()

    def sign(self, data: bytes) -> str:
        return b64(self.signing.sign(data))

    @classmethod
    def generate(cls) -> MemberKeys:
        """New keys, in memory: a newcomer writes them only once its request is accepted."""
        return cls(Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    def save(self, folder: Path) -> None:
        for name, key in ((SIGNING_KEY, self.signing), (WIREGUARD_KEY, self.wireguard)):
            if not files.create_once(folder / name, _pem(key), what="federation key"):
                raise KloudError(f"federation key {folder / name} already exists: not replaced")


def _pem(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def ensure_keys(folder: Path) -> MemberKeys:
    """This member's keys, made on first use (0600). Two racing runs keep one pair."""
    if not (folder / SIGNING_KEY).exists():
        with contextlib.suppress(KloudError):  # a racing run saved its pair first
            MemberKeys.generate().save(folder)
    return load_keys(folder)


def load_keys(folder: Path) -> MemberKeys:
    loaded = []
    for name, kind in ((SIGNING_KEY, Ed25519PrivateKey), (WIREGUARD_KEY, X25519PrivateKey)):
        path = files.existing_store(
            folder / name, "federation key", "run `kloudctl federation init` or `join` first"
        )
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            # A private key others can read is no longer this member's alone (ssh refuses
            # such a key too): said, not used.
            raise InputError(
                f"federation key {path} can be read by others (mode {mode:04o}): make it"
                f" private (chmod 600 {path}) and consider it leaked if others could log in"
            )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KloudError(f"federation key {path} cannot be read: {exc}") from None
        if not isinstance(key, kind):
            raise InputError(f"federation key {path} is not an {kind.__name__[:-10]} key")
        loaded.append(key)
    signing, wireguard = loaded
    assert isinstance(signing, Ed25519PrivateKey) and isinstance(wireguard, X25519PrivateKey)
    return MemberKeys(signing, wireguard)
