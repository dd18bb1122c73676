"""Reading what external tools answer (podman, restic, Pulumi, the Proxmox API...).

A tool that answers something unexpected is an `ExternalError` naming the tool, what was
expected and what came back; never a `KeyError` or `TypeError` reaching the user. Every read
of another program's JSON goes through `parse_json` and `dig`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from kloudctl.errors import ExternalError

#: How much of an unexpected answer a message quotes (enough to recognise it).
QUOTE_CHARS = 200

Path = tuple[str | int, ...]


class UnexpectedAnswer(ExternalError):
    """A tool answered, but not in the shape kloudctl knows."""

    def __init__(self, tool: str, expected: str, got: object) -> None:
        self.tool = tool
        self.expected = expected
        self.got = quote(got)
        super().__init__(f"{tool} answered unexpectedly: expected {expected}; got {self.got}")


def quote(value: object) -> str:
    """A short, one-line rendering of what came back."""
    if isinstance(value, str | bytes):
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        if not text.strip():
            return "nothing"
    else:
        try:
            text = json.dumps(value, sort_keys=True, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    text = " ".join(text.split())
    return repr(text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "...")


def parse_json(tool: str, text: str | bytes) -> Any:
    """`text` as JSON, or UnexpectedAnswer naming `tool`."""
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        raise UnexpectedAnswer(tool, "JSON", text) from None


def _where(path: Path) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else f".{step}"
    return out.lstrip(".") or "the answer"


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def dig(
    tool: str,
    data: Any,
    *path: str | int,
    kind: type | tuple[type, ...] = object,
    default: Any = ...,
) -> Any:
    """`data[path[0]][path[1]]...`, checked: each step must exist (or `default` is returned)
    and the value must be of `kind`; otherwise UnexpectedAnswer says where and what came back.
    """
    value = data
    for depth, step in enumerate(path):
        container_ok = isinstance(value, dict) if isinstance(step, str) else isinstance(value, list)
        present = container_ok and (
            step in value if isinstance(step, str) else -len(value) <= step < len(value)
        )
        if not present:
            if default is not ...:
                return default
            expected = f"{_where(path[: depth + 1])} in its answer"
            raise UnexpectedAnswer(tool, expected, data)
        value = value[step]
    if kind is not object:
        bad_bool = isinstance(value, bool) and bool not in (
            kind if isinstance(kind, tuple) else (kind,)
        )
        if bad_bool or not isinstance(value, kind):
            if value is None and default is not ...:
                return default
            raise UnexpectedAnswer(tool, f"{_where(path)} to be {_kind_name(kind)}", data)
    return value


def number(tool: str, data: Any, *path: str | int, default: Any = ...) -> Any:
    """`dig` for a number: an integer or a float, finite, as a float (never true or false).

    JSON's integers have no bound and Python's `float()` of a huge one overflows, so a huge
    or infinite value is an unexpected answer too, said where `dig` would say it.
    """
    value = dig(tool, data, *path, default=default)
    if value is default or (value is None and default is not ...):
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnexpectedAnswer(tool, f"{_where(path)} to be a number", data)
    try:
        result = float(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        raise UnexpectedAnswer(tool, f"{_where(path)} to be a finite number", data)
    return result
