"""The federation's WireGuard mesh, made from the registry a member holds.

One interface per member (`kfed0` by default): its private key, its mesh address, and one
peer per *other active* member with `AllowedIPs` = that member's mesh address /32 only, its
first endpoint and a keepalive. `wg syncconf` applies it: a peer absent from the new
configuration (a revoked member) is removed with its key, which ends its sessions at once.
The same module renders the firewall (nftables) that lets mesh peers reach only the
federation's services, and reads the mesh's health (`wg show IF latest-handshakes`, a TCP
round trip).

Kernel WireGuard or wireguard-go make no difference here: `wg` configures both alike.
"""

from __future__ import annotations

import base64
import errno
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization

from kloudctl.answers import UnexpectedAnswer
from kloudctl.errors import ExternalError, InputError, ToolMissing
from kloudctl.federation.keys import MemberKeys
from kloudctl.federation.registry import Member, Registry

DEFAULT_INTERFACE = "kfed0"
KEEPALIVE = 25
#: What mesh peers may reach on a member, TCP: the replication endpoint (rest-server), the
#: federation's endpoint (registry sync, join) and the management API (Proxmox's).
SERVICE_PORTS = {"replication": 8000, "federation": 8449, "management": 8006}
#: The TCP port a health probe measures the round trip to (a refusal answers as fast).
PROBE_PORT = SERVICE_PORTS["federation"]
NFT_TABLE = "kloudctl_mesh"
TIMEOUT = 20.0


def checked_interface(name: str) -> str:
    """A Linux interface name (1 to 15 characters, no space or slash); InputError otherwise."""
    if not re.fullmatch(r"[A-Za-z0-9_.=+-]{1,15}", name):
        raise InputError(
            f"--interface: {name!r} is not an interface name (1 to 15 letters, digits, or"
            " _ . = + -)"
        )
    return name


@dataclass(frozen=True)
class Peer:
    commune: str
    public_key: str
    mesh_address: str
    endpoint: str | None


def peers_of(registry: Registry, commune: str) -> list[Peer]:
    """The peers `commune`'s interface must have: every other active member."""
    return [
        Peer(m.commune, m.wireguard_key, m.mesh_address, m.endpoints[0] if m.endpoints else None)
        for c, m in sorted(registry.active().items())
        if c != commune
    ]


def _listen_port(member: Member) -> int:
    for endpoint in member.endpoints:
        port = endpoint.rpartition(":")[2]
        if port.isdigit():
            return int(port)
    return 51820


def wireguard_private(keys: MemberKeys) -> str:
    """The member's WireGuard private key in `wg`'s form (base64 of the raw 32 bytes)."""
    raw = keys.wireguard.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode()


def render(registry: Registry, commune: str, private_key: str) -> str:
    """The interface's configuration in `wg setconf`/`syncconf` form (holds the private key:
    it is piped to `wg`, never written to a log)."""
    me = registry.members[commune]
    lines = ["[Interface]", f"PrivateKey = {private_key}", f"ListenPort = {_listen_port(me)}"]
    for peer in peers_of(registry, commune):
        lines += ["", f"# {peer.commune}", "[Peer]", f"PublicKey = {peer.public_key}"]
        lines.append(f"AllowedIPs = {peer.mesh_address}/32")
        if peer.endpoint:
            lines.append(f"Endpoint = {peer.endpoint}")
        lines.append(f"PersistentKeepalive = {KEEPALIVE}")
    return "\n".join(lines) + "\n"


def firewall(interface: str, ports: Sequence[int] = tuple(SERVICE_PORTS.values())) -> str:
    """An nftables script replacing kloudctl's mesh table: what arrives on the mesh reaches
    only the federation's services (and echo, for round trips); everything else is refused
    at once (a TCP reset, an ICMP error), never silently routed on."""
    allowed = ", ".join(str(p) for p in sorted(set(ports)))
    return f"""table inet {NFT_TABLE}
delete table inet {NFT_TABLE}
table inet {NFT_TABLE} {{
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "{interface}" ct state established,related accept
    iifname "{interface}" tcp dport {{ {allowed} }} accept
    iifname "{interface}" icmp type echo-request accept
    iifname "{interface}" meta l4proto tcp reject with tcp reset
    iifname "{interface}" reject with icmpx admin-prohibited
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "{interface}" reject with icmpx admin-prohibited
  }}
}}
"""


