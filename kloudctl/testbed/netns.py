"""Network namespaces as lightweight federation members (mesh tests and bench).

Each member is a network namespace with one underlay interface (`eth0`) on a bridge that
lives in a hub namespace of its own, so nothing is added to the host's interfaces or
routes. WireGuard runs in a member namespace as wireguard-go (the userspace daemon the
test cabinets use): the same `wg`, the same interface, without a container.
wireguard-go's control socket is /var/run/wireguard/IF.sock, a path namespaces share: each
member's interface gets a name of its own (`interface(member)`), where a cabinet has `kfed0`.
Everything is removed by `stop()`: deleting a namespace deletes its interfaces, and
wireguard-go ends when its interface goes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from kloudctl.errors import ExternalError


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ExternalError(f"'ip {' '.join(args)}' failed: {done.stderr.strip() or 'no message'}")
    return done.stdout


@dataclass
class Lab:
    """Namespaces `<prefix>-<n>` for the members, `<prefix>-hub` for their bridge."""

    prefix: str
    addresses: Mapping[str, str]  # member -> underlay address
    prefixlen: int = 24
    names: dict[str, str] = field(default_factory=dict)

    @property
    def hub(self) -> str:
        return f"{self.prefix}-hub"

    def start(self) -> Lab:
        _ip("netns", "add", self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for index, (member, address) in enumerate(self.addresses.items()):
            ns = f"{self.prefix}-{index}"
            _ip("netns", "add", ns)
            self.names[member] = ns
            port = f"p{index}"
            _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port)
            _ip("-n", ns, "link", "set", port, "netns", self.hub)
            _ip("-n", self.hub, "link", "set", port, "master", "br0", "up")
            _ip("-n", ns, "address", "add", f"{address}/{self.prefixlen}", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        return self

    def argv(self, member: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.names[member], *argv]

    def run(
        self, member: str, argv: Sequence[str], *, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(member, argv), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise ExternalError(
                f"{' '.join(argv)} in {member}'s namespace failed (exit {done.returncode}):"
                f" {(done.stderr or done.stdout).strip()}"
            )
        return done

    def interface(self, member: str) -> str:
        """`member`'s WireGuard interface: a name unique on this machine (see above)."""
        return f"{self.prefix}w{self.names[member].rpartition('-')[2]}"[-15:]

    def wireguard_go(self, member: str, binary: str) -> str:
        """Create `member`'s interface with wireguard-go in its namespace (it daemonises)."""
        self.run(member, [binary, self.interface(member)], timeout=30)
        return self.interface(member)

    def stop(self) -> None:
        for ns in [*self.names.values(), self.hub]:
            pids = subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True, check=False
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGTERM)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.names.clear()


@contextlib.contextmanager
def running(prefix: str, addresses: Mapping[str, str], prefixlen: int = 24) -> Iterator[Lab]:
    lab = Lab(prefix, addresses, prefixlen)
    try:
        yield lab.start()
    finally:
        lab.stop()
