"""Persistence: each cabinet's state is one JSON file, replaced atomically (write, fsync,
rename, fsync the folder), so a crash leaves the old or the new state, never a torn one.
Ephemeral cabinets simply have no state file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a file so readers see the old or the new content, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def save_state(path: Path, state: dict[str, Any]) -> None:
    clean = dict(state)
    clean["access"] = {k: v for k, v in state["access"].items() if not k.startswith("_")}
    write_atomic(path, json.dumps(clean, sort_keys=True).encode())


def load_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data
