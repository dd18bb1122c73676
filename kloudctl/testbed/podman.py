"""Thin, typed wrappers over the podman command line, and the configuration check.

Everything the testbed does with podman goes through `podman()`, so a failure always
reports the command and podman's own words.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kloudctl.errors import ExternalError, KloudError

CONFIG_PATH = Path("/etc/containers/containers.conf")

#: What the project's machines need (DESIGN.md decision 5): crun cannot set rlimits or use
#: the hybrid cgroup layout here, systemd's cgroup manager is not running on the host.
REQUIRED = {
    ("engine", "runtime"): "runc",
    ("engine", "cgroup_manager"): "cgroupfs",
    ("containers", "default_ulimits"): "[]",
}


class PodmanUnavailable(KloudError):
    """podman is missing or misconfigured: the message says exactly what to fix."""


def podman(
    *args: str,
    check: bool = True,
    input: bytes | None = None,
    timeout: float | None = 600,
) -> subprocess.CompletedProcess[str]:
    """Run `podman ARGS...`; raise ExternalError with podman's message when it fails."""
    cmd = ["podman", *args]
    proc = subprocess.run(
        cmd,
        input=input.decode() if input is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
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
        "info", "--format", "{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}}", check=False
    )
    if info.returncode != 0:
        raise PodmanUnavailable(f"`podman info` fails: {info.stderr.strip()}")
    runtime, _, manager = info.stdout.strip().partition(" ")
    if runtime != "runc" or manager != "cgroupfs":
        raise PodmanUnavailable(
            f"podman still uses runtime={runtime} cgroup_manager={manager} although {path} asks "
            "for runc/cgroupfs: a file in ~/.config/containers/ or CONTAINERS_CONF may override "
            "it; remove the override"
        )


def exists(kind: str, name: str) -> bool:
    """`podman KIND exists NAME` (kind: image, container, network)."""
    return podman(kind, "exists", name, check=False).returncode == 0


def remove_quietly(args: Sequence[str]) -> None:
    podman(*args, check=False)


def podman_problem() -> str | None:
    """Why test cabinets cannot run on this machine, or None when they can."""
    if os.geteuid() != 0:
        return "test cabinets need root (debootstrap, podman with systemd)"
    try:
        preflight()
    except PodmanUnavailable as exc:
        return str(exc)
    return None
