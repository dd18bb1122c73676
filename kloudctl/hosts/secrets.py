"""A small secret store outside git: ``.state/secrets/<name>.json``, mode 0600.

The fleet's cabinet files hold only references (``vault:...``); values made at run time
(the automation tokens kloudctl creates) are kept here, written atomically, never printed.
`proxmox-tokens.json` maps a cabinet to ``{endpoint, fingerprint, token_id, secret}``,
the same shape as the simulator targets file, so `KLOUDCTL_PROXMOX_TARGETS` may point at it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kloudctl import files
from kloudctl.errors import KloudError

TOKENS = "proxmox-tokens"


def store_dir(root: Path) -> Path:
    return Path(root) / ".state" / "secrets"


def read(root: Path, name: str) -> dict[str, Any]:
    path = store_dir(root) / f"{name}.json"
    if not path.exists():
        return {}
    if path.stat().st_mode & 0o077:
        raise KloudError(f"{path} is readable by others: chmod 600 it (it holds secrets)")
    try:
        return dict(json.loads(path.read_text()))
    except ValueError:
        raise KloudError(f"{path}: not a JSON secret store") from None


def write(root: Path, name: str, data: dict[str, Any]) -> Path:
    folder = store_dir(root)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    return files.write_atomic(
        folder / f"{name}.json",
        json.dumps(data, indent=2, sort_keys=True),
        mode=0o600,
        what="secret store",
    )


def reference(root: Path, name: str, key: str) -> str:
    """How a stored secret is referred to in output: where it is, never what it is."""
    return f"{store_dir(root) / f'{name}.json'}#{key}"
