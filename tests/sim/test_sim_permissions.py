"""Permissions as PVE evaluates them: a permission matrix for two level-2 tenants, and the ACL
resolution rules (user over group, deeper over inherited, NoAccess, propagation, pools)."""

from __future__ import annotations

import pytest
from simhelpers import error_of, ok, root_api, token_api


@pytest.fixture(scope="module")
def tenants(pve_sim):
    """Two tenants as kloudctl sets them up: a pool, a group, a user, a privsep token each."""
    ep = pve_sim["brieux"]
    root = root_api(ep)
    tokens = {}
    for name, vmid in (("leroy", 1101), ("fetes", 1102)):
        root.pools.post(poolid=name)
        root.access.groups.post(groupid=f"{name}-admins")
        root.access.users.post(userid=f"{name}@pve", groups=f"{name}-admins")
        root.access.acl.put(path=f"/pool/{name}", roles="PVEVMAdmin", groups=f"{name}-admins")
        root.access.acl.put(
            path="/sdn/zones/localnetwork/vmbr0", roles="PVESDNUser", groups=f"{name}-admins"
        )
        root.access.acl.put(
            path="/storage/local-lvm", roles="PVEDatastoreUser", groups=f"{name}-admins"
        )
        tok = root.access.users(f"{name}@pve").token("kloudctl").post(privsep=1)
        for path in (f"/pool/{name}", "/sdn/zones/localnetwork/vmbr0", "/storage/local-lvm"):
            role = {"pool": "PVEVMAdmin", "sdn": "PVESDNUser", "storage": "PVEDatastoreUser"}[
                path.split("/")[1]
            ]
            root.access.acl.put(path=path, roles=role, tokens=f"{name}@pve!kloudctl")
        ok(root, root.nodes("pve1").qemu(9000).clone.post(newid=vmid, name=f"{name}-vm", pool=name))
        tokens[name] = token_api(ep, f"{name}@pve", "kloudctl", tok["value"])
    return tokens


def test_tenant_reads_and_runs_its_own_guest(tenants, pve_sim):
    leroy = tenants["leroy"]
    assert leroy.nodes("pve1").qemu(1101).config.get()["name"] == "leroy-vm"
    vms = leroy.cluster.resources.get(type="vm")
    assert [v["vmid"] for v in vms] == [1101]
    ok(leroy, leroy.nodes("pve1").qemu(1101).status.start.post())
    ok(leroy, leroy.nodes("pve1").qemu(1101).status.stop.post())
    # allocation inside its pool works (VM.Allocate on /pool/leroy)
    ok(
        leroy,
        leroy.nodes("pve1").qemu.post(
            vmid=1103, pool="leroy", memory="1024", net0="virtio,bridge=vmbr0,tag=101"
        ),
    )
    assert 1103 in [v["vmid"] for v in leroy.cluster.resources.get(type="vm")]


@pytest.mark.parametrize(
    "action, expected",
    [
        (
            lambda t: t.nodes("pve1").qemu(1102).config.get(),
            "Permission check failed (/vms/1102, VM.Audit)",
        ),
        (
            lambda t: t.nodes("pve1").qemu(1102).status.current.get(),
            "Permission check failed (/vms/1102, VM.Audit)",
        ),
        (
            lambda t: t.nodes("pve1").qemu(1102).status.start.post(),
            "Permission check failed (/vms/1102, VM.PowerMgmt)",
        ),
        (
            lambda t: t.nodes("pve1").qemu(1102).config.put(memory="4096"),
            "Permission check failed (/vms/1102",
        ),
        (
            lambda t: t.nodes("pve1").qemu(1102).delete(),
            "Permission check failed (/vms/1102, VM.Allocate)",
        ),
        (
            lambda t: t.nodes("pve1").qemu(9000).clone.post(newid=1150, pool="fetes"),
            "Permission check failed (/vms/9000, VM.Clone)",
        ),
        (
            lambda t: t.nodes("pve1").qemu.post(vmid=1151, pool="fetes"),
            "Permission check failed (/pool/fetes, VM.Allocate)",
        ),
        (lambda t: t.pools("fetes").get(), "Permission check failed (/pool/fetes, Pool.Audit)"),
        (
            lambda t: t.access.acl.put(
                path="/pool/leroy", roles="Administrator", tokens="leroy@pve!kloudctl"
            ),
            "Permission check failed (/pool/leroy, Permissions.Modify|Pool.Allocate)",
        ),
        (
            lambda t: t.access.acl.put(path="/pool/fetes", roles="NoAccess", groups="fetes-admins"),
            "Permission check failed (/pool/fetes, Permissions.Modify|Pool.Allocate)",
        ),
        (
            lambda t: t.access.users.post(userid="evil@pve"),
            "Permission check failed (/access/realm/pve, Realm.AllocateUser)",
        ),
        (
            lambda t: t.nodes("pve1").network.post(iface="vmbr9", type="bridge"),
            "Permission check failed (/nodes/pve1, Sys.Modify)",
        ),
    ],
)
def test_tenant_cannot_touch_the_other_tenant_or_acls(tenants, action, expected):
    exc = error_of(action, tenants["leroy"])
    assert exc.status_code == 403, exc
    assert expected in str(exc)


