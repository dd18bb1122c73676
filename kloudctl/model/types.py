"""Value types of the fleet model, each with the message a person needs when it is wrong.

Validators raise `PydanticCustomError("kloud", ...)`; the loader shows that text as is,
after the file, line and field.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "KB": 1000,
    "KIB": 1024,
    "M": 1024**2,
    "MB": 1000**2,
    "MIB": 1024**2,
    "G": 1024**3,
    "GB": 1000**3,
    "GIB": 1024**3,
    "T": 1024**4,
    "TB": 1000**4,
    "TIB": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"^(\d+)([smhdw])$")


def fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("kloud", message)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_size(value: Any) -> int:
    """'2GiB' -> bytes. Bare numbers are refused: the unit is where the mistakes are."""
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match and match.group(2).upper() in _SIZE_UNITS and match.group(2):
            return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])
    raise fail(f"expected a size such as 2GiB, got {_shown(value)}")


def parse_duration(value: Any) -> int:
    """'6h' -> seconds."""
    if isinstance(value, str):
        match = _DURATION_RE.match(value.strip())
        if match and int(match.group(1)) > 0:
            return int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise fail(f"expected a duration such as 30m, 6h or 7d, got {_shown(value)}")


def format_size(n: int | float) -> str:
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            value = n / factor
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{int(n)}B"


def format_duration(seconds: int | float) -> str:
    seconds = int(seconds)
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= factor and seconds % factor == 0:
            return f"{seconds // factor}{unit}"
    return f"{seconds}s"


def _pattern(regex: str, example: str, what: str) -> Any:
    compiled = re.compile(regex)

    def check(value: Any) -> str:
        if isinstance(value, str) and compiled.fullmatch(value):
            return value
        raise fail(f"expected {what} such as {example}, got {_shown(value)}")

    return BeforeValidator(check)


def _ip(kind: Any, example: str, what: str) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, str):
            try:
                return kind(value)
            except ValueError:
                pass
        raise fail(f"expected {what} such as {example}, got {_shown(value)}")

    return BeforeValidator(check)


def _secret_ref(value: Any) -> str:
    # Only references may appear in cabinet files. The offending value is never echoed:
    # it may be a real secret pasted by mistake.
    if isinstance(value, str) and _SECRET_REF_RE.fullmatch(value):
        return value
    raise fail(
        "expected a secret reference such as vault:secrets/brieux.vault.yml#proxmox_token "
        "(env:NAME and file:PATH work too); inline secret values are not allowed in "
        "cabinet files"
    )


_SECRET_REF_RE = re.compile(r"(vault:[\w./-]+#\w+|env:[A-Z_][A-Z0-9_]*|file:[\w./-]+)")

Size = Annotated[int, BeforeValidator(parse_size)]
Duration = Annotated[int, BeforeValidator(parse_duration)]
Name = Annotated[
    str,
    _pattern(r"[a-z][a-z0-9-]{0,30}[a-z0-9]", "brieux-council", "a lower-case name"),
]
Hostname = Annotated[str, _pattern(r"[a-z][a-z0-9-]{0,61}[a-z0-9]", "web", "a host name")]
Insee = Annotated[str, _pattern(r"(\d{5}|2[AB]\d{3})", "'61063'", "a 5-character INSEE code")]
Email = Annotated[
    str, _pattern(r"[^@\s]+@[a-z0-9-]+(\.[a-z0-9-]+)+", "mairie@brieux.fr", "an e-mail address")
]
Domain = Annotated[
    str,
    _pattern(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", "brieux.fr", "a domain name"),
]
Fingerprint = Annotated[
    str,
    _pattern(
        r"([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}",
        "AB:12:...(32 bytes)",
        "a SHA-256 TLS fingerprint",
    ),
    AfterValidator(str.upper),
]
PveUser = Annotated[
    str, _pattern(r"[^\s:/@!]+@(pve|pam|[a-z][a-z0-9-]*)", "kloudctl@pve", "a Proxmox user id")
]
HttpsUrl = Annotated[
    str, _pattern(r"https://[A-Za-z0-9.\-\[\]:]+(:\d+)?/?", "https://10.0.0.2:8006", "an https URL")
]
SecretRef = Annotated[str, BeforeValidator(_secret_ref)]
IPv4Interface = Annotated[
    ipaddress.IPv4Interface, _ip(ipaddress.IPv4Interface, "10.0.0.2/24", "an IPv4 address/prefix")
]
IPv4Address = Annotated[
    ipaddress.IPv4Address, _ip(ipaddress.IPv4Address, "10.0.0.1", "an IPv4 address")
]


def _network(value: Any) -> ipaddress.IPv4Network:
    if isinstance(value, str):
        try:
            return ipaddress.IPv4Network(value)
        except ValueError as exc:
            if "host bits set" in str(exc):
                raise fail(
                    f"expected a network address, got {_shown(value)} (host bits set)"
                ) from None
    raise fail(f"expected an IPv4 network such as 10.20.0.0/16, got {_shown(value)}")


IPv4Network = Annotated[ipaddress.IPv4Network, BeforeValidator(_network)]
AbsPath = Annotated[str, _pattern(r"/[^\0]*", "/etc", "an absolute path")]


def _auto_or_interface(value: Any) -> Any:
    if value == "auto":
        return value
    if isinstance(value, str):
        try:
            return ipaddress.IPv4Interface(value)
        except ValueError:
            pass
    raise fail(
        f"expected 'auto' or an IPv4 address/prefix such as 10.20.1.10/24, got {_shown(value)}"
    )


AutoOrInterface = Annotated[ipaddress.IPv4Interface | str, BeforeValidator(_auto_or_interface)]
