"""Persistence: each cabinet's state is one JSON file, replaced atomically (write, fsync,
rename, fsync the folder), so a crash leaves the old or the new state, never a torn one.
Ephemeral cabinets simply have no state file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kloudctl import files
from kloudctl.errors import InputError


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a file of the simulator's own state folder (made if missing), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(path, data, mode=mode, what="simulator state file")


def save_state(path: Path, state: dict[str, Any]) -> None:
    clean = dict(state)
    clean["access"] = {k: v for k, v in state["access"].items() if not k.startswith("_")}
    write_atomic(path, json.dumps(clean, sort_keys=True).encode())


def load_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{path}: not a readable simulator state ({exc}): move it away to start afresh"
        ) from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a simulator state: move it away to start afresh")
    return data
