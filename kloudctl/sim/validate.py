"""Parameter validation driven by the schema, with Proxmox's own messages.

Types, required/optional, enums, ranges, lengths, patterns, `requires`, `[n]` indexed
properties, named formats (`pve-vmid`, `pve-node`, `pve-storage-id`, `pve-configid`, ...)
and property strings: formats given inline as an object in the schema (`net[n]`, `scsi[n]`)
and named property-string formats whose keys the schema spells in `typetext`
(`ipconfig[n]` = `[gw=<GatewayIPv4>] [,ip=<IPv4Format/CIDR>] ...`).

`check_returns` validates an answer against a method's `returns` (the conformance test).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from functools import cache
from typing import Any
from urllib.parse import unquote

from kloudctl.sim.perms import VALID_PRIVS


class ParamError(Exception):
    """400 Parameter verification failed: `errors` maps a parameter to its message.
    Answered by `dispatch`; internal to the simulator, see kloudctl.sim.errors."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("Parameter verification failed.")
        self.errors = errors


NOT_IN_SCHEMA = (
    "property is not defined in schema and the schema does not allow additional properties"
)


class FormatError(ValueError):
    """A value does not match a named format; caught in this module and turned into a
    `ParamError` entry (internal to the simulator)."""


# --- named formats --------------------------------------------------------------------

_ID = re.compile(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$", re.I)
_CONFIGID = re.compile(r"^[a-z][a-z0-9_-]+$", re.I)
_NAME = re.compile(r"^[A-Za-z0-9.\-_]+$")
_NODE = re.compile(r"^(?=.{1,63}$)[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$")
_DNS = re.compile(
    r"^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)*$"
)
_USER = re.compile(r"^[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+$")
_REALM = re.compile(r"^[A-Za-z][A-Za-z0-9.\-_]+$")
_TOKENNAME = re.compile(r"^[A-Za-z][A-Za-z0-9.\-_]+$")
_MAC = re.compile(r"^[a-f0-9]{2}(:[a-f0-9]{2}){5}$", re.I)
_IFACE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.\-]{1,20}$")
_VOLID = re.compile(r"^([a-z][a-z0-9\-_.]*[a-z0-9]):(.+)$", re.I)
_DISKSIZE = re.compile(r"^\+?(\d+(\.\d+)?)([KMGT])?$")
_TAG = re.compile(r"^[a-z0-9_][a-z0-9_\-+.]*$", re.I)
_EMAIL = re.compile(r"^[^\s@]+@[^\s@]+$")
_SDN_ID = re.compile(r"^[a-z][a-z0-9]*[a-z0-9]$", re.I)


def _ip(version: int | None = None) -> Callable[[str], None]:
    def check(v: str) -> None:
        try:
            addr = ipaddress.ip_address(v)
        except ValueError:
            kind = f"IPv{version}" if version else "IP"
            raise FormatError(f"value does not look like a valid {kind} address") from None
        if version and addr.version != version:
            raise FormatError(f"value does not look like a valid IPv{version} address")

    return check


def _cidr(version: int | None = None) -> Callable[[str], None]:
    def check(v: str) -> None:
        if "/" not in v:
            raise FormatError("value does not look like a valid CIDR network")
        try:
            net = ipaddress.ip_interface(v)
        except ValueError:
            raise FormatError("value does not look like a valid CIDR network") from None
        if version and net.version != version:
            raise FormatError(f"value does not look like a valid IPv{version} CIDR network")

    return check


def _ip_or_cidr(v: str) -> None:
    try:
        ipaddress.ip_interface(v)
    except ValueError:
        raise FormatError("value does not look like a valid IP address or CIDR network") from None


def _regex(rx: re.Pattern[str], what: str) -> Callable[[str], None]:
    def check(v: str) -> None:
        if not rx.match(v):
            raise FormatError(f"invalid format - value does not look like a valid {what}")

    return check


def _list(item: Callable[[str], None], sep: str = r"[,;\s]+") -> Callable[[str], None]:
    def check(v: str) -> None:
        for part in re.split(sep, v.strip()):
            if part:
                item(part)

    return check


def _vmid(v: str) -> None:
    if not re.match(r"^\d+$", v) or not 100 <= int(v) <= 999_999_999:
        raise FormatError(f"value '{v}' does not look like a valid VM ID")


def _volume(v: str) -> None:
    if not _VOLID.match(v):
        raise FormatError(f"unable to parse volume ID '{v}'")


def _volume_or_path(v: str) -> None:
    if v in ("none", "cdrom") or v.startswith("/"):
        return
    _volume(v)


def _disksize(v: str) -> None:
    if not _DISKSIZE.match(v):
        raise FormatError(f"unable to parse size '{v}'")


