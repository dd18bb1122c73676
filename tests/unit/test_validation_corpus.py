"""Malformed-input corpus: each case is one edit to a valid cabinet (tests/corpus/case.yaml)
or policy, and asserts the exact `file:line:col field: message` lines and exit code 2.

The CLI runs for real in a subprocess; each case also checks that nothing was written.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
C = "cabinets/case.yaml"


@dataclass
class Case:
    id: str
    edits: list[tuple[str, str]]
    expected: list[str]
    command: tuple[str, ...] = ("validate",)
    files: dict[str, str] = field(default_factory=dict)  # extra files to write, raw text


CASES = [
    Case(
        "size-word",
        [("memory: 2GiB\n        disk: 32GiB", "memory: lots\n        disk: 32GiB")],
        [f"{C}:47:17 tenants[0].vms[0].memory: expected a size such as 2GiB, got 'lots'"],
    ),
    Case(
        "size-bare-number",
        [("ram: 64GiB", "ram: 65536")],
        [f"{C}:17:12 hardware.nodes[0].ram: expected a size such as 2GiB, got 65536"],
    ),
    Case(
        "size-bad-unit",
        [("disk: 40GiB", "disk: 40GB!")],
        [f"{C}:61:15 tenants[1].vms[0].disk: expected a size such as 2GiB, got '40GB!'"],
    ),
    Case(
        "int-wrong-type",
        [("cores: 16", "cores: sixteen")],
        [f"{C}:16:14 hardware.nodes[0].cores: expected an integer, got 'sixteen'"],
    ),
    Case(
        "negative-cores",
        [("cores: 16", "cores: -2")],
        [f"{C}:16:14 hardware.nodes[0].cores: expected a number at least 1, got -2"],
    ),
    Case(
        "float-for-int",
        [("cores: 16", "cores: 1.5")],
        [f"{C}:16:14 hardware.nodes[0].cores: expected a whole number, got 1.5"],
    ),
    Case(
        "bool-wrong",
        [("load: 0.2", "load: 0.2\n        start_at_boot: maybe")],
        [f"{C}:50:24 tenants[0].vms[0].start_at_boot: expected true or false, got 'maybe'"],
    ),
    Case(
        "unknown-key-typo",
        [("memory: 2GiB\n        disk: 32GiB", "memroy: 2GiB\n        disk: 32GiB")],
        [
            f"{C}:44:9 tenants[0].vms[0].memory: required field is missing",
            f"{C}:47:9 tenants[0].vms[0].memroy: unknown key; did you mean 'memory'?",
        ],
    ),
    Case(
        "unknown-top-key",
        [("power:\n", "powr:\n")],
        [f"{C}:22:1 powr: unknown key; did you mean 'power'?"],
    ),
    Case(
        "missing-required",
        [('  insee: "61063"\n', "")],
        [f"{C}:3:1 commune.insee: required field is missing"],
    ),
    Case(
        "wrong-level",
        [("level: 2", "level: 3")],
        [f"{C}:51:12 tenants[1].level: expected one of 1 or 2, got 3"],
    ),
    Case(
        "two-councils",
        [("level: 2", "level: 1")],
        [f"{C}:36:1 tenants: expected exactly one level-1 tenant (the council), found 2"],
    ),
    Case(
        "bad-insee",
        [('insee: "61063"', "insee: 6106")],
        [f"{C}:5:10 commune.insee: expected a 5-character INSEE code such as '61063', got 6106"],
    ),
    Case(
        "bad-email",
        [("email: mairie@brieux.fr", "email: mairie.brieux.fr")],
        [
            f"{C}:9:12 commune.contact.email: expected an e-mail address such as mairie@brieux.fr, "
            "got 'mairie.brieux.fr'"
        ],
    ),
    Case(
        "bad-fingerprint",
        [('fingerprint: "3A:7F', 'fingerprint: "3A-7F')],
        [
            f"{C}:31:16 proxmox.fingerprint: expected a SHA-256 TLS fingerprint such as "
            "AB:12:...(32 bytes), got '3A-7F:21:C4:9B:0E:55:D2:81:6A:F0:3C:..."
        ],
    ),
    Case(
        "inline-secret",
        [
            (
                "secret: vault:secrets/case.vault.yml#proxmox_token",
                "secret: 5f0c2a9e-1b7d-4c1e-9a55-0d3b2c7e8f11",
            )
        ],
        [
            f"{C}:35:13 proxmox.token.secret: expected a secret reference such as "
            "vault:secrets/brieux.vault.yml#proxmox_token (env:NAME and file:PATH work too); "
            "inline secret values are not allowed in cabinet files"
        ],
    ),
    Case(
        "inline-password-key",
        [("    id: automation\n", "    id: automation\n    password: hunter2\n")],
        [
            f"{C}:35:5 proxmox.token.password: unknown key; secrets are never written in cabinet "
            "files: use a reference such as vault:secrets/<cabinet>.vault.yml#<name> in the field "
            "meant for it"
        ],
    ),
    Case(
        "duplicate-key",
        [("  budget_watts: 500\n", "  budget_watts: 500\n  budget_watts: 400\n")],
        [f"{C}:24:3 power.budget_watts: duplicate key (first defined on line 23)"],
    ),
    Case(
        "duplicate-tenant",
        [("name: boulangerie", "name: council")],
        [f"{C}:50:11 tenants[1].name: duplicate tenant 'council' (also tenants[0])"],
    ),
    Case(
        "duplicate-vm-name",
        [("name: shop", "name: web")],
        [f"{C}:57:15 tenants[1].vms[0].name: duplicate VM name 'web' (also tenants[0].vms[0])"],
    ),
    Case(
        "shared-vlan",
        [("vlan: 101", "vlan: 100")],
        [
            f"{C}:53:11 tenants[1].vlan: VLAN 100 is already used by tenants[0]",
            f"{C}:62:28 tenants[1].vms[0].network.address: 10.161.1.20/24 is not in the tenant's "
            "subnet 10.161.0.0/24",
        ],
    ),
    Case(
        "vlan-outside-range",
        [("vlan: 101", "vlan: 300")],
        [
            f"{C}:53:11 tenants[1].vlan: VLAN 300 is outside networks.tenant_vlans 100-199",
            f"{C}:62:28 tenants[1].vms[0].network.address: 10.161.1.20/24 is not in the tenant's "
            "subnet 10.161.200.0/24",
        ],
    ),
    Case(
        "overlapping-vmids",
        [("vmids: {first: 1100, last: 1199}", "vmids: {first: 1050, last: 1149}")],
        [f"{C}:54:5 tenants[1].vmids: VMID range 1050-1149 overlaps tenants[0] (1000-1099)"],
    ),
    Case(
        "reversed-vmids",
        [("vmids: {first: 1100, last: 1199}", "vmids: {first: 1199, last: 1100}")],
        [f"{C}:54:5 tenants[1].vmids: last (1100) is below first (1199)"],
    ),
    Case(
        "vmid-too-low",
        [("vmids: {first: 1100, last: 1199}", "vmids: {first: 50, last: 1199}")],
        [f"{C}:54:20 tenants[1].vmids.first: expected a number at least 100, got 50"],
    ),
    Case(
        "dangling-peer",
        [("peers: [peer]", "peers: [pear]")],
        [
            f"{C}:70:11 replication.peers[0]: no cabinet named 'pear' in cabinets/; did you mean 'peer'?"
        ],
    ),
    Case(
        "self-peer",
        [("peers: [peer]", "peers: [case]")],
        [f"{C}:70:11 replication.peers[0]: a cabinet cannot replicate to itself"],
    ),
    Case(
        "dangling-policy",
        [("policy: standard", "policy: standrd")],
        [
            f"{C}:69:11 replication.policy: no backup policy 'standrd' in backups/; did you mean 'standard'?"
        ],
    ),
    Case(
        "rpo-below-interval",
        [("rpo: 6h", "rpo: 30m")],
        [f"{C}:71:8 replication.rpo: rpo 30m is shorter than policy 'standard' interval 1h"],
    ),
    Case(
        "bad-duration",
        [("rpo: 6h", "rpo: six hours")],
        [f"{C}:71:8 replication.rpo: expected a duration such as 30m, 6h or 7d, got 'six hours'"],
    ),
    Case(
        "quota-exceeded",
        [
            (
                "cores: 2\n        memory: 2GiB\n        disk: 40GiB",
                "cores: 4\n        memory: 2GiB\n        disk: 40GiB",
            )
        ],
        [f"{C}:56:5 tenants[1].vms: VMs use 4 vCPU, the tenant's quota is 2"],
    ),
    Case(
        "address-outside-subnet",
        [("address: 10.161.1.20/24", "address: 10.161.7.20/24")],
        [
            f"{C}:62:28 tenants[1].vms[0].network.address: 10.161.7.20/24 is not in the tenant's "
            "subnet 10.161.1.0/24"
        ],
    ),
    Case(
        "address-is-gateway",
        [("address: 10.161.1.20/24", "address: 10.161.1.1/24")],
        [
            f"{C}:62:28 tenants[1].vms[0].network.address: 10.161.1.1 is reserved (network, "
            "broadcast or gateway)"
        ],
    ),
    Case(
        "bad-address",
        [("address: 10.161.1.20/24", "address: 10.161.1.300/24")],
        [
            f"{C}:62:28 tenants[1].vms[0].network.address: expected 'auto' or an IPv4 "
            "address/prefix such as 10.20.1.10/24, got '10.161.1.300/24'"
        ],
    ),
    Case(
        "network-host-bits",
        [("tenant_supernet: 10.161.0.0/16", "tenant_supernet: 10.161.0.1/16")],
        [
            f"{C}:28:20 networks.tenant_supernet: expected a network address, got '10.161.0.1/16' "
            "(host bits set)"
        ],
    ),
    Case(
        "host-outside-management",
        [("host_address: 10.61.63.2", "host_address: 10.61.64.2")],
        [f"{C}:26:75 networks.management.host_address: 10.61.64.2 is outside 10.61.63.0/24"],
    ),
    Case(
        "peak-below-idle",
        [("peak_watts: 120", "peak_watts: 20")],
        [f"{C}:15:7 hardware.nodes[0]: peak_watts (20) is below idle_watts (40)"],
    ),
    Case(
        "domain-taken",
        [("domains: [brieux.fr]", "domains: [voisine.fr]")],
        [
            "cabinets/peer.yaml:32:13 mail.domains[0]: domain voisine.fr is already served by "
            "cabinet 'case'"
        ],
    ),
    Case(
        "name-not-file",
        [("name: case\n", "name: other\n")],
        [f"{C}:2:7 name: must match the file name 'case'"],
    ),
    Case(
        "invalid-yaml-indent",
        [("    level: 2\n", "   level: 2\n")],
        [f"{C}:51:4 invalid YAML: did not find expected '-' indicator"],
    ),
    Case(
        "invalid-yaml-tab",
        [("  budget_watts: 500", "\tbudget_watts: 500")],
        [f"{C}:23:1 invalid YAML: found character that cannot start any token"],
    ),
    Case(
        "not-a-mapping",
        [],
        [f"{C}:1:1 expected a mapping of keys to values, got a list"],
        files={C: "- just\n- a list\n"},
    ),
    Case(
        "empty-file",
        [],
        [f"{C}:1:1 expected a mapping of keys to values, got an empty file"],
        files={C: "# nothing here\n"},
    ),
    Case(
        "list-expected",
        [("peers: [peer]", "peers: peer")],
        [f"{C}:70:10 replication.peers: expected a list, got 'peer'"],
    ),
    Case(
        "policy-bad-retention",
        [],
        [
            "backups/broken.yaml:5:23 retention.peer.keep_within: expected a duration such as 30m, "
            "6h or 7d, got 'forever'"
        ],
        files={
            "backups/broken.yaml": "name: broken\ninterval: 1h\nrpo: 6h\nretention:\n"
            "  peer: {keep_within: forever}\n  local: {keep_daily: 7}\n"
            "include: {paths: [/etc]}\n"
        },
    ),
    Case(
        "policy-empty-include",
        [],
        ["backups/broken.yaml:6:1 include: expected at least one of paths or commands"],
        files={
            "backups/broken.yaml": "name: broken\ninterval: 1h\nrpo: 6h\nretention:\n"
            "  {peer: {keep_within: 7d}, local: {keep_daily: 7}}\ninclude: {}\n"
        },
    ),
    Case(
        "power-over-budget",
        [("budget_watts: 500", "budget_watts: 60")],
        [
            f"{C}:23:17 power.budget_watts: plan refused: power: estimated draw 64 W exceeds the 60 W budget"
        ],
        command=("plan", "case", "--offline"),
    ),
    Case(
        "capacity-over",
        [
            (
                "quota: {vcpu: 8, ram: 16GiB, disk: 500GiB}",
                "quota: {vcpu: 8, ram: 64GiB, disk: 500GiB}",
            )
        ],
        [
            f"{C}:36:1 tenants: plan refused: RAM: tenants' quotas reserve 68GiB, the nodes offer "
            "60GiB (64GiB physical, after overcommit and host reserve)"
        ],
        command=("plan", "case", "--offline"),
    ),
]


def _fleet(tmp_path: Path, case: Case) -> Path:
    root = tmp_path / "fleet"
    shutil.copytree(CORPUS / "fleet", root)
    text = (CORPUS / "case.yaml").read_text()
    for old, new in case.edits:
        assert text.count(old) >= 1, f"edit {old!r} does not apply"
        text = text.replace(old, new, 1)
    (root / C).write_text(text)
    for name, content in case.files.items():
        (root / name).write_text(content)
    return root


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


def test_base_case_is_valid(tmp_path: Path, kloudctl) -> None:
    root = _fleet(tmp_path, Case("valid", [], []))
    result = kloudctl("--fleet", str(root), "validate")
    assert result.returncode == 0, result.stderr
    result = kloudctl("--fleet", str(root), "plan", "case", "--offline")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_input(tmp_path: Path, kloudctl, case: Case) -> None:
    root = _fleet(tmp_path, case)
    before = _snapshot(root)
    result = kloudctl("--fleet", str(root), *case.command)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line.strip() for line in result.stderr.splitlines()]
    lines = [
        line.removeprefix("error: ") for line in lines if line and "problems found" not in line
    ]
    assert lines == case.expected
    assert _snapshot(root) == before, "a failed validation must change nothing"
