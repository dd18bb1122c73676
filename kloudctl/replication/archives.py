"""Proxmox backup archives in and out of restic, byte-checked: the failover's file moves.

The same functions run wherever the storage's folder is: on the controller for a simulated
cabinet (its folder is on this machine), in the cabinet's replication agent on a real host
(`archive-backup`, `archive-stage`), which runs as root. So every name and path is checked
here, whoever calls: an archive is a `vzdump-qemu-...` file directly in the storage's
`dump/` folder, a snapshot is named by its full hex id, and nothing is followed through a
symbolic link.

    backup_archive   the archive's sha256, then `restic backup` of it with the failover
                     tags (`failover`, `vm:NAME`, `sha256:HEX`, `archive:NAME`)
    stage_archive    `restic restore` of the snapshot into a staging folder of the storage,
                     the sha256 checked against the tag, one rename into `dump/`; nothing
                     done when the archive is already there with that sha256
    hosted_copy      the copy of a source cabinet that this cabinet's rest-server keeps,
                     opened with the owner's key (what the prune timer uses), for the agent
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

from kloudctl.answers import dig
from kloudctl.errors import InputError, KloudError, NotFound
from kloudctl.files import sha256_of
from kloudctl.replication import restic as r
from kloudctl.replication.layout import Layout

#: restic tags of a VM's archive (with `vm:`, `sha256:`, `archive:`); `failback` marks the
#: archive made on the peer to bring the guest home.
FAILOVER_TAG = "failover"
FAILBACK_TAG = "failback"
REPLICATION_TAG = "kloudctl"  # every snapshot replication makes (ops.TAG)

#: What vzdump names a VM's archive (`vzdump-qemu-1000-2026_11_30-04_00_00.vma.zst`).
ARCHIVE_NAME = re.compile(
    r"^vzdump-qemu-[0-9]{1,9}-[0-9]{4}_[0-9]{2}_[0-9]{2}-[0-9]{2}_[0-9]{2}_[0-9]{2}"
    r"\.vma(\.zst|\.gz|\.lzo)?$"
)
HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: An absolute path whose parts are plain names (no `.`, `..`, empty or hidden parts).
STORAGE_PATH = re.compile(r"^(/[A-Za-z0-9_][A-Za-z0-9._-]*)+$")
#: Where a Proxmox host declares its storages; when it exists, a storage path must be one.
PVE_STORAGE_CFG = Path("/etc/pve/storage.cfg")

#: Where this cabinet's rest-server keeps the copies it hosts, and the owner's keys to
#: them (the `replication_target` role's defaults; `endpoints.json` may say otherwise in
#: the cabinet's own entry: `"hosted": {"data_dir": ..., "owner_keys": ...}`).
HOSTED_DATA_DIR = "/var/lib/kloudctl-rest-server"
OWNER_KEYS_DIR = "/etc/kloudctl-rest-server/owner-keys"


class ArchiveRefused(InputError):
    """A name, path or id the archive functions will not act on."""


def declared_storage_paths(cfg: Path = PVE_STORAGE_CFG) -> set[str] | None:
    """The `path` of every storage of the Proxmox host's storage.cfg; None without one."""
    try:
        text = cfg.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KloudError(f"{cfg}: cannot be read ({exc.strerror})") from None
    return {
        line.split(None, 1)[1].strip()
        for line in text.splitlines()
        if line.strip().startswith("path ") and len(line.split(None, 1)) == 2
    }


def storage_folder(path: str | Path, *, cfg: Path = PVE_STORAGE_CFG) -> Path:
    """`path` as a storage's folder: absolute, plain, an existing directory reached
    without a symbolic link, and a declared storage path where the host declares them."""
    text = str(path)
    if not STORAGE_PATH.match(text):
        raise ArchiveRefused(f"storage path {text!r} is not an absolute path of plain names")
    declared = declared_storage_paths(cfg)
    if declared is not None and text not in declared:
        raise ArchiveRefused(f"{text} is no storage path declared in {cfg}")
    folder = Path(text)
    if folder.resolve() != folder or not folder.is_dir():
        raise ArchiveRefused(f"storage path {text} is not a directory (or goes through a link)")
    return folder


