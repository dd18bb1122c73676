"""A local apt repository of stand-in packages, signed, for the test cabinets.

The Proxmox VE repository cannot be reached from our machines. The tests (and
`kloudctl testbed up`) serve instead a repository with packages of the same names
(``proxmox-ve``, ``pve-manager``), empty, built with equivs. The repository is signed with
a key made at run time, so the role's whole apt path runs as it does on a real cabinet:
key download, signed-by source, index refresh, signature check, install.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kloudctl.errors import ExternalError, KloudError, ToolMissing
from kloudctl.testbed.image import cache_dir

SUITE = "bookworm"
COMPONENT = "pve-no-subscription"
KEY_FILE = f"proxmox-release-{SUITE}.gpg"


@dataclass(frozen=True)
class StandIn:
    name: str
    version: str
    depends: str = ""


STAND_INS = (
    StandIn("proxmox-ve", "8.4.0+kloudctl1", "pve-manager"),
    StandIn("pve-manager", "8.4.1+kloudctl1"),
)


def _control(pkg: StandIn) -> str:
    lines = [
        "Section: admin",
        "Priority: optional",
        "Standards-Version: 4.6.2",
        f"Package: {pkg.name}",
        f"Version: {pkg.version}",
        "Maintainer: kloudctl testbed <testbed@kloudici.invalid>",
        "Architecture: all",
    ]
    if pkg.depends:
        lines.append(f"Depends: {pkg.depends}")
    lines += [
        f"Description: stand-in for {pkg.name} (kloudctl testbed)",
        " An empty package of the same name as Proxmox's, served by the tests' local",
        " repository because the Proxmox repository cannot be reached here.",
    ]
    return "\n".join(lines) + "\n"


def _debs() -> Path:
    """Build the stand-in .deb files once (cached by their control files' hash)."""
    if shutil.which("equivs-build") is None:
        raise KloudError("equivs-build is missing: run `make setup` (as root) to install equivs")
    digest = hashlib.sha256("".join(_control(p) for p in STAND_INS).encode()).hexdigest()[:12]
    out = cache_dir() / f"standins-{digest}"
    if out.is_dir():
        return out
    with tempfile.TemporaryDirectory(prefix="kloudctl-equivs-") as tmp:
        for pkg in STAND_INS:
            ctl = Path(tmp) / f"{pkg.name}.ctl"
            ctl.write_text(_control(pkg))
            proc = subprocess.run(
                ["equivs-build", ctl.name], cwd=tmp, capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise ExternalError(f"equivs-build {pkg.name} failed: {proc.stderr.strip()[-300:]}")
        staging = Path(tempfile.mkdtemp(prefix="standins-", dir=cache_dir()))
        for deb in Path(tmp).glob("*.deb"):
            shutil.copy(deb, staging / deb.name)
        staging.rename(out)
    return out


def _run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, stdout: IO[str] | None = None
) -> None:
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=env,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except FileNotFoundError:
        raise ToolMissing(f"{cmd[0]} is not installed: run `make setup` (as root)") from None
    if proc.returncode != 0:
        raise ExternalError(f"{cmd[0]} failed: {proc.stderr.strip()[-300:]}")


def build(root: Path) -> Path:
    """Write a signed repository into `root` (replacing it); returns `root`.

    Layout: ``dists/bookworm/pve-no-subscription/binary-amd64/Packages``, ``pool/``, and
    the public key ``proxmox-release-bookworm.gpg`` at the top, like Proxmox's own.
    """
    root = Path(root)
    if root.exists():
        shutil.rmtree(root)
    pool = root / "pool" / COMPONENT
    pool.mkdir(parents=True)
    for deb in _debs().glob("*.deb"):
        shutil.copy(deb, pool / deb.name)
    binary = root / "dists" / SUITE / COMPONENT / "binary-amd64"
    binary.mkdir(parents=True)
    with open(binary / "Packages", "w") as packages:
        _run(["apt-ftparchive", "packages", f"pool/{COMPONENT}"], root, stdout=packages)
    _run(["gzip", "-kf", str(binary / "Packages")], root)
    with open(root / "dists" / SUITE / "Release.tmp", "w") as release:
        _run(
            [
                "apt-ftparchive",
                "-o",
                "APT::FTPArchive::Release::Origin=kloudctl-testbed",
                "-o",
                f"APT::FTPArchive::Release::Suite={SUITE}",
                "-o",
                f"APT::FTPArchive::Release::Codename={SUITE}",
                "-o",
                f"APT::FTPArchive::Release::Components={COMPONENT}",
                "-o",
                "APT::FTPArchive::Release::Architectures=amd64",
                "release",
                f"dists/{SUITE}",
            ],
            root,
            stdout=release,
        )
    (root / "dists" / SUITE / "Release.tmp").rename(root / "dists" / SUITE / "Release")
    _sign(root)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    root.chmod(0o755)
    return root


def _sign(root: Path) -> None:
    """Sign the Release file with a key made now (kept nowhere but in a temporary home)."""
    with tempfile.TemporaryDirectory(prefix="kloudctl-gpg-") as home:
        env = {**os.environ, "GNUPGHOME": home}
        gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
        _run(
            [*gpg, "--quick-gen-key", "kloudctl testbed repository", "ed25519", "sign", "never"],
            root,
            env,
        )
        with open(root / KEY_FILE, "wb") as key:
            proc = subprocess.run([*gpg, "--export"], env=env, stdout=key, stderr=subprocess.PIPE)
            if proc.returncode != 0:
                raise ExternalError(f"gpg --export failed: {proc.stderr.decode()[-300:]}")
        release = root / "dists" / SUITE / "Release"
        _run(
            [*gpg, "--clearsign", "-o", str(release.with_name("InRelease")), str(release)],
            root,
            env,
        )
        _run([*gpg, "-abs", "-o", str(release.with_name("Release.gpg")), str(release)], root, env)
