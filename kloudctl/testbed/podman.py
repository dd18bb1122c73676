"""Thin, typed wrappers over the podman command line, and the configuration check.

Everything the testbed does with podman goes through `podman()`, so a failure always
reports the command and podman's own words.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kloudctl.errors import ExternalError, KloudError

CONFIG_PATH = Path("/etc/containers/containers.conf")

#: Selects podman's network backend for every podman command kloudctl runs (podman's global
#: `--network-backend`), e.g. to run test cabinets on CNI beside netavark. Empty: podman's own
#: choice, which `make setup` sets to netavark in containers.conf.
BACKEND_ENV = "KLOUDCTL_PODMAN_NETWORK_BACKEND"
#: The network backends the testbed knows how to serve.
BACKENDS = ("netavark", "cni")

#: What the project's machines need (DESIGN.md decision 5): crun cannot set rlimits or use
#: the hybrid cgroup layout here, systemd's cgroup manager is not running on the host.
REQUIRED = {
    ("engine", "runtime"): "runc",
    ("engine", "cgroup_manager"): "cgroupfs",
    ("containers", "default_ulimits"): "[]",
}


class PodmanUnavailable(KloudError):
    """podman is missing or misconfigured: the message says exactly what to fix."""


def backend_args(wanted: str | None = None) -> list[str]:
    """podman's global option choosing the network backend: `wanted`, else the one kloudctl
    is asked to use (BACKEND_ENV), else none (podman's own choice)."""
    wanted = (wanted if wanted is not None else os.environ.get(BACKEND_ENV, "")).strip()
    if not wanted:
        return []
    if wanted not in BACKENDS:
        raise PodmanUnavailable(
            f"{BACKEND_ENV}={wanted!r} is not a podman network backend kloudctl serves; "
            f"use one of: {', '.join(BACKENDS)} (or leave it unset)"
        )
    return [f"--network-backend={wanted}"]


def podman(
    *args: str,
    check: bool = True,
    input: bytes | None = None,
    timeout: float | None = 600,
    network_backend: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `podman ARGS...`; raise ExternalError with podman's message when it fails.
    `network_backend` overrides the backend for this command (e.g. removing a network made
    on the other backend)."""
    cmd = ["podman", *backend_args(network_backend), *args]
    try:
        proc = subprocess.run(
            cmd,
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise PodmanUnavailable(
            "podman is not installed: run `make setup` (as root) or `apt-get install podman runc`"
        ) from None
    except subprocess.TimeoutExpired:
        raise ExternalError(
            f"podman {' '.join(args[:3])} did not finish within {timeout:.0f}s"
        ) from None
    if check and proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        raise ExternalError(
            f"podman {' '.join(args[:3])} failed (exit {proc.returncode}): "
            + (message[-1] if message else "no message")
        )
    return proc


@dataclass(frozen=True)
class ConfigFinding:
    key: str
    found: str | None
    wanted: str

    def __str__(self) -> str:
        section, name = self.key.split(".", 1)
        found = "not set" if self.found is None else f"is {self.found}"
        return f"[{section}] {name} {found}; set {name} = {self.wanted}"


def _read_conf(path: Path) -> dict[tuple[str, str], str]:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(path.read_text())
    except (OSError, configparser.Error):
        return {}
    values = {}
    for section in parser.sections():
        for key, value in parser.items(section):
            values[(section, key)] = value.strip().strip('"').replace(" ", "")
    return values


def check_config(path: Path = CONFIG_PATH) -> list[ConfigFinding]:
    """Compare `containers.conf` with what works here; an empty list means all is well."""
    values = _read_conf(path) if path.exists() else {}
    findings = []
    for (section, key), wanted in REQUIRED.items():
        found = values.get((section, key))
        if found != wanted.replace(" ", ""):
            findings.append(ConfigFinding(f"{section}.{key}", found, wanted))
    return findings


def preflight(path: Path = CONFIG_PATH) -> None:
    """Refuse to start anything when podman cannot run our containers; say how to fix it."""
    if shutil.which("podman") is None:
        raise PodmanUnavailable(
            "podman is not installed: run `make setup` (as root) or `apt-get install podman runc`"
        )
    if shutil.which("runc") is None:
        raise PodmanUnavailable("runc is not installed: run `apt-get install runc` (as root)")
    findings = check_config(path)
    if findings:
        lines = "\n  ".join(str(f) for f in findings)
        raise PodmanUnavailable(
            f"podman's configuration in {path} does not work on this machine:\n  {lines}\n"
            "Fix: `make setup` as root installs scripts/containers.conf there "
            "(or copy it by hand: install -m 0644 scripts/containers.conf "
            f"{path})"
        )
    info = podman(
        "info",
        "--format",
        "{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Host.NetworkBackend}}",
        check=False,
    )
    if info.returncode != 0:
        raise PodmanUnavailable(f"`podman info` fails: {_last_line(info)}")
    runtime, manager, backend = [*info.stdout.split(), "", "", ""][:3]
    if runtime != "runc" or manager != "cgroupfs":
        raise PodmanUnavailable(
            f"podman still uses runtime={runtime} cgroup_manager={manager} although {path} asks "
            "for runc/cgroupfs: a file in ~/.config/containers/ or CONTAINERS_CONF may override "
            "it; remove the override"
        )
    check_backend(backend)


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit {proc.returncode}, no message"


#: What each backend needs on the host, beyond podman itself.
_BACKEND_NEEDS = {
    "netavark": ("/usr/lib/podman/netavark", "netavark"),
    "cni": ("/usr/lib/cni/bridge", "containernetworking-plugins"),
}


def check_backend(backend: str) -> None:
    """The network backend podman uses must be one the testbed serves, with its plugins."""
    if backend not in BACKENDS:
        raise PodmanUnavailable(
            f"podman's network backend is {backend or 'unknown'!r}; test cabinets need "
            "netavark (or cni). Fix: `make setup` as root installs netavark and aardvark-dns "
            'and sets network_backend = "netavark" under [network] in '
            f"{CONFIG_PATH}"
        )
    binary, package = _BACKEND_NEEDS[backend]
    if not Path(binary).exists():
        raise PodmanUnavailable(
            f"podman's network backend is {backend}, but {binary} is missing: "
            f"`apt-get install {package}` (as root), or `make setup`"
        )
    if backend == "cni" and shutil.which("ip") is None:
        raise PodmanUnavailable(
            "podman's network backend is cni, whose internal networks give the host no "
            "address: the testbed adds one with `ip`, which is missing (`apt-get install "
            "iproute2`)"
        )


def network_backend() -> str:
    """The network backend podman uses for kloudctl's commands (netavark or cni)."""
    info = podman("info", "--format", "{{.Host.NetworkBackend}}")
    return info.stdout.strip()


def exists(kind: str, name: str) -> bool:
    """`podman KIND exists NAME` (kind: image, container, network)."""
    return podman(kind, "exists", name, check=False).returncode == 0


def podman_problem() -> str | None:
    """Why test cabinets cannot run on this machine, or None when they can."""
    if os.geteuid() != 0:
        return "test cabinets need root (debootstrap, podman with systemd)"
    try:
        preflight()
    except PodmanUnavailable as exc:
        return str(exc)
    return None