def _priv(v: str) -> None:
    if v not in VALID_PRIVS:
        raise FormatError(f"invalid privilege '{v}'")


def _urlencoded(v: str) -> None:
    try:
        unquote(v, errors="strict")
    except UnicodeDecodeError:
        raise FormatError("invalid urlencoded string") from None


def _tag(v: str) -> None:
    if not _TAG.match(v):
        raise FormatError(f"invalid tag '{v}'")


NAMED_FORMATS: dict[str, Callable[[str], None]] = {
    "pve-node": _regex(_NODE, "node name"),
    "pve-node-list": _list(_regex(_NODE, "node name")),
    "pve-vmid": _vmid,
    "pve-vmid-list": _list(_vmid),
    "pve-storage-id": _regex(_ID, "storage ID"),
    "pve-storage-id-list": _list(_regex(_ID, "storage ID")),
    "pve-configid": _regex(_CONFIGID, "configuration ID"),
    "pve-configid-list": _list(_regex(_CONFIGID, "configuration ID")),
    "pve-poolid": _regex(_NAME, "pool name"),
    "pve-groupid": _regex(_NAME, "group name"),
    "pve-roleid": _regex(_NAME, "role name"),
    "pve-userid": _regex(_USER, "user ID"),
    "pve-realm": _regex(_REALM, "realm"),
    "pve-tokenid": _regex(_TOKENNAME, "token ID"),
    "pve-priv-list": _list(_priv),
    "pve-groupid-list": _list(_regex(_NAME, "group name")),
    "pve-roleid-list": _list(_regex(_NAME, "role name")),
    "pve-userid-list": _list(_regex(_USER, "user ID")),
    "pve-tokenid-list": _list(
        _regex(
            re.compile(r"^[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+![A-Za-z][A-Za-z0-9.\-_]+$"), "token ID"
        )
    ),
    "ipv4mask": _regex(re.compile(r"^((\d{1,3}\.){3}\d{1,3}|\d{1,2})$"), "netmask"),
    "pve-vlan-id-or-range-list": _list(_regex(re.compile(r"^\d+(-\d+)?$"), "VLAN ID or range")),
    "pve-iface": _regex(_IFACE, "interface name"),
    "pve-iface-list": _list(_regex(_IFACE, "interface name")),
    "pve-bridge-id": _regex(_IFACE, "bridge name"),
    "pve-sdn-zone-id": _regex(_SDN_ID, "zone ID"),
    "pve-sdn-vnet-id": _regex(_SDN_ID, "vnet ID"),
    "pve-sdn-subnet-id": lambda v: _cidr()(v if "/" in v else "/".join(v.split("-")[1:3])),
    "ip": _ip(),
    "ipv4": _ip(4),
    "ipv6": _ip(6),
    "address": _ip(),
    "ip-list": _list(_ip()),
    "address-list": _list(_ip()),
    "CIDR": _cidr(),
    "CIDRv4": _cidr(4),
    "CIDRv6": _cidr(6),
    "IPorCIDR": _ip_or_cidr,
    "mac-addr": _regex(_MAC, "MAC address"),
    "dns-name": _regex(_DNS, "DNS name"),
    "urlencoded": _urlencoded,
    "pve-tag-list": _list(_tag),
    "disk-size": _disksize,
    "pve-volume-id": _volume,
    "pve-volume-id-or-qm-path": _volume_or_path,
    "pve-volume-id-or-absolute-path": _volume_or_path,
    "email": _regex(_EMAIL, "email address"),
    "email-opt": lambda v: None if not v else _regex(_EMAIL, "email address")(v),
    "email-or-username": lambda v: None,
    "pve-storage-content-list": _list(
        _regex(
            re.compile(r"^(images|rootdir|vztmpl|iso|backup|snippets|import|none)$"), "content type"
        )
    ),
}


def _int_value(v: str) -> None:
    _int(v, {})


# Values of property-string keys that only `typetext` names (e.g. ipconfig's `ip=`).
_TYPETEXT_VALUES: dict[str, Callable[[str], None]] = {
    "IPv4Format/CIDR": lambda v: None if v == "dhcp" else _cidr(4)(v),
    "IPv6Format/CIDR": lambda v: None if v in ("dhcp", "auto") else _cidr(6)(v),
    "GatewayIPv4": _ip(4),
    "GatewayIPv6": _ip(6),
    "volume": _volume_or_path,
    "integer": lambda v: _int_value(v),
}

_TYPETEXT_KEY = re.compile(r"\[?,?\[?([A-Za-z][\w\-]*)=\]?<([^>]*)>")


