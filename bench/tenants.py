"""Benchmark: a cabinet of 30 guests applied and planned by kloudctl (Pulumi) vs. the same
work done by an Ansible playbook of `community.proxmox` modules, on the same simulator.

Both sides reach the simulator over HTTPS with API tokens and do the same objects: 3
tenants (pool, group, user, ACL) and 30 guests cloned from `debian-12-cloud`, then sized
and configured with cloud-init. Each side has its own cabinet of the same simulator so
both create from scratch. Printed: wall times, and the ratios
  apply:  playbook first run / kloudctl apply
  no-op:  playbook second run / kloudctl plan   (target: >= 3)

Run: .venv/bin/python bench/tenants.py   (needs the Pulumi CLI from `make tools`)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from community_proxmox import MODULE_DEFAULTS, ansible_playbook, token_vars, write_private_json  # noqa: E402

from kloudctl.tenants.engine import TenantsStack  # noqa: E402
from kloudctl.tenants.simtargets import bootstrap_target  # noqa: E402
from kloudctl.testbed.simfleet import start_sim_fleet  # noqa: E402

TENANTS = 3
GUESTS_PER_TENANT = 10
BASE = (REPO / "cabinets" / "brieux.yaml").read_text()


def cabinet_yaml(name: str, index: int) -> str:
    """brieux's hardware and networks, renumbered so two bench cabinets can coexist."""
    head = BASE[: BASE.index("tenants:")].replace("name: brieux", f"name: {name}", 1)
    for old, new in (
        ("203.0.113.", f"203.0.{113 + index}."),
        ("10.61.63.", f"10.61.{70 + index}."),
        ('insee: "61063"', f'insee: "6107{index}"'),
    ):
        head = head.replace(old, new)
    lines = ["tenants:"]
    for t in range(TENANTS):
        lines += [
            f"  - name: {'council' if t == 0 else f'bench-{t}'}",
            f"    level: {1 if t == 0 else 2}",
            f"    display_name: Bench tenant {t}",
            "    quota: {vcpu: 10, ram: 12GiB, disk: 120GiB}",
            "    vms:",
        ]
        for g in range(GUESTS_PER_TENANT):
            lines.append(
                f"      - {{name: b{t}-vm{g}, template: debian-12-cloud, cores: 1, "
                "memory: 1GiB, disk: 10GiB, load: 0.05}"
            )
    return head + "\n".join(lines) + "\n"


PLAYBOOK = (
    """
- name: Tenants of a cabinet with community.proxmox
  hosts: localhost
  connection: local
  gather_facts: false
"""
    + MODULE_DEFAULTS
    + """\
  tasks:
    - name: Create the tenant pools
      community.proxmox.proxmox_pool:
        poolid: "{{ item.name }}"
        comment: "tenant {{ item.name }}"
      loop: "{{ tenants }}"
    - name: Create the tenant groups
      community.proxmox.proxmox_group:
        name: "tenant-{{ item.name }}"
      loop: "{{ tenants }}"
    - name: Create the tenant users
      community.proxmox.proxmox_user:
        userid: "{{ item.name }}@pve"
        groups: ["tenant-{{ item.name }}"]
      loop: "{{ tenants }}"
    - name: Give each tenant PVEVMAdmin on its pool
      community.proxmox.proxmox_access_acl:
        path: "/pool/{{ item.name }}"
        type: group
        ugid: "tenant-{{ item.name }}"
        roleid: PVEVMAdmin
        state: present
      loop: "{{ tenants }}"
    - name: Clone the guests from the template
      community.proxmox.proxmox_kvm:
        node: "{{ pve_node }}"
        clone: debian-12-cloud
        name: "{{ item.name }}"
        newid: "{{ item.vmid }}"
        pool: "{{ item.pool }}"
        full: true
        timeout: 300
      loop: "{{ guests }}"
    - name: Size and configure the guests
      community.proxmox.proxmox_kvm:
        node: "{{ pve_node }}"
        vmid: "{{ item.vmid }}"
        cores: 1
        memory: 1024
        ciuser: debian
        ipconfig:
          ipconfig0: "ip={{ item.address }},gw={{ item.gateway }}"
        onboot: true
        update: true
        update_unsafe: true
      loop: "{{ guests }}"
    - name: Grow the guests' disks
      community.proxmox.proxmox_disk:
        vmid: "{{ item.vmid }}"
        disk: scsi0
        size: 10G
        state: resized
      loop: "{{ guests }}"
"""
)


def run_playbook(workdir: Path, sim, cabinet: str) -> tuple[float, str]:
    from kloudctl.capacity import plan_cabinet

    target = sim.targets[cabinet]
    plan = plan_cabinet(sim.fleet().cabinet(cabinet))
    ep = sim.endpoints[cabinet]
    variables = {
        **token_vars(ep.host, ep.port, target),
        "pve_node": ep.nodes[0],
        "ansible_python_interpreter": sys.executable,  # the venv: proxmoxer is there
        "tenants": [{"name": t.name} for t in plan.tenants],
        "guests": [
            {
                "name": v.name,
                "vmid": v.vmid,
                "pool": t.name,
                "address": str(v.address),
                "gateway": str(t.gateway),
            }
            for t in plan.tenants
            for v in t.vms
        ],
    }
    vars_file = workdir / "vars.json"
    write_private_json(vars_file, variables)
    playbook = workdir / "tenants.yml"
    playbook.write_text(PLAYBOOK)
    env = {
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
    }
    seconds, stdout = ansible_playbook(
        playbook, ["-e", f"@{vars_file}", "-i", "localhost,"], env, 15
    )
    recap = next((ln for ln in stdout.splitlines() if "changed=" in ln), "")
    return seconds, recap.strip()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="kloudctl-bench-tenants-") as tmp:
        workdir = Path(tmp)
        sim = start_sim_fleet(
            workdir,
            task_seconds=0.05,
            cabinets={
                "bench-pulumi": cabinet_yaml("bench-pulumi", 0),
                "bench-ansible": cabinet_yaml("bench-ansible", 1),
            },
            bootstrap=bootstrap_target,
        )
        try:
            stack = TenantsStack(sim.fleet(), sim.root, "bench-pulumi")
            t0 = time.monotonic()
            applied = stack.run("apply")
            pulumi_apply = time.monotonic() - t0
            t0 = time.monotonic()
            planned = TenantsStack(sim.fleet(), sim.root, "bench-pulumi").run("plan")
            pulumi_plan = time.monotonic() - t0
            assert planned.changed == 0, planned.changes
            ansible_apply, recap1 = run_playbook(workdir, sim, "bench-ansible")
            ansible_noop, recap2 = run_playbook(workdir, sim, "bench-ansible")
        finally:
            sim.stop()
    guests = TENANTS * GUESTS_PER_TENANT
    print(f"tenants bench: {TENANTS} tenants, {guests} guests, simulator task time 0.05 s")
    print(f"  kloudctl apply (Pulumi)        {pulumi_apply:7.1f} s   {applied.changes}")
    print(f"  kloudctl plan, no-op (Pulumi)  {pulumi_plan:7.1f} s   {planned.changes}")
    print(f"  playbook first run             {ansible_apply:7.1f} s   {recap1}")
    print(f"  playbook second run (no-op)    {ansible_noop:7.1f} s   {recap2}")
    print(f"ratio apply (playbook / kloudctl): {ansible_apply / pulumi_apply:.2f}x")
    print(
        f"ratio no-op (playbook / kloudctl plan): {ansible_noop / pulumi_plan:.2f}x (target >= 3)"
    )


if __name__ == "__main__":
    main()