def _tool(argv: list[str], *, stdin: str | None = None, within: Sequence[str] = ()) -> str:
    """Run a network tool (`wg`, `ip`, `nft`), after the `within` prefix when given (e.g.
    `ip netns exec NS`); its failure names it and what it said."""
    if shutil.which(argv[0]) is None:
        raise ToolMissing(
            f"'{argv[0]}' is not on PATH: the federation mesh needs wireguard-tools, iproute2"
            " and nftables (the federation_mesh role installs them)"
        )
    try:
        done = subprocess.run(
            [*within, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ExternalError(f"'{argv[0]}' did not answer within {TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip() or "no message"
        # The command line holds no secret: keys go through stdin.
        raise ExternalError(f"'{' '.join(argv)}' failed (exit {done.returncode}): {said}")
    return done.stdout


@dataclass(frozen=True)
class Applied:
    peers: list[str]
    added: list[str]
    removed: list[str]


def current_peers(interface: str, within: Sequence[str] = ()) -> set[str]:
    return set(_tool(["wg", "show", interface, "peers"], within=within).split())


def apply(
    registry: Registry,
    commune: str,
    keys: MemberKeys,
    interface: str = DEFAULT_INTERFACE,
    within: Sequence[str] = (),
) -> Applied:
    """Make `interface` (already created: kernel or wireguard-go) match the registry."""
    me = registry.members.get(commune)
    if me is None:
        raise InputError(f"commune '{commune}' is not in registry version {registry.version}")
    before = current_peers(interface, within)
    if me.state != "active":
        # A revoked member keeps no peer: its mesh ends on its side too.
        config = f"[Interface]\nPrivateKey = {wireguard_private(keys)}\n"
    else:
        config = render(registry, commune, wireguard_private(keys))
    _tool(["wg", "syncconf", interface, "/dev/stdin"], stdin=config, within=within)
    assert registry.pool is not None
    address = f"{me.mesh_address}/{registry.pool.prefixlen}"
    _tool(["ip", "-4", "address", "replace", address, "dev", interface], within=within)
    _tool(["ip", "link", "set", interface, "up"], within=within)
    _tool(["nft", "-f", "-"], stdin=firewall(interface), within=within)
    after = current_peers(interface, within)
    names = {m.wireguard_key: c for c, m in registry.members.items()}
    return Applied(
        peers=sorted(names.get(k, k) for k in after),
        added=sorted(names.get(k, k) for k in after - before),
        removed=sorted(names.get(k, k) for k in before - after),
    )


def parse_handshakes(text: str, interface: str) -> dict[str, int | None]:
    """`wg show IF latest-handshakes`: one `KEY<TAB>UNIX-TIME` line per peer (0: never).
    Not `dump`, whose first line holds the private key: this answer carries no secret."""
    tool = f"'wg show {interface} latest-handshakes'"
    out: dict[str, int | None] = {}
    for line in text.splitlines():
        key, _, stamp = line.partition("\t")
        if not key or not stamp.isdigit():
            raise UnexpectedAnswer(tool, "lines of a public key, a tab and a Unix time", line)
        out[key] = int(stamp) or None
    return out


def read_handshakes(interface: str, within: Sequence[str] = ()) -> dict[str, int | None]:
    answer = _tool(["wg", "show", interface, "latest-handshakes"], within=within)
    return parse_handshakes(answer, interface)


def round_trip(address: str, port: int = PROBE_PORT, timeout: float = 1.0) -> float | None:
    """Milliseconds for a TCP connection attempt over the mesh to be answered (accepted or
    refused alike: both are one round trip); None when nothing answered in time."""
    start = time.perf_counter()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        code = sock.connect_ex((address, port))
    if code in (0, errno.ECONNREFUSED):
        return (time.perf_counter() - start) * 1000
    return None


def health(
    registry: Registry, commune: str, interface: str = DEFAULT_INTERFACE, timeout: float = 1.0
) -> dict[str, dict[str, Any]]:
    """Per other member: its last handshake and the round trip over the mesh, probed in
    parallel (a whole federation answers within about `timeout`); a member that is not a
    peer of this interface (revoked) is shown as such, not probed."""
    handshakes = read_handshakes(interface)
    others = {c: m for c, m in registry.members.items() if c != commune}
    # Only peers this interface has are probed: a revoked member has no route here.
    probed = {c: m for c, m in others.items() if m.wireguard_key in handshakes}
    with ThreadPoolExecutor(max_workers=max(len(probed), 1)) as pool:
        trips = dict(
            zip(
                probed,
                pool.map(lambda m: round_trip(m.mesh_address, timeout=timeout), probed.values()),
                strict=True,
            )
        )
    now = time.time()
    out: dict[str, dict[str, Any]] = {}
    for c, m in others.items():
        handshake = handshakes.get(m.wireguard_key)
        trip = trips.get(c)
        out[c] = {
            "peer_configured": m.wireguard_key in handshakes,
            "latest_handshake": handshake,
            "handshake_age_s": None if handshake is None else max(int(now - handshake), 0),
            "rtt_ms": None if trip is None else round(trip, 2),
        }
    return out
