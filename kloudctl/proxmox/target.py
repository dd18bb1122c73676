"""Where a cabinet's Proxmox API is, and the automation token's secret.

The cabinet file declares the endpoint, the certificate fingerprint, the token id and a
*reference* to the secret (`env:NAME`, `file:PATH`, `vault:FILE#KEY`, confined to the
fleet's secrets folders by `kloudctl.model.secrets`, which alone reads them). A test cabinet
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

from kloudctl.errors import InputError
from kloudctl.model import Fleet, secrets
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


def simulated_cabinets(root: Path) -> set[str]:
    """The cabinets a simulator serves (named in the targets file): their declared hosts,
    mail host included, are not this world's."""
    return set(_overrides(root))


def cabinet_target(fleet: Fleet, name: str) -> ApiTarget:
    """The API target of a cabinet: the simulator's when one serves it, else the declared,
    its secret read by the fleet's one resolver (`kloudctl.model.secrets`)."""
    root = fleet.root
    cabinet = fleet.cabinet(name)
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
        secrets.resolve(
            api.token.secret,
            fleet.secret_folders,
            (fleet.loaded(name).source, ("proxmox", "token", "secret")),
        ),
    )