@cache
def typetext_format(typetext: str) -> tuple[str | None, dict[str, str]] | None:
    """Keys of a named property-string format, as `typetext` spells them."""
    keys = {m.group(1): m.group(2) for m in _TYPETEXT_KEY.finditer(typetext)}
    if not keys:
        return None
    default = re.match(r"^\[*([A-Za-z][\w\-]*)=\]", typetext.strip())
    return (default.group(1) if default else None), keys


@cache
def perl_regex(pattern: str) -> re.Pattern[str]:
    """The schema's patterns are Perl's stringified regexes: `(?^i:...)` → `(?i:...)`."""
    return re.compile(
        re.sub(r"\(\?\^([a-z]*):", lambda m: f"(?{m.group(1)}:" if m.group(1) else "(?:", pattern)
    )


# --- scalar checks ----------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _int(v: Any, schema: dict[str, Any]) -> int:
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, int):
        n = v
    elif isinstance(v, str) and re.match(r"^[+-]?\d+$", v.strip()):
        n = int(v)
    else:
        raise FormatError(f"type check ('integer') failed - got '{v}'")
    _range(n, schema)
    return n


def _range(n: float, schema: dict[str, Any]) -> None:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None and n < float(lo):
        raise FormatError(f"value must have a minimum value of {lo}")
    if hi is not None and n > float(hi):
        raise FormatError(f"value must have a maximum value of {hi}")


def coerce(value: Any, schema: dict[str, Any], name: str = "") -> Any:
    """Check one value against a (sub)schema; return it in its typed form."""
    kind = schema.get("type", "string")
    if isinstance(value, list) and kind != "array":
        if len(value) == 1:
            value = value[0]
        elif str(schema.get("format", "")).endswith("-list"):
            # A repeated parameter (`content=images&content=iso`): PVE's HTTP server joins
            # the values with NUL, which PVE::Tools::split_list splits like commas.
            value = ",".join(str(v) for v in value)
        else:
            raise FormatError("type check ('string') failed - got ARRAY")
    if kind == "boolean":
        s = str(value).lower() if not isinstance(value, bool) else ("1" if value else "0")
        if s in _TRUE:
            return 1
        if s in _FALSE:
            return 0
        raise FormatError(f"type check ('boolean') failed - got '{value}'")
    if kind == "integer":
        return _int(value, schema)
    if kind == "number":
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise FormatError(f"type check ('number') failed - got '{value}'") from None
        _range(f, schema)
        return f
    if kind == "array":
        items = value if isinstance(value, list) else [value]
        return [coerce(v, schema.get("items") or {}, name) for v in items]
    if kind == "object":
        return value
    s = value if isinstance(value, str) else str(value)
    if "enum" in schema and s not in schema["enum"]:
        raise FormatError(
            f"value '{s}' does not have a value in the enumeration '{', '.join(schema['enum'])}'"
        )
    if "maxLength" in schema and len(s) > int(schema["maxLength"]):
        raise FormatError(f"value may only be {schema['maxLength']} characters long")
    if "minLength" in schema and len(s) < int(schema["minLength"]):
        raise FormatError(f"value must be at least {schema['minLength']} characters long")
    if "pattern" in schema and not perl_regex(schema["pattern"]).fullmatch(s):
        raise FormatError("value does not match the regex pattern")
    fmt = schema.get("format")
    if isinstance(fmt, dict):
        parse_property_string(s, fmt, name)
    elif isinstance(fmt, str):
        check = NAMED_FORMATS.get(fmt)
        if check is not None:
            check(s)
        elif schema.get("typetext"):
            parsed = typetext_format(schema["typetext"])
            if parsed is not None:
                _typetext_property_string(s, parsed, name)
    return s


def parse_property_string(text: str, fmt: dict[str, Any], name: str = "") -> dict[str, Any]:
    """Parse `k=v,k2=v2` (with default key, aliases, keyAlias) as PVE::JSONSchema does."""
    default_key = next(
        (k for k, v in fmt.items() if isinstance(v, dict) and v.get("default_key")), None
    )
    result: dict[str, Any] = {}
    problems: list[str] = []
    for part in _split(text):
        if "=" in part:
            key, val = part.split("=", 1)
        elif default_key is not None and default_key not in result:
            key, val = default_key, part
        else:
            raise FormatError(
                "invalid format - value without key, but schema does not define a default key\n"
            )
        sub = fmt.get(key)
        if sub is None:
            raise FormatError(f"invalid format - property string: unknown key '{key}'\n")
        if "alias" in sub:
            if "keyAlias" in sub:
                result[sub["keyAlias"]] = key
            key = sub["alias"]
            sub = fmt[key]
        if key in result and "keyAlias" not in sub:
            raise FormatError(
                f"invalid format - duplicate key in comma-separated list property: {key}\n"
            )
        try:
            result[key] = coerce(val, sub, f"{name}.{key}")
        except FormatError as exc:
            problems.append(f"{name}.{key}: {exc}")
    for key, sub in fmt.items():
        if (
            isinstance(sub, dict)
            and "alias" not in sub
            and not sub.get("optional")
            and key not in result
        ):
            if sub.get("default_key") and "keyAlias" in sub:
                continue
            if key not in result and not any(
                isinstance(s, dict) and s.get("alias") == key for s in fmt.values()
            ):
                problems.append(f"{name}.{key}: property is missing and it is not optional")
    if problems:
        raise FormatError("invalid format - format error\n" + "\n".join(problems) + "\n")
    return result


