"""The test cabinets' Debian 12 image: built with debootstrap, imported with `podman import`.

No registry exists on our machines, so the image is built from the machine's configured
Debian mirror (read from /etc/apt/sources.list and sources.list.d) and kept in podman's
local storage as ``localhost/kloudctl-debian:12-<recipe hash>``. The recipe (suite,
packages, set-up script, mirror) is hashed; the image is rebuilt only when the recipe
changes. Builds are serialised by a lock file, so parallel test workers and helpers
share one build.

Other areas ask for extra Debian packages with ``ensure_image(extra_packages=...)``: the
extras join the recipe, so each distinct set is one cached image.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kloudctl.errors import ExternalError, KloudError
from kloudctl.testbed.podman import exists, podman, preflight

REPOSITORY = "localhost/kloudctl-debian"
SUITE = "bookworm"
LABEL = "org.kloudctl.recipe"
RECIPE_VERSION = 1

#: Installed by debootstrap itself: enough for a booting, reachable system.
CORE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "sudo",
    "iproute2",
    "ca-certificates",
)

#: Installed in a second stage with apt (real dependency resolution, no recommends): what
#: the roles install or use, so tests never download them again.
PACKAGES = (
    "tzdata",
    "procps",
    "iputils-ping",
    "curl",
    "chrony",
    "postfix",
    "open-iscsi",
    "unattended-upgrades",
    "nut-client",
    "nut-server",
    "linux-cpupower",
    "powertop",
    "hdparm",
)

#: Runs inside the chroot after the packages are in. Masks what cannot work in a container,
#: generates SSH host keys at first boot (every container gets its own), and disables the
#: Debian sources: test cabinets live on an isolated network where no mirror is reachable.
SETUP_SCRIPT = r"""
set -eu
systemctl mask getty.target console-getty.service systemd-udevd.service \
  systemd-udevd-control.socket systemd-udevd-kernel.socket systemd-modules-load.service \
  sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
  systemd-remount-fs.service e2scrub_reap.service e2scrub_all.timer fstrim.timer >/dev/null
