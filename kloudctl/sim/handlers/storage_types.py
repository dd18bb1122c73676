"""The storage types of PVE 9.1 and the rules of their configuration (storage.cfg).

Each type is one of PVE's storage plugins (`PVE/Storage/*Plugin.pm`); what this table holds
is what those plugins declare, so that creating, reading, updating and deleting a storage's
configuration behaves as on PVE without the storage's backend existing (PVE itself does not
contact the backend to write storage.cfg):

- `content`: the content types the plugin supports, and those it gets when none are given
  (`plugindata` content: `[supported, default]`);
- `formats`: the image formats it supports (`plugindata` format), if any;
- `options`: every option the type accepts and how (`options`): `fixed` is required on
  create and can never change, `required` is required on create, `optional` is optional;
- `sensitive`: options PVE keeps out of storage.cfg (in /etc/pve/priv/storage), which are
  never stored or answered here either;
- `shared`: types PVE always marks shared (`@SHARED_STORAGE`);
- `mounted`: types whose `path` PVE sets to `/mnt/pve/<storage>` on create.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FIXED, SET_ONCE, REQUIRED, OPTIONAL = "fixed", "set-once", "required", "optional"


@dataclass(frozen=True)
class StorageType:
    content: frozenset[str]
    default_content: frozenset[str]
    options: dict[str, str]
    formats: frozenset[str] = frozenset()
    sensitive: frozenset[str] = frozenset()
    shared: bool = False
    mounted: bool = False
    # options every type takes (nodes, disable, content) are added below
    common: tuple[str, ...] = field(default=("nodes", "disable", "content"), repr=False)

    def accepts(self, option: str) -> bool:
        return option in self.common or option in self.options

    def required(self) -> list[str]:
        return sorted(k for k, how in self.options.items() if how in (FIXED, REQUIRED))

    def fixed(self) -> set[str]:
        return {k for k, how in self.options.items() if how in (FIXED, SET_ONCE)}


def _opt(*names: str) -> dict[str, str]:
    return dict.fromkeys(names, OPTIONAL)


_BACKUPS = _opt("prune-backups", "max-protected-backups", "maxfiles")
_DIR_LIKE = _opt(
    "content-dirs",
    "format",
    "mkdir",
    "create-base-path",
    "create-subdirs",
    "bwlimit",
    "preallocation",
)
_IMAGE_FORMATS = frozenset({"raw", "qcow2", "vmdk"})

TYPES: dict[str, StorageType] = {
    "dir": StorageType(
        content=frozenset(
            {"images", "rootdir", "vztmpl", "iso", "backup", "snippets", "none", "import"}
        ),
        default_content=frozenset({"images", "rootdir"}),
        formats=_IMAGE_FORMATS | {"subvol"},
        options={
            "path": FIXED,
            **_opt("shared", "is_mountpoint", "snapshot-as-volume-chain"),
            **_BACKUPS,
            **_DIR_LIKE,
        },
    ),
    "btrfs": StorageType(
        content=frozenset(
            {"images", "rootdir", "vztmpl", "iso", "backup", "snippets", "none", "import"}
        ),
        default_content=frozenset({"images", "rootdir"}),
        formats=frozenset({"raw", "subvol"}),
        options={
            "path": FIXED,
            **_opt("shared", "is_mountpoint", "nocow", "format", "mkdir", "create-base-path"),
            **_opt("create-subdirs", "preallocation"),
            **_BACKUPS,
        },
    ),
    "nfs": StorageType(
        content=frozenset({"images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import"}),
        default_content=frozenset({"images"}),
        formats=_IMAGE_FORMATS,
        options={
            "path": FIXED,
            "server": FIXED,
            "export": FIXED,
            **_opt("options", "snapshot-as-volume-chain"),
            **_BACKUPS,
            **_DIR_LIKE,
        },
        shared=True,
        mounted=True,
    ),
    "cifs": StorageType(
        content=frozenset({"images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import"}),
        default_content=frozenset({"images"}),
        formats=_IMAGE_FORMATS,
        options={
            "path": FIXED,
            "server": FIXED,
            "share": FIXED,
            **_opt("subdir", "username", "password", "domain", "smbversion", "options"),
            **_opt("snapshot-as-volume-chain"),
            **_BACKUPS,
            **_DIR_LIKE,
        },
        sensitive=frozenset({"password"}),
        shared=True,
        mounted=True,
    ),
    "cephfs": StorageType(
        content=frozenset({"vztmpl", "iso", "backup", "snippets", "import"}),
        default_content=frozenset({"backup"}),
        options={
            "path": FIXED,
            **_opt("monhost", "subdir", "options", "username", "fuse", "keyring", "fs-name"),
            **_opt("content-dirs", "format", "mkdir", "create-base-path", "create-subdirs"),
            **_opt("bwlimit"),
            **_BACKUPS,
        },
        sensitive=frozenset({"keyring"}),
        shared=True,
        mounted=True,
    ),
    "lvm": StorageType(
        content=frozenset({"images", "rootdir", "none"}),
        default_content=frozenset({"images", "rootdir"}),
        options={
            "vgname": FIXED,
            "base": SET_ONCE,
            **_opt("shared", "saferemove", "saferemove_throughput", "saferemove-stepsize"),
            **_opt("tagged_only", "bwlimit", "snapshot-as-volume-chain"),
        },
    ),
    "lvmthin": StorageType(
        content=frozenset({"images", "rootdir"}),
        default_content=frozenset({"images", "rootdir"}),
        options={"thinpool": FIXED, "vgname": FIXED, **_opt("bwlimit")},
    ),
    "zfspool": StorageType(
        content=frozenset({"images", "rootdir"}),
        default_content=frozenset({"images", "rootdir"}),
        formats=frozenset({"raw", "subvol"}),
        options={"pool": FIXED, **_opt("blocksize", "sparse", "mountpoint", "bwlimit")},
    ),
    "zfs": StorageType(
        content=frozenset({"images"}),
        default_content=frozenset({"images"}),
        options={
            "portal": FIXED,
            "target": FIXED,
            "pool": FIXED,
            "blocksize": FIXED,
            "iscsiprovider": FIXED,
            **_opt("nowritecache", "sparse", "comstar_hg", "comstar_tg", "lio_tpg"),
            **_opt("bwlimit", "zfs-base-path"),
        },
        shared=True,
    ),
    "iscsi": StorageType(
        content=frozenset({"images", "none"}),
        default_content=frozenset({"images"}),
        options={"portal": FIXED, "target": FIXED, **_opt("bwlimit")},
        shared=True,
    ),
    "iscsidirect": StorageType(
        content=frozenset({"images", "none"}),
        default_content=frozenset({"images"}),
        options={"portal": FIXED, "target": FIXED, **_opt("bwlimit")},
        shared=True,
    ),
    "rbd": StorageType(
        content=frozenset({"images", "rootdir"}),
        default_content=frozenset({"images"}),
        options=_opt(
            "monhost",
            "pool",
            "data-pool",
            "namespace",
            "username",
            "krbd",
            "keyring",
            "bwlimit",
        ),
        sensitive=frozenset({"keyring"}),
        shared=True,
    ),
    "pbs": StorageType(
        content=frozenset({"backup", "none"}),
        default_content=frozenset({"backup"}),
        options={
            "server": FIXED,
            "datastore": FIXED,
            **_opt("namespace", "port", "username", "password", "encryption-key"),
            **_opt("master-pubkey", "fingerprint", "prune-backups", "max-protected-backups"),
        },
        sensitive=frozenset({"password", "encryption-key", "master-pubkey"}),
        shared=True,
    ),
    "esxi": StorageType(
        content=frozenset({"import"}),
        default_content=frozenset({"import"}),
        options={
            "server": REQUIRED,
            "username": REQUIRED,
            **_opt("shared", "password", "skip-cert-verification", "port"),
        },
        sensitive=frozenset({"password"}),
    ),
}
