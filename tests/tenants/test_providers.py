"""Provider logic that needs no Proxmox: checks, diffs, parsing (pure functions)."""

from __future__ import annotations

from kloudctl.tenants.providers import AclProvider, GuestProvider, TokenProvider
from kloudctl.tenants.providers.guest import boot_disk, parse_disk_size, size_arg

GIB = 1024**3
API = {
    "endpoint": "https://127.0.0.1:8006",
    "fingerprint": "AA",
    "token_id": "a@pve!t",
    "secret": "s",
}


def guest(**over):
    props = {
        "api": API,
        "name": "web",
        "template": "debian-12-cloud",
        "cores": 2,
        "memory": 2 * GIB,
        "disk": 32 * GIB,
        "pool": "council",
        "vmid_first": 1000,
        "vmid_last": 1099,
        "vmid_hint": 1000,
        "bridge": "vmbr0",
        "vlan": 100,
        "address": "10.161.0.10/24",
        "gateway": "10.161.0.1",
        "vmid": None,
    }
    props.update(over)
    return props


def test_disk_shrink_is_refused_with_both_sizes():
    result = GuestProvider().check(guest(), guest(disk=16 * GIB))
    assert len(result.failures) == 1
    failure = result.failures[0]
    assert failure.property == "disk"
    assert "cannot shrink from 32GiB to 16GiB" in failure.reason


def test_disk_growth_passes_check():
    assert GuestProvider().check(guest(), guest(disk=64 * GIB)).failures == []


def test_memory_change_is_in_place():
    olds = {**guest(), "vmid": 1000}
    diff = GuestProvider().diff("1000", olds, guest(memory=4 * GIB))
    assert diff.changes and not diff.replaces


def test_template_change_replaces():
    olds = {**guest(), "vmid": 1000}
    diff = GuestProvider().diff("1000", olds, guest(template="debian-13-cloud"))
    assert diff.changes and diff.replaces == ["template"]


def test_vmid_range_that_no_longer_holds_the_guest_replaces():
    olds = {**guest(), "vmid": 1000}
    diff = GuestProvider().diff(
        "1000", olds, guest(vmid_first=2000, vmid_last=2099, vmid_hint=2000)
    )
    assert "vmid_first" in diff.replaces


def test_unchanged_guest_has_no_diff_and_computed_outputs_are_ignored():
    olds = {**guest(), "vmid": 1004}
    assert not GuestProvider().diff("1004", olds, guest()).changes


def test_connection_change_updates_without_replacing():
    olds = {**guest(), "vmid": 1000}
    news = guest(api={**API, "endpoint": "https://127.0.0.1:9006"})
    diff = GuestProvider().diff("1000", olds, news)
    assert diff.changes and not diff.replaces


def test_token_secret_output_does_not_cause_a_diff():
    inputs = {"api": API, "userid": "t@pve", "tokenid": "kloudctl", "privsep": True, "value": None}
    olds = {**inputs, "value": "secret-value", "full_tokenid": "t@pve!kloudctl"}
    assert not TokenProvider().diff("t@pve!kloudctl", olds, inputs).changes


def test_acl_change_replaces():
    acl = {"api": API, "path": "/pool/a", "kind": "group", "ugid": "tenant-a", "role": "PVEVMAdmin"}
    diff = AclProvider().diff("x", acl, {**acl, "path": "/pool/b"})
    assert diff.replaces == ["path"]


def test_disk_parsing_and_sizes():
    config = {
        "ide2": "local-lvm:vm-1000-cloudinit,media=cdrom",
        "scsi0": "local-lvm:vm-1000-disk-0,size=2G",
    }
    assert boot_disk(config) == ("scsi0", "local-lvm:vm-1000-disk-0,size=2G")
    assert parse_disk_size("local-lvm:vm-1-disk-0,iothread=1,size=32G") == 32 * GIB
    assert parse_disk_size("x,size=512M") == 512 * 1024**2
    assert size_arg(32 * GIB) == "32G"
    assert size_arg(3 * 1024**2) == "3M"
