"""The offline plan: allocations, capacity and power, on the example fleet and variations."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from kloudctl.capacity import admit, plan_cabinet
from kloudctl.errors import AdmissionRefused
from kloudctl.model import load_fleet
from kloudctl.power.estimate import GUEST_LOAD


@pytest.fixture(scope="module")
def fleet(request):
    from tests.conftest import REPO

    return load_fleet(REPO)


def test_example_fleet_fits_its_budget(fleet) -> None:
    for cabinet in fleet:
        plan = admit(plan_cabinet(cabinet))
        assert plan.power.estimated_watts <= 500
        assert cabinet.power.budget_watts == 500


def test_brieux_allocations(fleet) -> None:
    plan = plan_cabinet(fleet.cabinet("brieux"))
    by_name = {t.name: t for t in plan.tenants}
    council = by_name["council"]
    assert (council.vlan, council.vmid_first, council.vmid_last) == (100, 1000, 1099)
    assert council.subnet == ipaddress.IPv4Network("10.161.0.0/24")
    assert council.gateway == ipaddress.IPv4Address("10.161.0.1")
    assert [vm.vmid for vm in council.vms] == [1000, 1001, 1002]
    assert [str(vm.address) for vm in council.vms] == [
        "10.161.0.10/24",
        "10.161.0.11/24",
        "10.161.0.12/24",
    ]
    # automatic VLANs and VMID blocks skip the declared ones, in declaration order
    assert by_name["boulangerie-leroy"].vlan == 101 and by_name["boulangerie-leroy"].auto_vlan
    assert (by_name["comite-des-fetes"].vmid_first, by_name["comite-des-fetes"].vmid_last) == (
        1200,
        1299,
    )
    assert str(by_name["comite-des-fetes"].vms[0].address) == "10.161.2.50/24"


def test_vmid_ranges_never_overlap(fleet) -> None:
    for cabinet in fleet:
        ranges = sorted((t.vmid_first, t.vmid_last) for t in plan_cabinet(cabinet).tenants)
        for (_, last), (first, _) in itertools.pairwise(ranges):
            assert last < first


def test_power_estimate_is_idle_plus_load_share(fleet) -> None:
    cabinet = fleet.cabinet("mortree")
    plan = plan_cabinet(cabinet)
    node = cabinet.hardware.nodes[0]
    busy = sum(vm.cores * vm.load for t in cabinet.tenants for vm in t.vms)
    expected = node.idle_watts + (node.peak_watts - node.idle_watts) * busy / node.cores
    assert plan.power.nodes[0].estimated_watts == pytest.approx(expected)
    assert plan.power.estimated_watts == pytest.approx(expected + cabinet.power.other_watts)


def test_over_budget_plan_is_refused_with_numbers(fleet) -> None:
    cabinet = fleet.cabinet("brieux")
    tight = cabinet.model_copy(
        update={"power": cabinet.power.model_copy(update={"budget_watts": 90})}
    )
    plan = plan_cabinet(tight)
    with pytest.raises(AdmissionRefused) as caught:
        admit(plan)
    (problem,) = caught.value.problems
    assert f"estimated draw {plan.power.estimated_watts:.0f} W exceeds the 90 W budget" in str(
        problem
    )


def test_capacity_counts_overcommit_and_host_reserve(fleet) -> None:
    plan = plan_cabinet(fleet.cabinet("mortree"))
    vcpu, ram, _disk = plan.resources
    assert vcpu.capacity == 8 * 3.0  # mortree declares a CPU overcommit of 3
    assert ram.capacity == (32 - 4) * 1024**3


# --- containers (issue 15) -------------------------------------------------------------------


def test_saint_aubin_containers_take_vmids_from_the_top_and_addresses_after_the_vms(
    fleet,
) -> None:
    plan = plan_cabinet(fleet.cabinet("saint-aubin"))
    by_name = {t.name: t for t in plan.tenants}
    council, musique = by_name["council"], by_name["ecole-musique"]
    (dns,) = council.containers
    assert (dns.name, dns.vmid, dns.unprivileged) == ("staubin-dns", council.vmid_last, True)
    assert dns.template == "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
    assert [vm.vmid for vm in council.vms] == [council.vmid_first, council.vmid_first + 1]
    # addresses: the VMs first (10, 11), then the container (12)
    assert str(dns.address) == str(council.subnet.network_address + 12) + "/24"
    (agenda,) = musique.containers
    assert agenda.vmid == musique.vmid_last and (agenda.memory, agenda.disk) == (
        512 * 2**20,
        8 * 2**30,
    )


def test_adding_a_vm_never_renumbers_a_container(fleet) -> None:
    cabinet = fleet.cabinet("saint-aubin")
    council = cabinet.tenants[0]
    more = council.model_copy(
        update={"vms": [*council.vms, council.vms[0].model_copy(update={"name": "staubin-extra"})]}
    )
    grown = cabinet.model_copy(update={"tenants": [more, *cabinet.tenants[1:]]})
    before = plan_cabinet(cabinet).tenants[0].containers[0].vmid
    assert plan_cabinet(grown).tenants[0].containers[0].vmid == before


def test_containers_count_in_the_power_estimate(fleet) -> None:
    cabinet = fleet.cabinet("saint-aubin")
    node = cabinet.hardware.nodes[0]
    busy = sum(g.cores * g.load for t in cabinet.tenants for g in (*t.vms, *t.containers))
    vms_only = sum(vm.cores * vm.load for t in cabinet.tenants for vm in t.vms)
    assert busy > vms_only  # the example declares containers with a load
    # saint-aubin also lends a quota to other communes' failed-over council VMs: budgeted too
    lent = cabinet.federation.guests.quota.vcpu * GUEST_LOAD
    expected = node.idle_watts + (node.peak_watts - node.idle_watts) * (busy + lent) / node.cores
    assert plan_cabinet(cabinet).power.nodes[0].estimated_watts == pytest.approx(expected)


def test_a_council_may_run_a_privileged_container(fleet) -> None:
    """Only a level-2 tenant is refused one (the corpus case): the council owns the host."""
    from kloudctl.model.fleet import cross_check

    loaded = fleet.loaded("saint-aubin")
    council = loaded.model.tenants[0]
    privileged = council.model_copy(
        update={"containers": [council.containers[0].model_copy(update={"unprivileged": False})]}
    )
    cabinet = loaded.model.model_copy(update={"tenants": [privileged, *loaded.model.tenants[1:]]})
    changed = type(fleet)(
        fleet.root,
        {**fleet.cabinets, "saint-aubin": type(loaded)(cabinet, loaded.source)},
        fleet.policies,
        fleet.secret_folders,
    )
    assert [p for p in cross_check(changed) if "unprivileged" in str(p)] == []
    assert plan_cabinet(cabinet).tenants[0].containers[0].unprivileged is False