rm -f /etc/ssh/ssh_host_*
cat > /etc/systemd/system/ssh-host-keys.service <<'UNIT'
[Unit]
Description=Generate this machine's SSH host keys on first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
systemctl enable ssh-host-keys.service ssh.service >/dev/null
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
echo 'LANG=C.UTF-8' > /etc/default/locale
sed -i 's/^Enabled: yes$/Enabled: no/' /etc/apt/sources.list.d/debian.sources
rm -f /usr/sbin/policy-rc.d
apt-get clean
rm -rf /var/log/apt/* /var/log/dpkg.log /tmp/* /root/.bash_history
"""


@dataclass(frozen=True)
class Mirror:
    debian: str
    security: str | None


def _sources_entries(etc: Path) -> Iterator[tuple[str, list[str]]]:
    """(uri, suites) for every enabled `deb` entry, one-line or deb822 format."""
    files = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.name.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
                if fields.get("enabled", "yes") == "no" or "deb" not in fields.get("types", ""):
                    continue
                for uri in fields.get("uris", "").split():
                    yield uri, fields.get("suites", "").split()
        elif path.name.endswith(".list") or path.name == "sources.list":
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    yield words[1], [words[2]]


def host_mirror(etc: Path = Path("/etc/apt")) -> Mirror:
    """The Debian mirror this machine's apt is configured with (no guessing, no default)."""
    debian = security = None
    for uri, suites in _sources_entries(etc):
        if SUITE in suites and debian is None:
            debian = uri
        if f"{SUITE}-security" in suites and security is None:
            security = uri
    if debian is None:
        raise KloudError(
            f"no Debian {SUITE} mirror found in {etc}/sources.list or sources.list.d: "
            "the test cabinets' image is built from the machine's own mirror"
        )
    return Mirror(debian.rstrip("/"), security.rstrip("/") if security else None)


def recipe(extra_packages: Iterable[str] = (), mirror: Mirror | None = None) -> dict[str, object]:
    mirror = mirror or host_mirror()
    return {
        "version": RECIPE_VERSION,
        "suite": SUITE,
        "core": list(CORE_PACKAGES),
        "packages": sorted(set(PACKAGES) | set(extra_packages)),
        "setup": SETUP_SCRIPT,
        "mirror": [mirror.debian, mirror.security],
    }


def recipe_hash(rec: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:12]


def image_name(extra_packages: Iterable[str] = (), mirror: Mirror | None = None) -> str:
    return f"{REPOSITORY}:12-{recipe_hash(recipe(extra_packages, mirror))}"


def cache_dir() -> Path:
    base = Path(os.environ.get("KLOUDCTL_CACHE", Path.home() / ".cache" / "kloudctl"))
    base.mkdir(parents=True, exist_ok=True)
    return base


@contextmanager
def _build_lock() -> Iterator[None]:
    with open(cache_dir() / "image-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_image(extra_packages: Iterable[str] = (), *, log: Path | None = None) -> str:
    """The image's full name (``localhost/...``), building it first if its recipe is new.

    Safe to call from parallel processes: one builds, the others wait and reuse.
    """
    preflight()
    extra = tuple(sorted(set(extra_packages)))
    rec = recipe(extra)
    name = f"{REPOSITORY}:12-{recipe_hash(rec)}"
    if exists("image", name):
        return name
    with _build_lock():
        if exists("image", name):
            return name
        _build(rec, name, log or cache_dir() / "image-build.log")
    return name


def _run(cmd: list[str], logf: IO[str], what: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise ExternalError(f"image build: {what} failed (exit {proc.returncode}); see the log")


def _sources(mirror_debian: str, mirror_security: str | None) -> str:
    text = (
        "Types: deb\n"
        f"URIs: {mirror_debian}\n"
        f"Suites: {SUITE} {SUITE}-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "Enabled: yes\n"
    )
    if mirror_security:
        text += (
            "\nTypes: deb\n"
            f"URIs: {mirror_security}\n"
            f"Suites: {SUITE}-security\n"
            "Components: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            "Enabled: yes\n"
        )
    return text


def _build(rec: dict[str, object], name: str, log_path: Path) -> None:
    if os.geteuid() != 0:
        raise KloudError("building the test cabinets' image needs root (debootstrap, chroot)")
    for tool in ("debootstrap", "chroot", "tar"):
        if shutil.which(tool) is None:
            raise KloudError(f"{tool} is not installed: run `make setup` as root")
    mirrors: list[str | None] = list(rec["mirror"])  # type: ignore[call-overload]
    mirror_debian, mirror_security = str(mirrors[0]), mirrors[1]
    debs = cache_dir() / "debs"
    debs.mkdir(exist_ok=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="kloudctl-image-", dir="/var/tmp") as tmp,
        open(log_path, "w") as logf,
    ):
        root = Path(tmp) / "root"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(rec['core'])}",  # type: ignore[arg-type]
                f"--cache-dir={debs}",
                SUITE,
                str(root),
                mirror_debian,
            ],
            logf,
            "debootstrap",
            env,
        )
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        (root / "etc/apt/sources.list.d/debian.sources").write_text(
            _sources(mirror_debian, mirror_security)
        )
        (root / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
        (root / "usr/sbin/policy-rc.d").chmod(0o755)
        (root / "etc/hostname").write_text("cabinet\n")
        archives = root / "var/cache/apt/archives"
        subprocess.run(["mount", "--bind", str(debs), str(archives)], check=True)
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        try:
            _run(["chroot", str(root), "apt-get", "update", "-q"], logf, "apt-get update", env)
            packages: list[str] = list(rec["packages"])  # type: ignore[call-overload]
            _run(
                [
                    "chroot",
                    str(root),
                    "apt-get",
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    *packages,
                ],
                logf,
                "apt-get install",
                env,
            )
        finally:
            subprocess.run(["umount", str(root / "proc")], check=False)
            subprocess.run(["umount", str(archives)], check=False)
        _run(["chroot", str(root), "sh", "-c", str(rec["setup"])], logf, "set-up script", env)
        digest = recipe_hash(rec)
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-c", "."],
            stdout=subprocess.PIPE,
        )
        imported = subprocess.run(
            [
                "podman",
                "import",
                "--change",
                "CMD=/sbin/init",
                "--change",
                f"LABEL {LABEL}={digest}",
                "--change",
                "STOPSIGNAL=SIGRTMIN+3",
                "--change",
                "ENV LANG=C.UTF-8",
                "-",
                name,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
        )
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise ExternalError(f"podman import failed: {imported.stderr.strip()}")
        logf.write(f"built {name} in {time.monotonic() - started:.0f}s\n")


def tag_current(name: str) -> str:
    """Also tag `name` as ``localhost/kloudctl-debian:12`` (what Molecule scenarios default to)."""
    current = f"{REPOSITORY}:12"
    podman("tag", name, current)
    return current
