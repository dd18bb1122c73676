"""kloudctl for a cabinet: one tarball of the package and the few libraries its CLI imports.

Cabinets run the same kloudctl as the controller (replication runs and the cron checks),
not a re-implementation in shell. Cabinets run Debian 12, whose python3 is the controller's
3.11, so the libraries are copied file by file from the distributions installed here, at
the exact versions CI tested: no network, no pip on the cabinet.

The tarball also holds `kloudctl/CABINET_BUNDLE` (`kloudctl.CABINET_MARKER`), which the
source tree never has: the CLI leaves out the command groups whose libraries a cabinet
does not carry only when it finds that file, and the controller's own groups
(`kloudctl.cli.CONTROLLER_ONLY`: simulators, test cabinets, Pulumi stacks) with them; on the
controller a group that cannot be imported is an error.

The tarball is named by the hash of its content, so a cabinet gets a new folder
(`/opt/kloudctl/<hash>`) exactly when something changed, and the Ansible task that unpacks
it is idempotent.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from importlib import metadata
from pathlib import Path

import kloudctl
from kloudctl.files import write_atomic

#: What `kloudctl.cli` imports at start-up, and what those import in turn.
DISTRIBUTIONS = (
    "click",
    "rich",
    "markdown-it-py",
    "mdurl",
    "pygments",
    "pydantic",
    "pydantic-core",
    "typing-extensions",
    "typing-inspection",
    "annotated-types",
    "PyYAML",
    # The federation's registry is verified on the cabinet (ed25519, X25519): `cryptography`
    # (a compiled extension built for the controller's Python, which a cabinet shares).
    "cryptography",
    "cffi",
    "pycparser",
    # The Proxmox API client (kloudctl.proxmox.client) for the cabinet's own failover
    # backups (`federation backup` on its timer): proxmoxer on requests and what it imports.
    "proxmoxer",
    "requests",
    "urllib3",
    "idna",
    "charset-normalizer",
    "certifi",
)
#: Folders of the controller's package a cabinet never needs.
_SKIP_PARTS = {"__pycache__"}


_MARKER_TEXT = (
    b"This kloudctl is the trimmed copy a cabinet carries (kloudctl.hosts.bundle): command\n"
    b"groups whose libraries it does not carry are left out of its CLI.\n"
)


def _files() -> list[tuple[str, Path]]:
    """(path in the tarball, file here), sorted, for the package and each distribution."""
    out: list[tuple[str, Path]] = []
    package = Path(kloudctl.__file__).parent
    for path in sorted(package.rglob("*")):
        if path.name == kloudctl.CABINET_MARKER:  # build() adds its own
            continue
        if path.is_file() and not _SKIP_PARTS & set(path.parts) and path.suffix != ".pyc":
            out.append((f"kloudctl/{path.relative_to(package).as_posix()}", path))
    for name in DISTRIBUTIONS:
        dist = metadata.distribution(name)
        for entry in dist.files or []:
            rel = entry.as_posix()
            if rel.startswith("..") or "__pycache__" in rel or ".dist-info/" in rel:
                continue
            source = Path(str(dist.locate_file(entry)))
            if source.is_file():
                out.append((rel, source))
    return sorted(set(out))


def build(dest_dir: Path) -> Path:
    """Write `kloudctl-cabinet-<hash>.tar.gz` in `dest_dir` (once per content) and return it."""
    files = _files()
    marker = f"kloudctl/{kloudctl.CABINET_MARKER}"
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(marker.encode() + b"\0" + _MARKER_TEXT + b"\0")
    tag = digest.hexdigest()[:16]
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"kloudctl-cabinet-{tag}.tar.gz"
    if target.exists():
        return target
    buffer = io.BytesIO()
    # Fixed owner, mode and time: the same content gives the same bytes.
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for name, path in files:
            info = tarfile.TarInfo(name)
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o755 if os.access(path, os.X_OK) and path.suffix == ".so" else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(marker)
        info.size, info.mode, info.mtime = len(_MARKER_TEXT), 0o644, 0
        tar.addfile(info, io.BytesIO(_MARKER_TEXT))
    return write_atomic(target, buffer.getvalue(), what="cabinet bundle")


def version_of(bundle: Path) -> str:
    """The folder name a cabinet unpacks `bundle` into."""
    return bundle.name.removeprefix("kloudctl-cabinet-").removesuffix(".tar.gz")
