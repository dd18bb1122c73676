"""Test cabinets: one systemd container per cabinet host, on a podman network of their own.

The small API other areas reuse for their own test cabinets::

    from kloudctl.testbed import cabinets, image

    with cabinets.running(["brieux", "mortree"], prefix="kloudctl-mail", state_dir=tmp) as bed:
        host = bed.hosts["brieux"]          # .container, .address, .hostname
        bed.ssh("brieux", "systemctl", "is-system-running")
        bed.ssh_key                          # private key path (ed25519, made at run time)

`start()` creates the network (podman picks a free subnet; hosts get fixed addresses from
it, in the order given), the containers (``--systemd=always``), an SSH key pair installed
as root's authorized key, and waits until each host answers over SSH with its host key
recorded in ``known_hosts``. `stop()` removes everything it created. Every podman object
is named with the given prefix so that concurrent users never collide.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kloudctl.answers import UnexpectedAnswer, dig, parse_json
from kloudctl.errors import ExternalError, InputError
from kloudctl.testbed import image as image_mod
from kloudctl.testbed.podman import exists, network_backend, podman, preflight

#: First host address inside the network's subnet (.1 is podman's gateway).
FIRST_HOST = 10
STATE_FILE = "testbed.json"
#: Side containers' names and their fixed host numbers in the subnet.
SERVICES = {"mirror": 2, "ups": 3}


@dataclass(frozen=True)
class Host:
    cabinet: str
    container: str
    hostname: str
    address: str


@dataclass
class Testbed:
    """What `start()` made: enough to reach, inspect and remove it (saved as JSON)."""

    prefix: str
    image: str
    network: str
    subnet: str
    gateway: str
    state_dir: str
    hosts: dict[str, Host] = field(default_factory=dict)
    #: Side containers on the same network (local apt mirror, simulated UPS...).
    services: dict[str, Host] = field(default_factory=dict)
    #: Ansible variables (not secret) overlaid on each cabinet's host for this testbed.
    hostvars: dict[str, dict[str, object]] = field(default_factory=dict)
    #: Other areas' pairings, e.g. {"brieux": {"sim": "https://127.0.0.1:PORT"}}.
    pairings: dict[str, dict[str, str]] = field(default_factory=dict)
    #: podman's network backend that made the network (netavark or cni), and its bridge.
    backend: str = ""
    interface: str = ""

    @property
    def ssh_key(self) -> Path:
        return Path(self.state_dir) / "id_ed25519"

    @property
    def ssh_public_key(self) -> Path:
        return Path(self.state_dir) / "id_ed25519.pub"

    @property
    def known_hosts(self) -> Path:
        return Path(self.state_dir) / "known_hosts"

    def ssh_options(self) -> list[str]:
        return [
            "-i",
            str(self.ssh_key),
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
        ]

    def ssh(
        self, cabinet: str, *command: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on a test cabinet over real SSH (as root)."""
        host = self.hosts[cabinet]
        argv = ["ssh", *self.ssh_options(), f"root@{host.address}", shlex.join(command)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise ExternalError(
                f"ssh {cabinet}: `{shlex.join(command)}` failed: {proc.stderr.strip()}"
            )
        return proc

    def exec(
        self, cabinet: str, *command: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in a test cabinet through podman (no SSH involved)."""
        return podman("exec", self.hosts[cabinet].container, *command, check=check)

    def save(self) -> Path:
        path = Path(self.state_dir) / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, state_dir: Path) -> Testbed:
        """The saved testbed; OSError when absent, ValueError when it is not ours."""
        path = Path(state_dir) / STATE_FILE
        data = json.loads(path.read_text())
        try:
            data["hosts"] = {k: Host(**v) for k, v in data["hosts"].items()}
            data["services"] = {k: Host(**v) for k, v in data.get("services", {}).items()}
            return cls(**data)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path} is not a testbed description ({exc})") from None


def container_name(prefix: str, cabinet: str) -> str:
    return f"{prefix}-{cabinet}"


def _keypair(state_dir: Path) -> None:
    key = state_dir / "id_ed25519"
    if key.exists():
        return
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kloudctl-testbed", "-f", str(key)],
        check=True,
    )


@dataclass(frozen=True)
class Network:
    """A test network as podman reports it (the gateway derived where podman gives none)."""

    name: str
    subnet: str
    gateway: str
    interface: str
    backend: str


INSPECT = "podman network inspect"


def _network(name: str) -> Network:
    """An internal network: the containers reach each other and the host, nothing beyond."""
    if not exists("network", name):
        podman("network", "create", "--internal", "--label", "org.kloudctl.testbed=1", name)
    answer = parse_json(INSPECT, podman("network", "inspect", name).stdout)
    return network_from_inspect(name, answer, network_backend())


def network_from_inspect(name: str, answer: object, backend: str) -> Network:
    """Read `podman network inspect` of either backend.

    netavark reports the gateway of an internal network; CNI does not (its bridge has
    `isGateway: false`), and gives the host no address on it. The gateway is then the
    subnet's first host, as podman allocates it, and `host_address()` puts it on the bridge
    so the host reaches its containers (there is still no route beyond).
    """
    subnet_text = dig(INSPECT, answer, 0, "subnets", 0, "subnet", kind=str)
    try:
        subnet = ipaddress.IPv4Network(subnet_text)
    except ValueError:
        raise UnexpectedAnswer(INSPECT, f"an IPv4 subnet for network {name}", answer) from None
    if subnet.num_addresses < 2 * FIRST_HOST:
        raise UnexpectedAnswer(
            INSPECT, f"a subnet of at least {2 * FIRST_HOST} addresses for {name}", answer
        )
    gateway = dig(INSPECT, answer, 0, "subnets", 0, "gateway", kind=str, default=None)
    if gateway is None:
        gateway = str(subnet[1])
    elif not _inside(gateway, subnet):
        raise UnexpectedAnswer(INSPECT, f"a gateway inside {subnet} for {name}", answer)
    interface = dig(INSPECT, answer, 0, "network_interface", kind=str, default="")
    return Network(name, str(subnet), gateway, interface, backend)


def _inside(address: str, subnet: ipaddress.IPv4Network) -> bool:
    try:
        return ipaddress.ip_address(address) in subnet
    except ValueError:
        return False


def host_address(network: Network) -> None:
    """Give the host the gateway address on the network's bridge when the backend did not
    (CNI internal networks): the host must reach its test cabinets over SSH.
    """
    if network.backend != "cni" or not network.interface:
        return  # netavark gives the bridge the gateway itself
    prefix = ipaddress.IPv4Network(network.subnet).prefixlen
    shown = subprocess.run(
        ["ip", "-j", "-4", "addr", "show", "dev", network.interface],
        capture_output=True,
        text=True,
    )
    if shown.returncode != 0:
        return  # no bridge yet: the backend creates it with the first container
    answer = parse_json("ip addr show", shown.stdout)
    infos = dig("ip addr show", answer, 0, "addr_info", kind=list, default=[])
    if any(isinstance(i, dict) and i.get("local") == network.gateway for i in infos):
        return
    added = subprocess.run(
        ["ip", "addr", "add", f"{network.gateway}/{prefix}", "dev", network.interface],
        capture_output=True,
        text=True,
    )
    if added.returncode != 0 and "File exists" not in added.stderr:
        raise ExternalError(
            f"ip addr add {network.gateway}/{prefix} dev {network.interface} failed: "
            f"{added.stderr.strip() or 'no message'}"
        )


def _address(subnet: str, index: int) -> str:
    return str(ipaddress.ip_network(subnet)[FIRST_HOST + index])


def start(
    cabinets: Sequence[str],
    *,
    prefix: str,
    state_dir: Path,
    image: str | None = None,
    hostnames: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 120,
    extra_args_of: Mapping[str, Sequence[str]] | None = None,
) -> Testbed:
    """Start one test cabinet per name; idempotent for hosts already running.

    `hostnames` maps a cabinet to the host name its container gets (default: the cabinet
    name). `extra_args` go to every `podman run` (e.g. ``--device /dev/net/tun``),
    `extra_args_of[cabinet]` to that cabinet's only (e.g. its own bind mount).
    """
    if not cabinets:
        raise InputError("no cabinet to start")
    preflight()
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    image = image or image_mod.ensure_image()
    _keypair(state_dir)
    net = _network(f"{prefix}-net")
    network, subnet, gateway = net.name, net.subnet, net.gateway
    try:
        bed = Testbed.load(state_dir)
        bed.hosts = {k: v for k, v in bed.hosts.items() if exists("container", v.container)}
    except (OSError, ValueError, KeyError):
        bed = Testbed(prefix, image, network, subnet, gateway, str(state_dir))
    bed.image, bed.network, bed.subnet, bed.gateway = image, network, subnet, gateway
    bed.backend, bed.interface = net.backend, net.interface
    used = {h.address for h in bed.hosts.values()}
    used |= {str(ipaddress.ip_network(subnet)[i]) for i in range(FIRST_HOST)}
    started = []
    for cabinet in cabinets:
        if cabinet in bed.hosts:
            continue
        index = 0
        while _address(subnet, index) in used:
            index += 1
        address = _address(subnet, index)
        used.add(address)
        hostname = (hostnames or {}).get(cabinet, cabinet)
        name = container_name(prefix, cabinet)
        podman("rm", "-f", name, check=False)
        podman(
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            hostname,
            "--network",
            network,
            "--ip",
            address,
            "--systemd=always",
            "--no-hosts",
            "--label",
            "org.kloudctl.testbed=1",
            "--label",
            f"org.kloudctl.cabinet={cabinet}",
            *extra_args,
            *(extra_args_of or {}).get(cabinet, ()),
            image,
            "/sbin/init",
        )
        bed.hosts[cabinet] = Host(cabinet, name, hostname, address)
        started.append(cabinet)
    host_address(net)
    bed.save()
    pub = bed.ssh_public_key.read_text()
    for cabinet in started:
        _install_key(bed, cabinet, pub)
    _wait_ready(bed, started, timeout)
    return bed


def _install_key(bed: Testbed, cabinet: str, pub: str) -> None:
    container = bed.hosts[cabinet].container
    script = (
        "install -d -m 0700 /root/.ssh && "
        f"printf '%s\\n' {shlex.quote(pub.strip())} > /root/.ssh/authorized_keys && "
        "chmod 0600 /root/.ssh/authorized_keys"
    )
    podman("exec", container, "sh", "-c", script)


def _wait_ready(bed: Testbed, cabinets: Sequence[str], timeout: float) -> None:
    """Wait until sshd answers on each host, then record its host key in known_hosts."""
    deadline = time.monotonic() + timeout
    pending = list(cabinets)
    keys: dict[str, str] = {}
    while pending:
        for cabinet in list(pending):
            host = bed.hosts[cabinet]
            scan = subprocess.run(
                ["ssh-keyscan", "-T", "2", "-t", "ed25519", host.address],
                capture_output=True,
                text=True,
            )
            lines = [ln for ln in scan.stdout.splitlines() if ln and not ln.startswith("#")]
            if lines:
                keys[cabinet] = lines[0]
                pending.remove(cabinet)
        if pending:
            if time.monotonic() > deadline:
                logs = podman("logs", "--tail", "5", bed.hosts[pending[0]].container, check=False)
                raise ExternalError(
                    f"test cabinets {', '.join(pending)} did not answer on SSH within "
                    f"{timeout:.0f}s; last log lines: {logs.stdout.strip()[-300:]}"
                )
            time.sleep(0.5)
    known = bed.known_hosts
    existing = known.read_text().splitlines() if known.exists() else []
    addresses = {bed.hosts[c].address for c in keys}
    kept = [ln for ln in existing if ln.split(" ", 1)[0] not in addresses]
    known.write_text("\n".join([*kept, *keys.values()]) + "\n")
    for cabinet in keys:
        bed.ssh(cabinet, "true")


def stop(bed: Testbed, cabinets: Sequence[str] | None = None) -> None:
    """Remove the named test cabinets (all by default), and the network with the last one."""
    names = list(bed.hosts) if cabinets is None else list(cabinets)
    containers = [bed.hosts[c].container for c in names if c in bed.hosts]
    if cabinets is None or set(names) >= set(bed.hosts):
        containers += [s.container for s in bed.services.values()]
        bed.services.clear()
    if containers:
        podman("rm", "-f", "-t", "2", *containers, check=False)
    for cabinet in names:
        bed.hosts.pop(cabinet, None)
        bed.pairings.pop(cabinet, None)
        bed.hostvars.pop(cabinet, None)
    if not bed.hosts:
        podman("network", "rm", "-f", bed.network, check=False, network_backend=bed.backend)
        _drop_host_address(bed)
        (Path(bed.state_dir) / STATE_FILE).unlink(missing_ok=True)
        (Path(bed.state_dir) / "known_hosts").unlink(missing_ok=True)
    else:
        bed.save()


def _drop_host_address(bed: Testbed) -> None:
    """CNI may leave its bridge behind: take back the address `host_address()` gave it, so
    a later network on the same subnet (either backend) is not shadowed by a stale route."""
    if bed.backend != "cni" or not bed.interface:
        return
    prefix = ipaddress.IPv4Network(bed.subnet).prefixlen
    subprocess.run(
        ["ip", "addr", "del", f"{bed.gateway}/{prefix}", "dev", bed.interface],
        capture_output=True,
    )


@contextmanager
def running(
    cabinets: Sequence[str],
    *,
    prefix: str,
    state_dir: Path,
    image: str | None = None,
    hostnames: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    extra_args_of: Mapping[str, Sequence[str]] | None = None,
) -> Iterator[Testbed]:
    """`start()` then always `stop()`: nothing survives the block."""
    bed = None
    try:
        bed = start(
            cabinets,
            prefix=prefix,
            state_dir=state_dir,
            image=image,
            hostnames=hostnames,
            extra_args=extra_args,
            extra_args_of=extra_args_of,
        )
        yield bed
    finally:
        if bed is not None:
            stop(bed)
        else:
            _cleanup_prefix(prefix, cabinets)


def _cleanup_prefix(prefix: str, cabinets: Sequence[str]) -> None:
    """After a failed start: remove whatever was created under this prefix."""
    names = [container_name(prefix, c) for c in [*cabinets, *SERVICES]]
    podman("rm", "-f", "-t", "2", *names, check=False)
    podman("network", "rm", "-f", f"{prefix}-net", check=False)


def start_service(
    bed: Testbed,
    service: str,
    command: Sequence[str],
    *,
    volumes: Mapping[str, str] = {},
) -> Host:
    """Run a side container (no systemd) from the testbed image at the service's address."""
    name = container_name(bed.prefix, service)
    address = str(ipaddress.ip_network(bed.subnet)[SERVICES[service]])
    podman("rm", "-f", "-t", "1", name, check=False)
    mounts = [arg for src, dst in volumes.items() for arg in ("-v", f"{src}:{dst}")]
    podman(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        bed.network,
        "--ip",
        address,
        "--label",
        "org.kloudctl.testbed=1",
        *mounts,
        bed.image,
        *command,
    )
    host = Host(service, name, service, address)
    bed.services[service] = host
    bed.save()
    return host
