"""Value types of the fleet model, each with the message a person needs when it is wrong.

Validators raise `PydanticCustomError("kloud", ...)`; the loader shows that text as is,
after the file, line and field. That error never leaves the model: callers outside a
validator (a command-line option) use `parse_size`, which raises kloudctl's `InputError`.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

from kloudctl.errors import InputError

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
    "P": 1024**5,
    "PB": 1000**5,
    "PIB": 1024**5,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"^(\d+)([smhdw])$")
# The largest size and duration any field accepts: far above any cabinet (a few TiB of
# disk, a year of retention), low enough that arithmetic on them stays exact.
MAX_SIZE = 1024**5  # 1 PiB
MAX_DURATION = 3650 * 86400  # ten years


def fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("kloud", message)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _size(value: Any) -> int:
    """'2GiB' -> bytes, from 1 byte to MAX_SIZE. Bare numbers are refused: the unit is where
    the mistakes are."""
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match and match.group(2).upper() in _SIZE_UNITS and match.group(2):
            # Decimal: exact, and a number of a thousand digits is no float overflow
            size = Decimal(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
            if size > MAX_SIZE:
                raise fail(f"expected a size at most 1PiB, got {_shown(value)}")
            if size < 1:
                raise fail(f"expected a size at least 1B, got {_shown(value)}")
            return int(size)
    raise fail(f"expected a size such as 2GiB, got {_shown(value)}")


def parse_size(value: str, field: str) -> int:
    """A size given outside a cabinet file (e.g. an option): bytes, or `InputError` naming
    `field` with what was expected."""
    try:
        return _size(value)
    except PydanticCustomError as exc:
        raise InputError(f"{field}: {exc.message()}") from None


def _duration(value: Any) -> int:
    """'6h' -> seconds, from 1 second to MAX_DURATION."""
    if isinstance(value, str):
        match = _DURATION_RE.match(value.strip())
        if match:
            digits, unit = match.groups()
            # past 15 digits, over any bound: no need to read (possibly thousands of) them
            too_long = len(digits.lstrip("0")) > 15
            seconds = MAX_DURATION + 1 if too_long else int(digits) * _DURATION_UNITS[unit]
            if seconds > MAX_DURATION:
                raise fail(f"expected a duration at most 3650d, got {_shown(value)}")
            if seconds > 0:
                return seconds
    raise fail(f"expected a duration such as 30m, 6h or 7d, got {_shown(value)}")


def _as_written(value: Any) -> str:
    """A value as the YAML file spells it, where Python's spelling differs."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isnan(value):
        return ".nan"
    if isinstance(value, float) and math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    return _shown(value)