def _typetext_property_string(
    text: str, parsed: tuple[str | None, dict[str, str]], name: str
) -> dict[str, str]:
    default_key, keys = parsed
    result: dict[str, str] = {}
    problems: list[str] = []
    for part in _split(text):
        if "=" in part:
            key, val = part.split("=", 1)
        elif default_key and default_key not in result:
            key, val = default_key, part
        else:
            raise FormatError(
                "invalid format - value without key, but schema does not define a default key\n"
            )
        if key not in keys:
            raise FormatError(f"invalid format - property string: unknown key '{key}'\n")
        check = _TYPETEXT_VALUES.get(keys[key])
        if check:
            try:
                check(val)
            except FormatError as exc:
                problems.append(f"{name}.{key}: {exc}")
        result[key] = val
    if problems:
        raise FormatError("invalid format - format error\n" + "\n".join(problems) + "\n")
    return result


def _split(text: str) -> list[str]:
    return [p for p in text.split(",") if p != ""]


# --- whole parameter sets -----------------------------------------------------------------


def _schema_for(name: str, properties: dict[str, Any]) -> dict[str, Any] | None:
    if name in properties:
        return properties[name]
    m = re.match(r"^([a-z][a-z_]*?)(\d+)$", name)
    if m and f"{m.group(1)}[n]" in properties:
        return properties[f"{m.group(1)}[n]"]
    return None


def validate_params(parameters: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """Validate request parameters; raise ParamError with every problem found."""
    properties: dict[str, Any] = parameters.get("properties") or {}
    additional = parameters.get("additionalProperties", 1)
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    for name, value in raw.items():
        schema = _schema_for(name, properties)
        if schema is None:
            if not additional:
                errors[name] = NOT_IN_SCHEMA
            else:
                out[name] = value
            continue
        try:
            out[name] = coerce(value, schema, name)
        except FormatError as exc:
            errors[name] = str(exc)
    for name, schema in properties.items():
        if name.endswith("[n]"):
            continue
        if not schema.get("optional") and name not in raw:
            errors[name] = "property is missing and it is not optional"
        req = schema.get("requires")
        if req and name in raw and req not in raw:
            errors[req] = f"parameter '{req}' is required"
    if errors:
        raise ParamError(errors)
    return out


# --- returns (conformance) ----------------------------------------------------------------


def check_returns(schema: dict[str, Any], value: Any, where: str = "data") -> list[str]:
    """Problems of an answer against a `returns` schema (empty list: conforms)."""
    if not schema:
        return []
    kind = schema.get("type")
    if value is None:
        if kind in (None, "null") or schema.get("optional"):
            return []
        return [f"{where}: null where {kind} expected"]
    problems: list[str] = []
    if kind == "null":
        return [f"{where}: expected null, got {type(value).__name__}"]
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: expected object, got {type(value).__name__}"]
        props = schema.get("properties")
        if props:
            for key, sub in props.items():
                if key in value:
                    problems += check_returns(sub, value[key], f"{where}.{key}")
                elif not sub.get("optional"):
                    problems.append(f"{where}.{key}: missing (not optional)")
            if schema.get("additionalProperties") in (0, False):
                for key in value:
                    if key not in props:
                        problems.append(f"{where}.{key}: not in schema")
        return problems
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: expected array, got {type(value).__name__}"]
        items = schema.get("items") or {}
        for i, item in enumerate(value):
            problems += check_returns(items, item, f"{where}[{i}]")
        return problems
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{where}: expected integer, got {value!r}"]
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return [f"{where}: expected number, got {value!r}"]
    elif kind == "boolean":
        if value not in (0, 1, True, False):
            return [f"{where}: expected boolean, got {value!r}"]
    elif kind == "string":
        if not isinstance(value, str):
            return [f"{where}: expected string, got {value!r}"]
        if "enum" in schema and value not in schema["enum"]:
            return [f"{where}: {value!r} not in enum {schema['enum']}"]
    minimum = schema.get("minimum")
    if kind in ("integer", "number") and minimum is not None and value < float(minimum):
        problems.append(f"{where}: {value} below minimum {minimum}")
    return problems