def test_other_tenant_guest_is_invisible(tenants):
    fetes = tenants["fetes"]
    assert [v["vmid"] for v in fetes.cluster.resources.get(type="vm")] == [1102]
    # PVEVMAdmin has no Pool.Audit (that is PVEPoolUser's), exactly as on PVE
    assert fetes.pools.get() == []


def _privs(root, user, path):
    return set(root.access.permissions.get(userid=user, path=path).get(path, {}))


def test_acl_resolution_rules(pve_sim):
    root = root_api(pve_sim["brieux"])
    root.access.groups.post(groupid="ops")
    root.access.users.post(userid="carol@pve", groups="ops")
    # group rule on /vms, user rule on the same path wins
    root.access.acl.put(path="/vms", roles="PVEVMAdmin", groups="ops")
    assert "VM.Allocate" in _privs(root, "carol@pve", "/vms/9000")
    root.access.acl.put(path="/vms", roles="PVEAuditor", users="carol@pve")
    assert _privs(root, "carol@pve", "/vms/9000") >= {"VM.Audit"}
    assert "VM.Allocate" not in _privs(root, "carol@pve", "/vms/9000")
    # a deeper path replaces what is inherited
    root.access.acl.put(path="/vms/9000", roles="PVEVMUser", users="carol@pve")
    assert "VM.PowerMgmt" in _privs(root, "carol@pve", "/vms/9000")
    assert "VM.Audit" in _privs(root, "carol@pve", "/vms/9000")
    # NoAccess cancels
    root.access.acl.put(path="/vms/9000", roles="NoAccess", users="carol@pve")
    assert _privs(root, "carol@pve", "/vms/9000") == set()
    # a rule that does not propagate applies to its own level only
    root.access.acl.put(path="/storage", roles="PVEDatastoreAdmin", users="carol@pve", propagate=0)
    assert "Datastore.Allocate" in _privs(root, "carol@pve", "/storage")
    assert "Datastore.Allocate" not in _privs(root, "carol@pve", "/storage/local")
    # custom roles, and pool ACLs inherited by pool members
    root.access.roles.post(roleid="Watcher", privs="VM.Audit,VM.Console")
    root.pools.post(poolid="watched")
    root.access.users.post(userid="dave@pve")
    root.access.acl.put(path="/pool/watched", roles="Watcher", users="dave@pve")
    assert _privs(root, "dave@pve", "/vms/9000") == set()
    root.pools("watched").put(vms="9000")
    assert _privs(root, "dave@pve", "/vms/9000") == {"VM.Audit", "VM.Console"}
    root.pools("watched").put(vms="9000", delete=1)
    # built-in roles are PVE's: reserved names, fixed privileges
    exc = error_of(root.access.roles.post, roleid="PVEMine", privs="VM.Audit")
    assert "cannot use role ID starting with 'PVE'" in str(exc)
    roles = {r["roleid"]: set(r["privs"].split(",")) for r in root.access.roles.get()}
    assert roles["PVEVMUser"] == {
        "VM.Audit",
        "VM.GuestAgent.Audit",
        "VM.Backup",
        "VM.Config.CDROM",
        "VM.Config.Cloudinit",
        "VM.Console",
        "VM.PowerMgmt",
    }
    assert roles["PVETemplateUser"] == {"VM.Audit", "VM.Clone"}
    assert "Sys.Modify" not in roles["PVEAdmin"] and "Sys.Modify" in roles["Administrator"]
    assert roles["NoAccess"] == {""}


def test_builtin_privileges_are_exactly_those_of_the_schema():
    """The privilege groups come from PVE::AccessControl; the schema lists PVE 9.1's privileges
    (the properties of GET /access/roles/{roleid}): both must agree."""
    from kloudctl.sim.perms import VALID_PRIVS
    from kloudctl.sim.schema import load_schema

    returns = load_schema().methods[("GET", "/access/roles/{roleid}")].returns
    assert set(returns["properties"]) == VALID_PRIVS
