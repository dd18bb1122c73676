"""The Tenant and Guest components under Pulumi's mocks (no engine, no Proxmox).

Mocked: the Pulumi engine's resource monitor (pulumi.runtime.set_mocks). Real: the
components, the program that builds them from the example fleet, the capacity plan.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest

ROOT = Path(__file__).resolve().parents[2]


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.created: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.created.append(args)
        outputs = dict(args.inputs)
        if "tokenid" in outputs:
            outputs["value"] = "mock-token-secret"
            outputs["full_tokenid"] = f"{outputs['userid']}!{outputs['tokenid']}"
        if "userid" in outputs and "password" in outputs:
            outputs["password"] = "mock-password"
        if "vmid_hint" in outputs:
            outputs["vmid"] = outputs["vmid_hint"]
        return [f"{args.name}-id", outputs]

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


MOCKS = Mocks()
pulumi.runtime.set_mocks(MOCKS, project="kloudctl-tenants", stack="brieux", preview=False)

from kloudctl.model import load_fleet  # noqa: E402
from kloudctl.tenants.components import ApiArgs, Tenant  # noqa: E402
from kloudctl.tenants.program import build, tenant_args  # noqa: E402

CABINET = load_fleet(ROOT).cabinet("brieux")
API = ApiArgs(
    endpoint="https://127.0.0.1:8006",
    fingerprint="AA:BB",
    token_id="kloudctl@pve!automation",
    secret=pulumi.Output.secret("generated-at-run-time"),
)


def _dynamic(name_suffix: str) -> list[pulumi.runtime.MockResourceArgs]:
    return [r for r in MOCKS.created if r.name == name_suffix]


@pytest.fixture(scope="module")
def tenants() -> dict[str, Tenant]:
    MOCKS.created.clear()
    return build(CABINET, API)


def settled(tenants: dict[str, Tenant], check) -> pulumi.Output:
    """Run `check` once every resource of every tenant is registered with the mocks."""
    outs = [o for t in tenants.values() for o in (t.pool, t.userid, t.token_id)]
    outs += [g.vmid for t in tenants.values() for g in t.guests]
    return pulumi.Output.all(*outs).apply(lambda _: check())


@pulumi.runtime.test
def test_every_tenant_gets_pool_group_user_token_acls_firewall(tenants):
    names = {t.name for t in CABINET.tenants}

    def check():
        for name in names:
            for suffix in (
                "-pool",
                "-group",
                "-user",
                "-token",
                "-acl-group",
                "-acl-token",
                "-firewall",
            ):
                assert _dynamic(f"{name}{suffix}"), f"{name}{suffix} missing"

    return settled(tenants, check)


@pulumi.runtime.test
def test_acls_give_pvevmadmin_on_own_pool_only(tenants):
    def check():
        acls = [r for r in MOCKS.created if "-acl-" in r.name]
        assert len(acls) == 2 * len(CABINET.tenants)
        for acl in acls:
            tenant = acl.name.split("-acl-")[0]
            assert acl.inputs["role"] == "PVEVMAdmin"
            assert acl.inputs["path"] == f"/pool/{tenant}"
            assert acl.inputs["kind"] in ("group", "token")
            if acl.inputs["kind"] == "token":
                assert acl.inputs["ugid"] == f"{tenant}@pve!kloudctl"

    return settled(tenants, check)


@pulumi.runtime.test
def test_token_is_privilege_separated_and_its_secret_stays_secret(tenants):
    council = tenants["council"]

    def check():
        for tenant in CABINET.tenants:
            (token,) = _dynamic(f"{tenant.name}-token")
            assert token.inputs["privsep"] is True

    checked = settled(tenants, check)

    async def secret() -> bool:
        return await council.token_secret.is_secret()

    import asyncio

    is_secret = pulumi.Output.from_input(asyncio.ensure_future(secret()))
    # both awaited: a check whose Output is not returned never fails the test
    return pulumi.Output.all(checked, is_secret).apply(lambda done: _assert(done[1]))


def _assert(value: bool) -> None:
    assert value is True


@pulumi.runtime.test
def test_isolation_rules_deny_other_tenants(tenants):
    return settled(tenants, _check_isolation)


def _check_isolation():
    from kloudctl.tenants.components import isolation_rules

    for name, targs in tenant_args(CABINET, API).items():
        fw = _dynamic(f"{name}-firewall")[0]
        rules = isolation_rules(targs.subnet, targs.supernet)
        assert rules[0] == {
            "type": "in",
            "action": "ACCEPT",
            "source": targs.subnet,
            "comment": "own tenant",
        }
        assert {
            "type": "in",
            "action": "DROP",
            "source": "10.161.0.0/16",
            "comment": "other tenants",
        } in rules
        assert {
            "type": "out",
            "action": "DROP",
            "dest": "10.161.0.0/16",
            "comment": "other tenants",
        } in rules
        assert fw.inputs["group"] == f"kc-{targs.vlan}"
        assert fw.inputs["rules"] == rules


@pulumi.runtime.test
def test_guests_follow_the_capacity_plan(tenants):
    from kloudctl.capacity import plan_cabinet

    plan = {v.name: (t, v) for t in plan_cabinet(CABINET).tenants for v in t.vms}
    return settled(tenants, lambda: _check_guests(plan))


def _check_guests(plan):
    vms = [r for r in MOCKS.created if r.name in plan and r.typ != "kloudctl:tenants:Guest"]
    assert {r.name for r in vms} == set(plan)
    for vm in vms:
        tplan, vplan = plan[vm.name]
        assert vm.inputs["template"] == "debian-12-cloud"
        assert vm.inputs["vlan"] == tplan.vlan
        assert vm.inputs["address"] == str(vplan.address)
        assert vm.inputs["gateway"] == str(tplan.gateway)
        assert vm.inputs["vmid_hint"] == vplan.vmid
        assert (vm.inputs["vmid_first"], vm.inputs["vmid_last"]) == (
            tplan.vmid_first,
            tplan.vmid_last,
        )
        assert vm.inputs["memory"] == vplan.memory and vm.inputs["cores"] == vplan.cores
        assert vm.inputs["onboot"] is True
    web = next(v for v in vms if v.name == "brieux-web")
    assert web.inputs["tags"] == ["website"]


@pulumi.runtime.test
def test_children_are_parented_to_their_component(tenants):
    council = tenants["council"]
    children = {getattr(c, "_name", None) for c in council._childResources}
    assert {"council-pool", "council-token", "brieux-web"} <= children
    web = next(g for g in council.guests if g._name == "brieux-web")
    assert web.vm in web._childResources
