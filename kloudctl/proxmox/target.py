"""Where a cabinet's Proxmox API is, and the automation token's secret.

The cabinet file declares the endpoint, the certificate fingerprint, the token id and a
*reference* to the secret (`env:NAME`, `file:PATH`, `vault:FILE#KEY`). A test cabinet
served by `kloudctl sim` overrides all four through a targets file: JSON mapping a cabinet
name to `{endpoint, fingerprint, token_id, secret}`, found at `$KLOUDCTL_PROXMOX_TARGETS`,
else at `<fleet>/.state/sim/targets.json`. The file is written 0600 by whoever started the
simulator; its secrets are never printed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kloudctl import files
from kloudctl.errors import InputError, KloudError
from kloudctl.model.schema import Cabinet
from kloudctl.proxmox.client import ApiTarget

TARGETS_ENV = "KLOUDCTL_PROXMOX_TARGETS"


def targets_file(root: Path) -> Path:
    env = os.environ.get(TARGETS_ENV)
    return Path(env) if env else root / ".state" / "sim" / "targets.json"


def _overrides(root: Path) -> dict[str, Any]:
    path = targets_file(root)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON targets file ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected an object mapping cabinet names to targets")
    return data


def resolve_secret(ref: str, root: Path) -> str:
    """Resolve a secret reference. The value is returned, never logged."""
    kind, _, rest = ref.partition(":")
    if kind == "env":
        value = os.environ.get(rest)
        if not value:
            raise InputError(f"secret reference {ref}: environment variable {rest} is not set")
        return value
    if kind == "file":
        path = (root / rest).resolve()
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise InputError(
                f"secret reference {ref}: cannot read {path}: {exc.strerror}"
            ) from None
    if kind == "vault":
        return _vault_secret(ref, root)
    raise InputError(f"unknown secret reference kind in {ref!r}")


def _vault_secret(ref: str, root: Path) -> str:
    file, _, key = ref.removeprefix("vault:").partition("#")
    password_file = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")
    if not password_file:
        raise InputError(
            f"secret reference {ref}: set ANSIBLE_VAULT_PASSWORD_FILE to open the vault"
        )
    import yaml
    from ansible.constants import DEFAULT_VAULT_ID_MATCH
    from ansible.parsing.vault import VaultLib, VaultSecret

    remedy = "set ANSIBLE_VAULT_PASSWORD_FILE to the file holding the vault's password"
    path = files.existing_store(password_file, "ANSIBLE_VAULT_PASSWORD_FILE", remedy)
    try:
        secret = VaultSecret(path.read_bytes().strip())
    except OSError as exc:
        raise InputError(f"ANSIBLE_VAULT_PASSWORD_FILE {path}: {exc.strerror}: {remedy}") from None
    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, secret)])
    try:
        data = yaml.safe_load(vault.decrypt((root / file).read_bytes()))
    except Exception as exc:
        raise KloudError(
            f"secret reference {ref}: cannot open the vault ({type(exc).__name__})"
        ) from None
    if not isinstance(data, dict) or key not in data:
        raise InputError(f"secret reference {ref}: no key {key!r} in {file}")
    return str(data[key])


def cabinet_target(cabinet: Cabinet, root: Path) -> ApiTarget:
    """The API target of a cabinet: the simulator's when one serves it, else the declared."""
    override = _overrides(root).get(cabinet.name)
    if override is not None:
        try:
            return ApiTarget(
                override["endpoint"],
                override["fingerprint"],
                override["token_id"],
                override["secret"],
            )
        except (KeyError, TypeError):
            raise InputError(
                f"{targets_file(root)}: {cabinet.name} needs endpoint, fingerprint, token_id "
                "and secret"
            ) from None
    api = cabinet.proxmox
    return ApiTarget(
        api.endpoint,
        api.fingerprint,
        f"{api.token.user}!{api.token.id}",
        resolve_secret(api.token.secret, root),
    )
