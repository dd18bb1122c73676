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
    folders: tuple[str, ...] = ()  # folders to make where a file is expected
    links: dict[str, str] = field(default_factory=dict)  # symbolic links: name -> target


# A valid policy for the policy cases to edit
POLICY = (
    "name: broken\ninterval: 1h\nrpo: 6h\nretention:\n  peer: {keep_within: 7d}\n"
    "  local: {keep_daily: 7}\ninclude: {paths: [/etc]}\n"
)
B = "backups/broken.yaml"
# The secret reference of the valid cabinet, for the cases that change it
REF = "secret: vault:secrets/case.vault.yml#proxmox_token"


_FED = "  wireguard: {address: 10.250.0.1/24}"
# The room this cabinet lends to other communes' failed-over council VMs (lines 75-78)
_GUESTS = (
    _FED + "\n  guests:\n    quota: {vcpu: 2, ram: 2GiB, disk: 10GiB}\n"
    "    vmids: {first: 800000, last: 800099}\n    network: {bridge: vmbr0, vlan: 3999}"
)
# A container, and where it goes: after the council's VM, or after the shop's
_VZ = '"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"'
_CT = (
    "    containers:\n"
    f"      - {{name: agenda, template: {_VZ}, cores: 1, memory: 512MiB, disk: 8GiB}}\n"
)
_COUNCIL_END = "        load: 0.2\n"
_SHOP_END = "        network: {address: 10.161.1.20/24}\n"

