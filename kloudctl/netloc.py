"""Hosts and ports given on the command line: `[USER@]HOST[:PORT]`, `IP[:PORT]`.

Checked here, once, so a typo is an input error naming the option (exit 2), never a
connection attempt to a host called `brieux.fr:99999` or a crash on a port that is not a
number. IPv6 addresses with a port are written in brackets: `[2001:db8::1]:22`.
"""

from __future__ import annotations

import ipaddress
import re

from kloudctl.errors import InputError

MAX_PORT = 65535
_DIGITS_RE = re.compile(r"[0-9]+")
# A DNS name (labels of letters, digits and inner dashes) or an IPv4 address.
_NAME_RE = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")


def parse_port(text: str, field: str) -> int:
    """A TCP/UDP port, 1 to 65535."""
    significant = text.lstrip("0")  # never int() on thousands of digits
    if (
        not _DIGITS_RE.fullmatch(text)
        or len(significant) > 5
        or not 1 <= int(significant or 0) <= MAX_PORT
    ):
        raise InputError(f"{field}: expected a port from 1 to {MAX_PORT}, got {text!r}")
    return int(significant)


def split_host_port(text: str, field: str) -> tuple[str, int | None]:
    """`HOST`, `HOST:PORT`, `IPV6` or `[IPV6]:PORT` -> (host, port or None)."""
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise InputError(f"{field}: expected [IPV6]:PORT, got {text!r}")
        port = parse_port(rest[1:], field) if rest else None
        _ip(host, field, version=6)
        return host, port
    if text.count(":") > 1:  # a bare IPv6 address, no port
        _ip(text, field, version=6)
        return text, None
    host, colon, port_text = text.partition(":")
    return host, parse_port(port_text, field) if colon else None


def _ip(text: str, field: str, version: int | None = None) -> None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InputError(f"{field}: {text!r} is not an IP address") from None
    if version is not None and address.version != version:
        raise InputError(f"{field}: {text!r} is not an IPv{version} address")


def parse_ip_port(text: str, field: str) -> tuple[str, int | None]:
    """`IP[:PORT]` (`[IPV6]:PORT`): an address, never a name."""
    host, port = split_host_port(text, field)
    _ip(host, field)
    return host, port


def parse_ssh_target(text: str, field: str) -> tuple[str | None, str, int | None]:
    """`[USER@]HOST[:PORT]` -> (user or None, host, port or None)."""
    user, at, rest = text.rpartition("@")
    if at and not _USER_RE.fullmatch(user):
        raise InputError(f"{field}: bad user name {user!r} in {text!r}")
    host, port = split_host_port(rest, field)
    if not host or (":" not in host and not _NAME_RE.fullmatch(host)):
        raise InputError(f"{field}: expected [USER@]HOST[:PORT], got {text!r}")
    return user or None, host, port
