"""Backups and restores: `POST /nodes/{node}/vzdump` writes a real archive file into a
directory storage's `dump/` folder, `qemu`/`lxc` create with `archive=` (or `restore=1`)
restores a guest from one (with options given beside `archive=` written over its config, drives
refused, as qemu-server does since 7.2), `vzdump/extractconfig` reads the config back out of one.

As on PVE, a directory storage's backups are whatever files its `dump/` folder holds: an
archive copied there from another cabinet (replication, federation failover) is listed and
can be restored like one made here. Names follow PVE::Storage
(`vzdump-qemu-101-2026_11_30-04_00_00.vma.zst`, `.tar.zst` for containers), with the
`.log` next to it, `<archive>.notes` and `<archive>.protected`; volids are
`local:backup/<name>`.

The archive is not a real VMA/tar: it holds the simulator's own record (a magic line, one
JSON line with the guest's type, VMID, config in PVE's `.conf` text and disk sizes, then
deterministic content per disk), enough for a restore to reproduce the guest's config and
disks. Where a cabinet's storage files live: `SimCabinet.files_root`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import uuid
from pathlib import Path
from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes, bad_request
from kloudctl.sim.handlers import common as c
from kloudctl.sim.state import ARCHIVE_DISK_BYTES, PATH_STORAGE_TYPES, add_guest, add_volume

routes = Routes()
N = "/nodes/{node}"

MAGIC = b"KLOUDCTL-SIM-VZDUMP 1\n"
_NAME = re.compile(
    r"^vzdump-(qemu|lxc)-(\d+)-(\d{4})_(\d\d)_(\d\d)-(\d\d)_(\d\d)_(\d\d)\.(vma|tar)(\.(?:zst|gz|lzo))?$"
)
_EXT = {None: "", "0": "", "1": ".lzo", "lzo": ".lzo", "gzip": ".gz", "zstd": ".zst"}
_PATH_TYPES = PATH_STORAGE_TYPES


# --- where the files are --------------------------------------------------------------------


def renew_identity(config: dict[str, Any]) -> None:
    """What a QEMU restore with unique=1 gives anew, as PVE's restore does: the SMBIOS
    UUID (the other smbios1 fields stay), the VM generation id (unless disabled with 0);
    `meta` keeps the backed-up guest's creation time. MACs: the caller."""
    smbios = [f for f in str(config.get("smbios1", "")).split(",") if f]
    others = [f for f in smbios if not f.startswith("uuid=")]
    config["smbios1"] = ",".join([f"uuid={uuid.uuid4()}", *others])
    if str(config.get("vmgenid", "1")) != "0":
        config["vmgenid"] = str(uuid.uuid4())


def storage_path(call: Call, node: str, sid: str) -> Path:
    """The real folder standing for a path-based storage on `node` (shared storages have
    one folder for every node)."""
    st = call.state["storages"][sid]
    if st["type"] not in _PATH_TYPES:
        raise ApiError(500, f"storage '{sid}' does not support backups")
    return call.cab.storage_folder(node, sid)


def backup_storage(call: Call, node: str, sid: str) -> Path:
    c.storage_with_content(call, sid, "backup", "backups")
    return storage_path(call, node, sid) / "dump"


def backups(call: Call, node: str, sid: str) -> list[dict[str, Any]]:
    """The backup volumes of a storage on a node, as `storage/{storage}/content` lists them."""
    st = call.state["storages"].get(sid, {})
    if "backup" not in st.get("content", "").split(",") or st.get("type") not in _PATH_TYPES:
        return []
    folder = storage_path(call, node, sid) / "dump"
    out = []
    for path in sorted(folder.glob("vzdump-*")) if folder.is_dir() else []:
        m = _NAME.match(path.name)
        if not m:
            continue
        y, mo, d, h, mi, sec = (int(m.group(i)) for i in range(3, 9))
        ctime = int(time.mktime((y, mo, d, h, mi, sec, 0, 0, -1)))  # the name's local time
        entry: dict[str, Any] = {
            "volid": f"{sid}:backup/{path.name}",
            "content": "backup",
            "format": f"{m.group(9)}{m.group(10) or ''}".lstrip("."),
            "size": path.stat().st_size,
            "ctime": ctime,
            "vmid": int(m.group(2)),
            "subtype": m.group(1),
        }
        notes = path.with_name(path.name + ".notes")
        if notes.exists():
            entry["notes"] = notes.read_text().split("\n", 1)[0]
        if path.with_name(path.name + ".protected").exists():
            entry["protected"] = True
        out.append(entry)
    return out