CASES = [
    # Council report (issue 14): the optional price list and maintenance windows.
    Case(
        "billing-negative",
        [(_FED, _FED + "\nbilling: {vcpu_day: -1}")],
        [f"{C}:75:21 billing.vcpu_day: expected a price from 0 to 10000, got -1"],
    ),
    Case(
        "billing-sub-cent-decimals",
        [(_FED, _FED + '\nbilling: {ram_gib_day: "0.00001"}')],
        [f"{C}:75:24 billing.ram_gib_day: expected at most 4 decimals, got '0.00001'"],
    ),
    Case(
        "billing-word",
        [(_FED, _FED + "\nbilling: {disk_gib_day: lots}")],
        [f"{C}:75:25 billing.disk_gib_day: expected a price such as 0.05, got 'lots'"],
    ),
    Case(
        "billing-currency",
        [(_FED, _FED + "\nbilling: {currency: USD}")],
        [f"{C}:75:21 billing.currency: expected one of 'EUR', got 'USD'"],
    ),
    Case(
        "maintenance-reversed",
        [
            (
                _FED,
                _FED + "\nmaintenance:\n  - {start: 2026-11-14T09:00:00+01:00, "
                "end: 2026-11-14T07:00:00+01:00}",
            )
        ],
        [
            f"{C}:76:5 maintenance[0]: end (2026-11-14T07:00:00+01:00) is not after start "
            "(2026-11-14T09:00:00+01:00)"
        ],
    ),
    Case(
        "maintenance-no-time-zone",
        [
            (
                _FED,
                _FED + "\nmaintenance:\n  - {start: 2026-11-14T07:00:00, "
                "end: 2026-11-14T09:00:00+01:00}",
            )
        ],
        [
            f"{C}:76:13 maintenance[0].start: expected a time zone (such as +01:00 or Z) in "
            "2026-11-14T07:00:00"
        ],
    ),
    Case(
        "maintenance-word",
        [(_FED, _FED + "\nmaintenance:\n  - {start: tomorrow, end: 2026-11-14T09:00:00+01:00}")],
        [
            f"{C}:76:13 maintenance[0].start: expected a date and time such as "
            "2026-11-01T08:00:00+01:00, got 'tomorrow'"
        ],
    ),
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
            "vault:secrets/brieux.vault.yml#proxmox_token (env:KLOUDCTL_SECRET_NAME and "
            "file:secrets/PATH work too); inline secret values are not allowed in cabinet files"
        ],
    ),
    # --- issue 16: secret references stay inside the fleet's secrets folder ---------------
    # (tests/unit/test_secret_refs.py proves that nothing is opened while refusing them)
    Case(
        "secret-ref-parent",
        [(REF, "secret: file:../../../etc/shadow")],
        [
            f"{C}:35:13 proxmox.token.secret: file:../../../etc/shadow: '..' is not allowed: "
            "a secret reference names a file inside the secrets folder (secrets/)"
        ],
    ),
    Case(
        "secret-ref-parent-inside-path",
        [(REF, "secret: vault:secrets/../../x.vault.yml#proxmox_token")],
        [
            f"{C}:35:13 proxmox.token.secret: vault:secrets/../../x.vault.yml#proxmox_token: "
            "'..' is not allowed: a secret reference names a file inside the secrets folder "
            "(secrets/)"
        ],
    ),
    Case(
        "secret-ref-absolute",
        [(REF, "secret: file:/etc/shadow")],
        [
            f"{C}:35:13 proxmox.token.secret: file:/etc/shadow: an absolute path is not "
            "allowed: a secret reference names a file inside the secrets folder (secrets/)"
        ],
    ),
    Case(
        "secret-ref-symlink-out",
        [(REF, "secret: file:secrets/token")],
        [
            f"{C}:35:13 proxmox.token.secret: file:secrets/token leads through a symbolic link "
            "to /etc/passwd, outside the secrets folder (secrets/)"
        ],
        folders=("secrets",),
        links={"secrets/token": "/etc/passwd"},
    ),
    Case(
        "secret-ref-secrets-folder-is-a-link",
        [(REF, "secret: vault:secrets/passwd#proxmox_token")],
        [
            f"{C}:35:13 proxmox.token.secret: vault:secrets/passwd#proxmox_token leads through "
            "a symbolic link to /etc/passwd, outside the secrets folder (secrets/)",
            "cabinets/peer.yaml:25:55 proxmox.token.secret: vault:secrets/peer.vault.yml"
            "#proxmox_token leads through a symbolic link to /etc/peer.vault.yml, outside the "
            "secrets folder (secrets/)",
        ],
        links={"secrets": "/etc"},
    ),
    Case(
        "secret-ref-outside-folder",
        [(REF, "secret: file:cabinets/peer.yaml")],
        [
            f"{C}:35:13 proxmox.token.secret: file:cabinets/peer.yaml is outside the secrets "
            "folder (secrets/)"
        ],
    ),
    Case(
        "secret-ref-other-environment-variable",
        [(REF, "secret: env:GITHUB_TOKEN")],
        [
            f"{C}:35:13 proxmox.token.secret: env:GITHUB_TOKEN: only environment variables "
            "named KLOUDCTL_SECRET_... may hold secrets"
        ],
    ),
    Case(
        "secret-ref-escape-refused-by-plan",
        [(REF, "secret: file:/etc/shadow")],
        [
            f"{C}:35:13 proxmox.token.secret: file:/etc/shadow: an absolute path is not "
            "allowed: a secret reference names a file inside the secrets folder (secrets/)"
        ],
        command=("plan", "case"),
    ),
    Case(
        "secret-ref-escape-refused-by-tenants-plan",
        [(REF, "secret: file:../token")],
        [
            f"{C}:35:13 proxmox.token.secret: file:../token: '..' is not allowed: "
            "a secret reference names a file inside the secrets folder (secrets/)"
        ],
        command=("tenants", "plan", "case"),
    ),
    Case(
        "fleet-settings-extra-folder-root",
        [],
        [
            "fleet.yaml:2:17 secrets.extra_folder: / holds the fleet folder itself: name a "
            "folder that holds only secrets"
        ],
        files={"fleet.yaml": "secrets:\n  extra_folder: /\n"},
    ),
    Case(
        "fleet-settings-extra-folder-missing",
        [],
        [
            "fleet.yaml:2:17 secrets.extra_folder: /nonexistent/kloudici: cannot be used as a "
            "secrets folder (No such file or directory)"
        ],
        files={"fleet.yaml": "secrets:\n  extra_folder: /nonexistent/kloudici\n"},
    ),
    Case(
        "fleet-settings-extra-folder-is-a-file",
        [],
        ["fleet.yaml:1:25 secrets.extra_folder: cabinets/peer.yaml: expected a folder"],
        files={"fleet.yaml": "secrets: {extra_folder: cabinets/peer.yaml}\n"},
    ),
    Case(
        "fleet-settings-extra-folder-nul",
        [],
        ["fleet.yaml:1:25 secrets.extra_folder: a path cannot hold a NUL character"],
        files={"fleet.yaml": 'secrets: {extra_folder: "srv\\0etc"}\n'},
    ),
    Case(
        "fleet-settings-typo",
        [],
        ["fleet.yaml:2:3 secrets.extra_folders: unknown key; did you mean 'extra_folder'?"],
        files={"fleet.yaml": "secrets:\n  extra_folders: /srv\n"},
    ),
    Case(
        "fleet-settings-folder",
        [],
        ["fleet.yaml expected a file, got a folder"],
        folders=("fleet.yaml",),
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
        # the peer's copy is append-only: snapshots injected by its source could game a
        # count, so the peer prunes by age only (docs/security.md, a compromised cabinet)
        "policy-peer-retention-by-count",
        [],
        [
            f"{B}:5:3 retention.peer.keep_within: required field is missing",
            f"{B}:5:10 retention.peer.keep_last: unknown key; did you mean 'keep_within'?",
        ],
        files={B: POLICY.replace("peer: {keep_within: 7d}", "peer: {keep_last: 5}")},
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
    # --- issue 17: booleans are not numbers, every number has a range -------------------
    Case(
        "cores-boolean",
        [("cores: 16", "cores: true")],
        [f"{C}:16:14 hardware.nodes[0].cores: expected an integer, got true"],
    ),
    Case(
        "cores-over-range",
        [("cores: 16", "cores: 2000")],
        [f"{C}:16:14 hardware.nodes[0].cores: expected a number at most 1024, got 2000"],
    ),
    Case(
        "integer-huge",
        [("cores: 16", "cores: 123456789012345678901234567890")],
        [
            f"{C}:16:14 hardware.nodes[0].cores: expected a number at most 1024, "
            "got 123456789012345678901234567890"
        ],
    ),
    Case(
        "integer-too-long-to-read",
        [("cores: 16", "cores: " + "9" * 5000)],
        [f"{C}:16:14 hardware.nodes[0].cores: a number too large to read (5000 digits)"],
    ),
    Case(
        "watts-infinite",
        [("peak_watts: 120", "peak_watts: .inf")],
        [f"{C}:21:19 hardware.nodes[0].peak_watts: expected a finite number, got .inf"],
    ),
    Case(
        "load-nan",
        [("load: 0.2", "load: .nan")],
        [f"{C}:49:15 tenants[0].vms[0].load: expected a finite number, got .nan"],
    ),
    Case(
        "watts-over-range",
        [("budget_watts: 500", "budget_watts: 100000")],
        [f"{C}:23:17 power.budget_watts: expected a number at most 10000, got 100000"],
    ),
    Case(
        "population-over-range",
        [("population: 1500", "population: 200000000")],
        [f"{C}:6:15 commune.population: expected a number at most 100000000, got 200000000"],
    ),
    Case(
        "size-over-range",
        [("size: 2TiB", "size: 2PiB")],
        [f"{C}:19:31 hardware.nodes[0].disks[0].size: expected a size at most 1PiB, got '2PiB'"],
    ),
    Case(
        "size-zero",
        [("ram: 64GiB", "ram: 0GiB")],
        [f"{C}:17:12 hardware.nodes[0].ram: expected a size at least 1B, got '0GiB'"],
    ),
    Case(
        "size-thousand-digits",
        [("ram: 64GiB", "ram: " + "9" * 1000 + "GiB")],
        [
            f"{C}:17:12 hardware.nodes[0].ram: expected a size at most 1PiB, "
            "got '999999999999999999999999999999999999..."
        ],
    ),
    Case(
        "duration-over-range",
        [("rpo: 6h", "rpo: 4000d")],
        [f"{C}:71:8 replication.rpo: expected a duration at most 3650d, got '4000d'"],
    ),
    Case(
        "vlan-over-range",
        [("{first: 100, last: 199}", "{first: 100, last: 5000}")],
        [f"{C}:27:36 networks.tenant_vlans.last: expected a number at most 4094, got 5000"],
    ),
    Case(
        "port-over-range",
        [("{address: 10.250.0.1/24}", "{address: 10.250.0.1/24, port: 70000}")],
        [f"{C}:74:45 federation.wireguard.port: expected a number at most 65535, got 70000"],
    ),
    Case(
        "level-boolean",
        [("level: 2", "level: true")],
        [f"{C}:51:12 tenants[1].level: expected one of 1 or 2, got true"],
    ),
    Case(
        "number-as-boolean",
        [("load: 0.2", "load: 0.2\n        start_at_boot: 1")],
        [f"{C}:50:24 tenants[0].vms[0].start_at_boot: expected true or false, got 1"],
    ),
    Case(
        "date-that-does-not-exist",
        [("  address: Mairie de Brieux\n", "  address: Mairie de Brieux\n  room: 2001-02-30\n")],
        [f"{C}:12:9 site.room: cannot read '2001-02-30': day is out of range for month"],
    ),
    Case(
        "policy-count-boolean",
        [],
        [f"{B}:6:23 retention.local.keep_daily: expected an integer, got true"],
        files={B: POLICY.replace("keep_daily: 7", "keep_daily: true")},
    ),
    Case(
        "policy-days-over-range",
        [],
        [f"{B}:8:25 check.read_data_days: expected a number at most 365, got 366"],
        files={B: POLICY + "check: {read_data_days: 366}\n"},
    ),
    # --- issue 17: lists that are sets ---------------------------------------------------
    Case(
        "duplicate-peer",
        [("peers: [peer]", "peers: [peer, peer]")],
        [f"{C}:70:17 replication.peers[1]: duplicate peer 'peer' (also replication.peers[0])"],
    ),
    Case(
        "duplicate-domain",
        [("domains: [brieux.fr]", "domains: [brieux.fr, brieux.fr]")],
        [f"{C}:64:24 mail.domains[1]: duplicate domain 'brieux.fr' (also mail.domains[0])"],
    ),
    Case(
        "duplicate-node",
        [
            (
                "power:\n",
                "    - {name: pve1, cores: 4, ram: 8GiB, disks: [{name: d0, size: 1TiB}], "
                "idle_watts: 10, peak_watts: 20}\npower:\n",
            )
        ],
        [f"{C}:22:14 hardware.nodes[1].name: duplicate node 'pve1' (also hardware.nodes[0])"],
    ),
    Case(
        "duplicate-disk",
        [("kind: nvme}\n", "kind: nvme}\n        - {name: nvme0, size: 1TiB}\n")],
        [
            f"{C}:20:18 hardware.nodes[0].disks[1].name: duplicate disk 'nvme0' "
            "(also hardware.nodes[0].disks[0])"
        ],
    ),
    Case(
        "duplicate-tag",
        [("load: 0.2", "load: 0.2\n        tags: [web, db, web]")],
        [
            f"{C}:50:25 tenants[0].vms[0].tags[2]: duplicate tag 'web' "
            "(also tenants[0].vms[0].tags[0])"
        ],
    ),
    Case(
        "policy-duplicate-path",
        [],
        [f"{B}:7:31 include.paths[2]: duplicate path '/etc' (also include.paths[0])"],
        files={B: POLICY.replace("[/etc]", "[/etc, /var, /etc]")},
    ),
    Case(
        "policy-duplicate-command",
        [],
        [
            f"{B}:10:14 include.commands[1].name: duplicate command 'db' "
            "(also include.commands[0])",
            f"{B}:10:50 include.commands[1].filename: duplicate file name 'db.sql' "
            "(also include.commands[0])",
        ],
        files={
            B: POLICY.replace(
                "{paths: [/etc]}",
                "\n  commands:\n    - {name: db, command: [pg_dumpall], filename: db.sql}\n"
                "    - {name: db, command: [mysqldump], filename: db.sql}\n",
            )
        },
    ),
    # --- issue 17: what the loader must survive ------------------------------------------
    Case(
        "nesting-crashing-libyaml",  # was SIGSEGV (exit 139)
        [],
        [f"{C}:1:35 nesting deeper than 32 levels"],
        files={C: "x: " + "[" * 30000 + "]" * 30000 + "\n"},
    ),
    Case(
        "nesting-exhausting-recursion",  # was "maximum recursion depth exceeded" at 1:1
        [],
        [f"{C}:1:35 nesting deeper than 32 levels"],
        files={C: "x: " + "[" * 10000 + "]" * 10000 + "\n"},
    ),
    Case(
        "alias-nested-in-itself",
        [],
        [f"{C}:2:4 nesting deeper than 32 levels"],
        files={C: "name: case\nx: &loop [*loop]\n"},
    ),
    Case(
        "folder-named-like-a-cabinet",
        [],
        ["cabinets/foo.yaml expected a file, got a folder"],
        folders=("cabinets/foo.yaml",),
    ),
    Case(
        "folder-named-like-a-cabinet-shown",
        [],
        ["cabinets/foo.yaml expected a file, got a folder"],
        command=("cabinet", "show", "foo"),
        folders=("cabinets/foo.yaml",),
    ),
    Case(
        "symbolic-link-loop",
        [],
        ["cabinets/foo.yaml expected a file, got a symbolic link loop"],
        links={"cabinets/foo.yaml": "foo.yaml"},
    ),
    Case(
        "broken-symbolic-link",
        [],
        ["backups/gone.yaml expected a file, got a broken symbolic link (to nowhere.yaml)"],
        links={"backups/gone.yaml": "nowhere.yaml"},
    ),
    # Tenants with containers (issue 15): one container added to a tenant, then broken.
    Case(
        "container-template-missing",
        [(_COUNCIL_END, _COUNCIL_END + _CT.replace(f"template: {_VZ}, ", ""))],
        [f"{C}:51:9 tenants[0].containers[0].template: required field is missing"],
    ),
    Case(
        "container-template-not-vztmpl",
        [(_COUNCIL_END, _COUNCIL_END + _CT.replace(_VZ, "debian-12-cloud"))],
        [
            f"{C}:51:34 tenants[0].containers[0].template: "
            "expected a container template volume such as "
            "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst, got 'debian-12-cloud'"
        ],
    ),
    Case(
        "container-template-iso",
        [
            (
                _COUNCIL_END,
                _COUNCIL_END + _CT.replace(_VZ, '"local:iso/debian-12.8.0-amd64-netinst.iso"'),
            )
        ],
        [
            f"{C}:51:34 tenants[0].containers[0].template: "
            "expected a container template volume such as "
            "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst, got 'local:iso/debian-12.8.0-amd64-netinst.iso'"
        ],
    ),
    Case(
        "container-privileged-level-2",
        [
            ("quota: {vcpu: 2, ram: 4GiB", "quota: {vcpu: 3, ram: 4GiB"),
            (_SHOP_END, _SHOP_END + _CT.replace("}", ", unprivileged: false}")),
        ],
        [
            f"{C}:64:142 tenants[1].containers[0].unprivileged: a level-2 tenant's container "
            "must be unprivileged: root in a privileged container is root on the cabinet's host"
        ],
    ),
    Case(
        "container-memory-word",
        [(_COUNCIL_END, _COUNCIL_END + _CT.replace("512MiB", "lots"))],
        [f"{C}:51:108 tenants[0].containers[0].memory: expected a size such as 2GiB, got 'lots'"],
    ),
    Case(
        "container-memory-below-minimum",
        [(_COUNCIL_END, _COUNCIL_END + _CT.replace("512MiB", "8MiB"))],
        [
            f"{C}:51:108 tenants[0].containers[0].memory: expected at least 16MiB for a "
            "container, got 8MiB"
        ],
    ),
    Case(
        "container-disk-not-whole-gib",
        [(_COUNCIL_END, _COUNCIL_END + _CT.replace("8GiB", "1.5GiB"))],
        [f"{C}:51:122 tenants[0].containers[0].disk: expected a whole number of GiB, got 1.5GiB"],
    ),
    Case(
        "container-cores-zero",
        [(_COUNCIL_END, _COUNCIL_END + _CT.replace("cores: 1", "cores: 0"))],
        [f"{C}:51:97 tenants[0].containers[0].cores: expected a number at least 1, got 0"],
    ),
    Case(
        "container-over-quota",
        [(_SHOP_END, _SHOP_END + _CT)],
        [f"{C}:63:5 tenants[1].containers: guests use 3 vCPU, the tenant's quota is 2"],
    ),
    Case(
        "container-name-of-a-vm",
        [(_COUNCIL_END, _COUNCIL_END + _CT.replace("name: agenda", "name: shop"))],
        [
            f"{C}:59:15 tenants[1].vms[0].name: duplicate guest name 'shop' "
            "(also tenants[0].containers[0])"
        ],
    ),
    # --- where other communes' failed-over guests are plugged (federation.guests.network)
    Case(
        "guests-network-missing",
        [(_FED, _GUESTS.replace("\n    network: {bridge: vmbr0, vlan: 3999}", ""))],
        [f"{C}:75:3 federation.guests.network: required field is missing"],
    ),
    Case(
        "guests-vlan-of-a-tenant",
        [(_FED, _GUESTS.replace("vlan: 3999", "vlan: 101"))],
        [
            f"{C}:78:36 federation.guests.network.vlan: VLAN 101 is the VLAN of tenants[1]"
            " (boulangerie): other communes' guests never land on a tenant's network"
        ],
    ),
    Case(
        "guests-vlan-in-the-tenants-range",
        [(_FED, _GUESTS.replace("vlan: 3999", "vlan: 150"))],
        [
            f"{C}:78:36 federation.guests.network.vlan: VLAN 150 is inside"
            " networks.tenant_vlans 100-199, from which tenants' VLANs are allocated: other"
            " communes' guests need a VLAN outside it"
        ],
    ),
    Case(
        "guests-vlan-untagged",
        [(_FED, _GUESTS.replace("vlan: 3999", "vlan: 1"))],
        [f"{C}:78:36 federation.guests.network.vlan: expected a number at least 2, got 1"],
    ),
    Case(
        "guests-vlan-over-range",
        [(_FED, _GUESTS.replace("vlan: 3999", "vlan: 4095"))],
        [f"{C}:78:36 federation.guests.network.vlan: expected a number at most 4094, got 4095"],
    ),
    Case(
        "guests-bridge-not-a-name",
        [(_FED, _GUESTS.replace("bridge: vmbr0", "bridge: 'vmbr0;reboot'"))],
        [
            f"{C}:78:23 federation.guests.network.bridge: expected a bridge name such as"
            " vmbr0, got 'vmbr0;reboot'"
        ],
    ),
    Case(
        "guests-network-unknown-key",
        [(_FED, _GUESTS.replace("vlan: 3999", "vlan: 3999, tag: 3999"))],
        [f"{C}:78:42 federation.guests.network.tag: unknown key; expected one of: bridge, vlan"],
    ),
    Case(
        "container-unprivileged-not-bool",
        [(_COUNCIL_END, _COUNCIL_END + _CT.replace("}", ", unprivileged: 0}"))],
        [f"{C}:51:142 tenants[0].containers[0].unprivileged: expected true or false, got 0"],
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
    for name in case.folders:
        (root / name).mkdir()
    for name, target in case.links.items():
        (root / name).symlink_to(target)
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


def test_lending_guests_a_network_of_their_own_is_valid(tmp_path: Path, kloudctl) -> None:
    # the shape every guests-* case edits: valid as written, planned with the lent quota
    root = _fleet(tmp_path, Case("guests", [(_FED, _GUESTS)], []))
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
