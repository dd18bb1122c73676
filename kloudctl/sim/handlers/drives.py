"""Drive and NIC lines of a guest's config, stored as PVE stores them, not as sent.

PVE parses every drive and NIC value against its property-string format and writes it back
with `print_drive` / `print_net` (PVE::JSONSchema::print_property_string): the default key
first without its name (`local-lvm:vm-100-disk-0`, `virtio=BC:24:11:..`), then every other
key in sorted order, aliases resolved (`volume=` is `file`, `bps_rd_length` is
`bps_rd_max_length`), booleans as 1/0 and `size` as PVE's format_size prints it (`32G`).
The formats come from the API schema (the `PUT .../config` method's `scsi[n]`, `net[n]`,
...), so the keys known are exactly PVE's.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from kloudctl.sim.errors import bad_request
from kloudctl.sim.schema import load_schema
from kloudctl.sim.validate import FormatError, parse_property_string

_CONFIG = ("PUT", "/nodes/{node}/qemu/{vmid}/config")
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)$")


@cache
def _format(key: str) -> dict[str, Any]:
    """The property-string format of one config key (`scsi3` → the schema's `scsi[n]`)."""
    props = load_schema().methods[_CONFIG].properties
    m = re.match(r"^([a-z]+)(\d+)$", key)
    schema = props.get(key) or (props.get(f"{m.group(1)}[n]") if m else None)
    fmt = (schema or {}).get("format")
    if not isinstance(fmt, dict):
        raise LookupError(f"config key '{key}' has no property-string format in the schema")
    return fmt


def size_bytes(text: str) -> int:
    """A DiskSize (`32G`, `4194304`, `1.5T`) in bytes, as PVE::JSONSchema::parse_size."""
    m = _SIZE.match(text.strip())
    if not m:
        raise FormatError(f"unable to parse size '{text}'")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def format_size(size: int) -> str:
    """Bytes as PVE::JSONSchema::format_size prints them: the largest exact unit."""
    for unit in ("T", "G", "M", "K"):
        if size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)


def _value(key: str, value: Any) -> str:
    if key == "size":
        return format_size(size_bytes(str(value)))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def print_property_string(data: dict[str, Any], fmt: dict[str, Any]) -> str:
    """`data` as PVE writes it: the default key's value first, then `key=value`, sorted.

    A key that another key names as its `keyAlias` (a NIC's model) is written combined with
    the aliased value (`virtio=BC:24:11:..`)."""
    default_key = next((k for k, s in fmt.items() if s.get("default_key")), None)
    combined = {s["keyAlias"]: s["alias"] for s in fmt.values() if "keyAlias" in s}
    parts: list[str] = []
    done: set[str] = set()
    for key in [default_key, *sorted(data)] if default_key else sorted(data):
        if key is None or key in done or data.get(key) is None:
            continue
        done.add(key)
        value = _value(key, data[key])
        partner = combined.get(key)
        if partner and data.get(partner) is not None:
            parts.append(f"{value}={_value(partner, data[partner])}")
            done.add(partner)
        elif key == default_key:
            parts.append(value)
        else:
            parts.append(f"{key}={value}")
    return ",".join(parts)


def parse(key: str, value: str) -> dict[str, Any]:
    """A drive or NIC value as PVE's parse_drive / parse_net sees it (aliases resolved)."""
    try:
        data = parse_property_string(value, _format(key), key)
    except FormatError as exc:
        raise bad_request(key, str(exc).strip()) from None
    if "size" in data:
        data["size"] = size_bytes(str(data["size"]))
    return data


def canonical(key: str, data: dict[str, Any]) -> str:
    """The line PVE stores for a parsed drive or NIC."""
    return print_property_string(data, _format(key))