def archive_file(call: Call, volid: str) -> Path:
    """The file of a backup volid (`local:backup/vzdump-...`) on the call's node."""
    sid, _, name = volid.partition(":")
    if sid not in call.state["storages"] or not name.startswith("backup/"):
        raise ApiError(500, f"unable to parse volume ID '{volid}'")
    path = backup_storage(call, call.p("node"), sid) / name.split("/", 1)[1]
    if not _NAME.match(path.name) or not path.is_file():
        raise ApiError(500, f"volume '{volid}' does not exist")
    return path


# --- the archive ------------------------------------------------------------------------------


def conf_text(config: dict[str, Any]) -> str:
    """A guest config as PVE writes `qemu-server/<vmid>.conf` (description as comments)."""
    lines = [f"#{line}" for line in str(config.get("description", "")).splitlines()]
    for key in sorted(config):
        if key not in ("description", "lock", "digest"):
            lines.append(f"{key}: {config[key]}")
    return "\n".join(lines) + "\n"


def parse_conf(text: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    comments = []
    for line in text.splitlines():
        if line.startswith("#"):
            comments.append(line[1:])
        elif line.startswith("["):
            break  # a snapshot section: vzdump keeps only the current config
        elif ": " in line:
            key, value = line.split(": ", 1)
            config[key] = int(value) if re.fullmatch(r"-?\d+", value) else value
    if comments:
        config["description"] = "\n".join(comments)
    return config


def _content(vmid: int, key: str, size: int, length: int = ARCHIVE_DISK_BYTES) -> bytes:
    """Deterministic stand-in for a disk's data, derived from the guest and disk: 4 KiB by
    default; another length (a bench's realistic archives) is pseudo-random, so neither
    compression nor restic's deduplication shrinks it the way they would not a real disk."""
    seed = hashlib.sha256(f"{vmid}:{key}:{size}".encode()).digest()
    if length == ARCHIVE_DISK_BYTES:
        return seed * (ARCHIVE_DISK_BYTES // len(seed))
    rng = random.Random(seed)  # stand-in data, not a secret
    # by 1 MiB: randbytes of much more overflows (it draws n * 8 bits at once)
    return b"".join(rng.randbytes(min(1 << 20, length - i)) for i in range(0, length, 1 << 20))


def write_archive(
    path: Path, g: dict[str, Any], node: str, disk_bytes: int = ARCHIVE_DISK_BYTES
) -> None:
    disks = {}
    for key, value in g["config"].items():
        if c.DISK_KEYS.match(key) and not key.startswith("unused"):
            vol, opts = c.disk_volume(str(value))
            if ":" in vol and opts.get("media") != "cdrom":
                disks[key] = c.parse_size(opts.get("size", "0"))[1]
    header = {
        "type": c.guest_type(g),
        "vmid": g["vmid"],
        "node": node,
        "config": conf_text(g["config"]),  # what extractconfig shows
        "values": {k: v for k, v in g["config"].items() if k not in ("lock", "digest")},
        "disks": disks,
    }
    body = b"".join(_content(g["vmid"], k, s, disk_bytes) for k, s in sorted(disks.items()))
    data = MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + body
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".tmp")
    part.write_bytes(data)
    part.replace(path)  # a half-written archive never shows under its final name


def read_archive(path: Path, volid: str) -> dict[str, Any]:
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise ApiError(500, f"unable to read archive '{volid}' - not a vzdump archive")
    line = data[len(MAGIC) :].split(b"\n", 1)[0]
    try:
        header: dict[str, Any] = json.loads(line)
    except ValueError:
        raise ApiError(500, f"unable to read archive '{volid}' - broken header") from None
    return header


# --- vzdump -----------------------------------------------------------------------------------


def _selected(call: Call, node: str) -> list[int]:
    if call.p("stdout"):
        raise ApiError(501, "vzdump to stdout is not simulated by kloudctl sim")
    if call.p("dumpdir"):
        raise ApiError(501, "vzdump with dumpdir is not simulated by kloudctl sim")
    guests = call.state["guests"]
    if call.p("all"):
        excluded = {int(v) for v in c.split_ids(call.p("exclude"))}
        return sorted(
            g["vmid"] for g in guests.values() if g["node"] == node and g["vmid"] not in excluded
        )
    if call.p("pool"):
        pool = call.state["access"]["pools"].get(call.p("pool"))
        if pool is None:
            raise ApiError(500, f"pool '{call.p('pool')}' does not exist")
        return sorted(v for v in pool.get("vms", []) if guests.get(str(v), {}).get("node") == node)
    vmids = [int(v) for v in c.split_ids(call.p("vmid"))]
    if not vmids:
        raise ApiError(500, "no guests selected")  # PVE: one of vmid/all/pool is required
    return sorted(vmids)


def _archive_name(kind: str, vmid: int, when: float, compress: Any) -> str:
    stamp = time.strftime("%Y_%m_%d-%H_%M_%S", time.localtime(when))
    base = "vma" if kind == "qemu" else "tar"
    ext = _EXT.get(None if compress is None else str(compress), ".zst")
    return f"vzdump-{kind}-{vmid}-{stamp}.{base}{ext}"


@routes("POST", N + "/vzdump")
def vzdump(call: Call) -> str:
    node = call.p("node")
    call.cab.node(node)
    sid = call.p("storage") or "local"
    folder = backup_storage(call, node, sid)
    call.cab.acl.check(call.who, f"/storage/{sid}", ["Datastore.AllocateSpace"])
    vmids = _selected(call, node)
    for vmid in vmids:
        call.cab.acl.check(call.who, f"/vms/{vmid}", ["VM.Backup"])
    here = [call.state["guests"][str(v)] for v in vmids if str(v) in call.state["guests"]]
    here = [g for g in here if g["node"] == node]
    for g in here:
        c.check_config_lock(g)
    mode = call.p("mode") or "snapshot"
    compress = call.p("compress")
    notes = call.p("notes-template")
    protected = bool(call.p("protected"))
    ident = str(vmids[0]) if len(vmids) == 1 else ""

    def unlock() -> None:
        for g in here:
            if g["config"].get("lock") == "backup":
                g["config"].pop("lock")

    def done(task: dict[str, Any]) -> None:
        log = task["log"]
        opts = f"--storage {sid} --mode {mode}" + (f" --compress {compress}" if compress else "")
        log.append(f"INFO: starting new backup job: vzdump {' '.join(map(str, vmids))} {opts}")
        errors = 0
        for vmid in vmids:
            g = call.state["guests"].get(str(vmid))
            if g is None or g["node"] != node:
                errors += 1
                log.append(
                    f"ERROR: Backup of VM {vmid} failed - unable to find configuration file "
                    f"for VM {vmid} on node '{node}'"
                )
                continue
            kind = c.guest_type(g)
            name = _archive_name(kind, vmid, task["starttime"], compress)
            path = folder / name
            if path.exists():
                errors += 1
                log.append(f"ERROR: Backup of VM {vmid} failed - archive '{name}' already exists")
                continue
            log.append(f"INFO: Starting Backup of VM {vmid} ({kind})")
            log.append(f"INFO: Backup started at {time.strftime('%Y-%m-%d %H:%M:%S')}")
            log.append(f"INFO: status = {g['status']}")
            log.append(f"INFO: backup mode: {mode}")
            log.append(f"INFO: creating vzdump archive '{path}'")
            if g["config"].get("lock") == "backup":
                g["config"].pop("lock")
            write_archive(path, g, node, call.cab.archive_disk_bytes)
            text = "\n".join(log[-5:]) + "\n"
            path.with_name(re.sub(r"\.(vma|tar)(\.\w+)?$", ".log", name)).write_text(text)
            if notes:
                rendered = (
                    str(notes)
                    .replace("{{guestname}}", c.guest_name(g))
                    .replace("{{vmid}}", str(vmid))
                    .replace("{{node}}", node)
                    .replace("{{cluster}}", str(call.state["cluster"]))
                )
                path.with_name(name + ".notes").write_text(rendered.replace("\\n", "\n"))
            if protected:
                path.with_name(name + ".protected").write_text("")
            log.append(f"INFO: archive file size: {path.stat().st_size}B")
            log.append(f"INFO: Finished Backup of VM {vmid} (00:00:01)")
        unlock()
        if errors:
            raise ApiError(500, "job errors")
        log.append("INFO: Backup job finished successfully")

    upid = call.cab.start_task(call.who, "vzdump", ident, node, done, on_error=unlock)
    for g in here:  # the guests keep the `backup` lock while the job runs, as on PVE
        g["config"]["lock"] = "backup"
    return upid


@routes("GET", N + "/vzdump/defaults")
def vzdump_defaults(call: Call) -> dict[str, Any]:
    call.cab.node(call.p("node"))
    out: dict[str, Any] = {
        "mode": "snapshot",
        "compress": "0",
        "ionice": 7,
        "lockwait": 180,
        "stopwait": 10,
        "prune-backups": "keep-all=1",
    }
    if call.p("storage"):
        if call.p("storage") not in call.state["storages"]:
            raise ApiError(500, f"storage '{call.p('storage')}' does not exist")
        out["storage"] = call.p("storage")
    return out


@routes("GET", N + "/vzdump/extractconfig")
def extractconfig(call: Call) -> str:
    call.cab.node(call.p("node"))
    volid = str(call.p("volume"))
    header = read_archive(archive_file(call, volid), volid)
    return str(header["config"])


# --- restore ----------------------------------------------------------------------------------

_RESTORE_OK = {"node", "vmid", "archive", "ostemplate", "restore", "storage", "force", "unique"}
_RESTORE_OK |= {"pool", "bwlimit", "start", "live-restore", "ha-managed"}
#: The drives PVE refuses beside `archive=` (Drive.pm is_valid_drivename: not `unusedN`).
_RESTORE_DRIVES = re.compile(r"^(?:(?:ide|sata|scsi|virtio)\d+|efidisk0|tpmstate0)$")


def _restore_overrides(call: Call, node: str, vmid: int) -> dict[str, Any]:
    """A QEMU restore's other config options (qemu-server >= 7.2): written over the
    archive's config once restored. Drives are refused (the archive brings its own), NICs
    are checked and get a MAC address when none is given (add_random_macs), as on create."""
    params = sorted(k for k in call.params if k not in _RESTORE_OK)
    for key in params:
        if _RESTORE_DRIVES.match(key):
            raise bad_request(key, "option conflicts with option 'archive'")
    privs = sorted({c.config_priv(k) for k in params})
    pool = call.p("pool")
    in_pool = bool(pool) and call.cab.acl.allowed(call.who, f"/pool/{pool}", privs)
    if privs and not in_pool:
        call.cab.acl.check(call.who, f"/vms/{vmid}", privs)
    overrides: dict[str, Any] = {}
    for key in params:
        value = call.params[key]
        if c.NET_KEY.match(key):
            c.check_bridge(call, node, key, str(value))
            value = c.set_nic(key, str(value))
        overrides[key] = value if isinstance(value, int | float) else str(value)
    return overrides


def restore(call: Call, kind: str) -> str:
    """`POST /nodes/{node}/qemu` with `archive=`, or `.../lxc` with `restore=1` and the
    archive as `ostemplate`: a guest from a backup archive of this cabinet's storages."""
    node, vmid = call.p("node"), int(call.p("vmid"))
    volid = str(call.p("archive") if kind == "qemu" else call.p("ostemplate"))
    what = "VM" if kind == "qemu" else "CT"
    emsg = f"unable to restore {what} {vmid} -"
    overrides = _restore_overrides(call, node, vmid) if kind == "qemu" else {}
    path = archive_file(call, volid)
    call.cab.acl.check(
        call.who, f"/storage/{volid.split(':')[0]}", ["Datastore.AllocateSpace", "Datastore.Audit"]
    )
    header = read_archive(path, volid)
    if header["type"] != kind:
        raise ApiError(500, f"{emsg} archive '{volid}' is not a {kind} backup")
    existing = call.state["guests"].get(str(vmid))
    if existing is not None:
        if not call.p("force") or c.guest_type(existing) != kind:
            other = "CT" if c.guest_type(existing) == "lxc" else "VM"
            raise ApiError(
                500, f"{emsg} {other} {vmid} already exists on node '{existing['node']}'"
            )
        if existing["node"] != node:  # same type (checked above): VM or CT as asked
            raise ApiError(500, f"{emsg} {what} {vmid} already exists on node '{existing['node']}'")
        if existing["config"].get("protection"):
            raise ApiError(500, f"{emsg} protection mode enabled")
        if existing["status"] == "running":
            raise ApiError(500, f"{emsg} vm is running")
        c.check_config_lock(existing)
    config = dict(header.get("values") or parse_conf(str(header["config"])))
    storage = call.p("storage")
    targets: dict[str, str] = {}
    for key in header["disks"]:
        vol, _ = c.disk_volume(str(config[key]))
        st = storage or vol.split(":", 1)[0]
        if st not in call.state["storages"]:
            st = call.state["storage_default"]  # the archive's storage is not here
        content = "images" if kind == "qemu" else "rootdir"
        if content not in call.state["storages"][st]["content"].split(","):
            raise ApiError(500, f"storage '{st}' does not support {content}")
        call.cab.acl.check(call.who, f"/storage/{st}", ["Datastore.AllocateSpace"])
        targets[key] = st
    call.cab.lock(vmid)  # a locked guest fails the call now, before anything changes
    call.cab.unlock(vmid)
    pool = call.p("pool")
    if pool and pool not in call.state["access"]["pools"]:
        raise ApiError(500, f"pool '{pool}' does not exist")
    # a forced restore replaces the guest when the task runs; until then it stays as it was
    g = existing if existing is not None else add_guest(call.state, vmid, node, {})
    g["config"]["lock"] = "create"
    if kind == "lxc":
        g["type"] = "lxc"
    if pool and vmid not in call.state["access"]["pools"][pool].setdefault("vms", []):
        call.state["access"]["pools"][pool]["vms"].append(vmid)
    start = bool(call.p("start"))
    unique = bool(call.p("unique"))

    def done(task: dict[str, Any]) -> None:
        log = task["log"]
        log.append(f"restore vma archive: {path}" if kind == "qemu" else f"extracting {path}")
        if existing is not None:
            _drop_volumes(call, existing)  # the old guest's disks go, as with PVE's force
            existing["pending"] = {}
            existing.pop("snapshots", None)
            existing.pop("parent_snapshot", None)
        new = dict(config)
        template = bool(new.get("template"))
        for key, size in header["disks"].items():
            _vol, opts = c.disk_volume(str(new[key]))
            st = targets[key]
            prefix = "base" if template else "vm"
            volid_new = c.next_disk_name(call, node, st, vmid, prefix=prefix)
            add_volume(call.state, node, st, volid_new, int(size), vmid)
            new[key] = c.disk_string(volid_new, opts)
            log.append(f"new volume ID is '{volid_new}'")
        for key, value in list(new.items()):
            if not c.DISK_KEYS.match(key) or key in header["disks"]:
                continue
            vol, opts = c.disk_volume(str(value))
            if "cloudinit" in vol:
                st = targets.get(key) or storage or vol.split(":", 1)[0]
                if st not in call.state["storages"]:
                    st = call.state["storage_default"]
                nv = f"{st}:vm-{vmid}-cloudinit"
                add_volume(call.state, node, st, nv, 4 * 1024**2, vmid)
                new[key] = c.disk_string(nv, opts)
            elif key.startswith("unused"):
                new.pop(key)
        if unique:
            if kind == "qemu":
                renew_identity(new)
            for key, value in list(new.items()):
                if c.NET_KEY.match(key):
                    new[key] = re.sub(
                        r"([0-9A-F]{2}:){5}[0-9A-F]{2}", c.random_mac(), str(value), count=1
                    )
        # the options given with the archive win over its config (restore_merge_config)
        new.update(overrides)
        g["config"] = new
        log.append(f"restored {what} {vmid} from '{volid}'")
        if start and not template:
            g["status"], g["started"] = "running", time.time()

    def undo() -> None:
        if existing is not None:
            existing["config"].pop("lock", None)
            return
        _drop_volumes(call, g)
        call.state["guests"].pop(str(vmid), None)
        c.remove_from_pools(call, vmid)

    return c.start_or_undo(
        call,
        undo,
        call.who,
        "qmrestore" if kind == "qemu" else "vzrestore",
        str(vmid),
        node,
        done,
        lock=vmid,
        on_error=undo,
    )


def _drop_volumes(call: Call, g: dict[str, Any]) -> None:
    for vol in c.guest_volumes(g):
        storage = vol.split(":", 1)[0]
        call.state["volumes"].get(f"{g['node']}/{storage}", {}).pop(vol, None)


def delete_backup(call: Call, node: str, sid: str, volid: str) -> bool:
    """Remove a backup volume's files (archive, log, notes); False when `volid` is none."""
    name = volid.partition(":")[2]
    if not name.startswith("backup/"):
        return False
    path = archive_file(call, volid)
    if path.with_name(path.name + ".protected").exists():
        raise ApiError(500, f"volume '{volid}' is protected")
    for extra in (
        path.with_name(path.name + ".notes"),
        path.with_name(re.sub(r"\.(vma|tar)(\.\w+)?$", ".log", path.name)),
    ):
        extra.unlink(missing_ok=True)
    path.unlink()
    return True
