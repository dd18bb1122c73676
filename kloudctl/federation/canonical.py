"""The one encoding that is signed, hashed and MACed: canonical JSON.

Keys sorted, no spaces, UTF-8. Only strings, integers, booleans, null, lists and objects:
a float has no single spelling across languages, so it is refused rather than signed.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from kloudctl.errors import KloudError


def _check(value: Any, where: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise KloudError(f"cannot sign {where}: key {key!r} is not a string")
            _check(item, f"{where}.{key}")
        return
    raise KloudError(f"cannot sign {where}: {type(value).__name__} has no canonical form")


def encode(value: Any) -> bytes:
    _check(value, "value")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def b64(data: bytes) -> str:
    """URL-safe base64 without padding (invite strings, keys, signatures)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    """The inverse of `b64`; ValueError on anything else."""
    if not isinstance(text, str) or not text.isascii():
        raise ValueError("not base64 text")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