def archive_file(folder: Path, name: str) -> Path:
    """Where archive `name` is (or goes) in the storage `folder`: `<folder>/dump/<name>`."""
    if not ARCHIVE_NAME.match(name):
        raise ArchiveRefused(f"{name!r} is not the name of a VM's vzdump archive")
    dump = folder / "dump"
    if dump.is_symlink():
        raise ArchiveRefused(f"{dump} is a symbolic link: archives are not followed through it")
    return dump / name


def check_hex(value: str, what: str) -> str:
    if not HEX64.match(value):
        raise ArchiveRefused(f"{what} {value!r} is not 64 hex digits")
    return value


def archive_tags(vm: str, name: str, digest: str, *, failback: bool) -> list[str]:
    tags = [REPLICATION_TAG, FAILOVER_TAG]
    if failback:
        tags.append(FAILBACK_TAG)
    return [*tags, f"vm:{vm}", f"sha256:{digest}", f"archive:{name}"]


def backup_archive(
    restic: r.Restic, repo: r.Repo, folder: Path, name: str, *, host: str, vm: str, failback: bool
) -> dict[str, Any]:
    """Keep the archive `name` of storage `folder` in `repo` (host `host`), its sha256 in a
    tag: {archive, size, sha256, snapshot}."""
    archive = archive_file(folder, name)
    try:
        found = archive.lstat()
    except FileNotFoundError:
        raise NotFound(f"archive {archive} does not exist") from None
    if not stat.S_ISREG(found.st_mode):
        raise ArchiveRefused(f"{archive} is not a regular file")
    digest = sha256_of(archive)
    tags = archive_tags(vm, name, digest, failback=failback)
    result = restic.run(repo, r.backup_paths_args([str(archive)], host=host, tags=tags))
    snapshot = dig("restic backup", result.summary, "snapshot_id", kind=str)
    return {"archive": name, "size": found.st_size, "sha256": digest, "snapshot": snapshot}


def stage_archive(
    restic: r.Restic, repo: r.Repo, folder: Path, name: str, snapshot: str, digest: str
) -> bool:
    """The snapshot's archive in `folder/dump/name`, sha256-checked; whether it was moved
    (False: it was already there, byte-identical)."""
    final = archive_file(folder, name)
    check_hex(snapshot, "snapshot id")
    check_hex(digest, "sha256")
    if final.is_file() and not final.is_symlink() and sha256_of(final) == digest:
        return False
    # per run: a killed run's restic may still write into its own staging folder
    staging = folder / f".kloudctl-restore-{snapshot[:12]}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        restic.run(repo, r.restore_args(snapshot, staging))
        found = [p for p in staging.rglob(name) if p.is_file() and not p.is_symlink()]
        if len(found) != 1:
            raise KloudError(f"restic snapshot {snapshot[:8]} does not hold archive {name}")
        got = sha256_of(found[0])
        if got != digest:
            raise KloudError(
                f"archive {name} from snapshot {snapshot[:8]} has sha256 {got}, the backup"
                f" recorded {digest}: not restored"
            )
        final.parent.mkdir(parents=True, exist_ok=True)
        # one rename: the storage never lists a half-written archive
        os.replace(found[0], final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def hosted_copy(layout: Layout, host: str, source: str) -> r.Repo:
    """The copy of `source` that cabinet `host` keeps in its rest-server's data folder,
    opened with the owner's key (the agent on `host` runs as root and reads both)."""
    entry = layout.endpoints()["cabinets"].get(host, {}).get("hosted") or {}
    data_dir = Path(entry.get("data_dir") or HOSTED_DATA_DIR)
    key = Path(entry.get("owner_keys") or OWNER_KEYS_DIR) / f"{source}.password"
    if not (data_dir / source / "config").is_file():
        raise NotFound(f"cabinet '{host}' holds no copy of '{source}' in {data_dir}")
    if not key.is_file():
        raise NotFound(f"the owner's key to the copy of '{source}' is missing: {key}")
    return r.Repo(str(data_dir / source), password_file=key)


def give_back(repo: r.Repo) -> None:
    """Files written into a hosted copy as root go back to the copy's owner (the
    rest-server's user), as the prune timer does: the source's next copy must write there."""
    top = Path(repo.location)
    owner = top.stat()
    for folder, dirs, names in os.walk(top):
        for item in [folder, *(os.path.join(folder, n) for n in dirs + names)]:
            st = os.lstat(item)
            if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
                os.lchown(item, owner.st_uid, owner.st_gid)