def _number_text(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _in_range(value: float, minimum: float, maximum: float) -> None:
    if value < minimum:
        raise fail(f"expected a number at least {_number_text(minimum)}, got {_shown(value)}")
    if value > maximum:
        raise fail(f"expected a number at most {_number_text(maximum)}, got {_shown(value)}")


def int_between(minimum: int, maximum: int) -> Any:
    """An integer field's validator: in [minimum, maximum]; true/false, fractions and
    .inf/.nan refused (pydantic alone would take `true` for 1)."""

    def check(value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, float) and math.isfinite(value):
            raise fail(f"expected a whole number, got {_shown(value)}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"expected an integer, got {_as_written(value)}")
        _in_range(value, minimum, maximum)
        return value

    return BeforeValidator(check)


def number_between(minimum: float, maximum: float) -> Any:
    """A number field's validator: in [minimum, maximum]; true/false and .inf/.nan refused."""

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(f"expected a number, got {_as_written(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise fail(f"expected a finite number, got {_as_written(value)}")
        _in_range(value, minimum, maximum)
        return float(value)

    return BeforeValidator(check)


def one_of(*choices: int) -> Any:
    """A validator in front of `Literal[...]` of integers: `true` is not 1, `1.0` not 1."""

    def check(value: Any) -> Any:
        if isinstance(value, bool | float):
            listed = " or ".join(str(choice) for choice in choices)
            raise fail(f"expected one of {listed}, got {_as_written(value)}")
        return value

    return BeforeValidator(check)


#: Names of the variants of a choice such as `peers: auto | [names]`: pydantic puts them in
#: an error's location, the loader leaves them out (`replication.peers[0]`, not
#: `replication.peers.<list>[0]`). Angle brackets: never a key of a declaration.
AUTO_TAG, LIST_TAG = "<auto>", "<list>"
VARIANT_TAGS = frozenset({AUTO_TAG, LIST_TAG})


@dataclass(frozen=True)
class Unique:
    """Marks a list that is a set: its items (or their field `key`) may not repeat.
    `what` names one item in the message."""

    what: str
    key: str | None = None


def format_size(n: int | float) -> str:
    """512B, 2GiB, 1.5MiB: a size written the way cabinet files and options take it, in
    the largest unit that keeps it at or above 1 (one decimal unless whole)."""
    if n < 1024:
        return f"{int(n)}B"
    value, unit = n / 1024, "KiB"
    for larger in ("MiB", "GiB", "TiB"):
        if round(value, 1) < 1024:  # 1023.99KiB shows as 1.0MiB, not as 1024.0KiB
            break
        value, unit = value / 1024, larger
    return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"


def format_duration(seconds: int | float, *, exact: bool = False) -> str:
    """A duration as people read it: 45s, 4h10m, 2d3h (the largest unit and the next one,
    seconds only under a minute), for a measured time such as a replication lag.

    `exact=True`: in the largest one unit that holds it whole (90m, 36h, 1d), the way a
    cabinet file declares it, for echoing a declared RPO or interval."""
    s = int(seconds)
    if exact:
        for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
            if s >= factor and s % factor == 0:
                return f"{s // factor}{unit}"
        return f"{s}s"
    if s < 60:
        return f"{s}s"
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes = s // 60
    parts = [
        f"{days}d" if days else "",
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes and not days else "",
    ]
    return "".join(parts) or "0s"


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
        "(env:KLOUDCTL_SECRET_NAME and file:secrets/PATH work too); inline secret values "
        "are not allowed in cabinet files"
    )


@dataclass(frozen=True)
class SecretMarker:
    """Marks a field holding a secret reference: the fleet checks where each one leads
    (`kloudctl.model.secrets`), with the code that later reads it."""


_SECRET_REF_RE = re.compile(r"(vault:[\w./-]+#\w+|env:[A-Z_][A-Z0-9_]*|file:[\w./-]+)")

Size = Annotated[int, BeforeValidator(_size)]
Duration = Annotated[int, BeforeValidator(_duration)]
Name = Annotated[
    str,
    _pattern(r"[a-z][a-z0-9-]{0,30}[a-z0-9]", "brieux-council", "a lower-case name"),
]
Hostname = Annotated[str, _pattern(r"[a-z][a-z0-9-]{0,61}[a-z0-9]", "web", "a host name")]
#: A node's bridge as Proxmox names it in a NIC (`pve-bridge-id`: a Linux interface name,
#: at most 15 characters).
Bridge = Annotated[str, _pattern(r"[A-Za-z][A-Za-z0-9_.-]{0,14}", "vmbr0", "a bridge name")]
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
SecretRef = Annotated[str, BeforeValidator(_secret_ref), SecretMarker()]
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


#: The dearest unit price a price list takes (euros per vCPU-day, GiB-day, mailbox-month).
MAX_PRICE = Decimal(10_000)


def _money(value: Any) -> Decimal:
    """A price in euros: a number or a string such as '0.05', kept as a Decimal (never a
    float), at most 4 decimals (a GiB-day may cost a fraction of a cent)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise fail(f"expected a price such as 0.05, got {_as_written(value)}")
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        raise fail(f"expected a price such as 0.05, got {_shown(value)}") from None
    if not price.is_finite():
        raise fail(f"expected a finite price, got {_as_written(value)}")
    if price < 0 or price > MAX_PRICE:
        raise fail(f"expected a price from 0 to {MAX_PRICE}, got {_shown(value)}")
    if -price.as_tuple().exponent > 4:  # type: ignore[operator]
        raise fail(f"expected at most 4 decimals, got {_shown(value)}")
    return price


def _timestamp(value: Any) -> datetime:
    """A moment with its time zone: 2026-11-01T08:00:00+01:00 (YAML makes it a datetime)."""
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    if not isinstance(moment, datetime):
        raise fail(
            f"expected a date and time such as 2026-11-01T08:00:00+01:00, got {_shown(value)}"
        )
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise fail(f"expected a time zone (such as +01:00 or Z) in {moment.isoformat()}")
    return moment


Money = Annotated[Decimal, BeforeValidator(_money)]
Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]


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
