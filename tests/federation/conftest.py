"""Federation fixtures: members' keys and registries built with the real code."""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

import pytest

from kloudctl.federation import service
from kloudctl.federation.keys import MemberKeys
from kloudctl.federation.registry import Registry, create

T0 = datetime.datetime(2026, 11, 30, 4, 0, tzinfo=datetime.UTC)


def member_doc(commune: str, keys: MemberKeys, address: str) -> dict[str, Any]:
    return {
        "commune": commune,
        "cabinet": commune,
        "endpoints": [f"203.0.113.{len(commune)}:51820"],
        "wireguard_key": keys.wireguard_public,
        "signing_key": keys.signing_public,
        "mesh_address": address,
        "capacity": {
            "spare_disk_declared": 2 * 1024**4,
            "spare_disk_measured": None,
            "power_headroom_declared": 300,
            "power_headroom_measured": None,
        },
    }


def admit(state: service.FederationState, commune: str, disk: int | None, watts: int) -> MemberKeys:
    """Admit `commune` straight into the coordinator's registry, declaring `disk` spare
    bytes and `watts` of power headroom (the join protocol is tested in test_invites; here
    only the registry's figures matter)."""
    registry = state.store.load()
    newcomer = MemberKeys.generate()
    doc = {
        "commune": commune, "cabinet": commune, "endpoints": [],
        "wireguard_key": newcomer.wireguard_public, "signing_key": newcomer.signing_public,
        "mesh_address": registry.next_address(),
        "capacity": {"spare_disk_declared": disk, "power_headroom_declared": watts},
    }  # fmt: skip
    _, keys, _ = state.coordinator()
    state.store.accept(registry.append("admit", "brieux", {"member": doc}, keys), "test")
    return newcomer


class Federation:
    """A coordinator (brieux) and two members, and the five-entry chain they make:
    1 create, 2 admit mortree, 3 admit saint-aubin, 4 update by mortree, 5 revoke saint-aubin."""

    def __init__(self, pool: str = "10.250.0.0/24") -> None:
        self.keys = {name: MemberKeys.generate() for name in ("brieux", "mortree", "saint-aubin")}
        self.pool = ipaddress.IPv4Network(pool)

    def chain(self, upto: int = 5) -> Registry:
        k = self.keys
        registry = create(
            "bocage", self.pool, member_doc("brieux", k["brieux"], "10.250.0.1"), k["brieux"], T0
        )
        steps = [
            lambda r: r.append(
                "admit",
                "brieux",
                {"member": member_doc("mortree", k["mortree"], r.next_address())},
                k["brieux"],
                T0,
            ),
            lambda r: r.append(
                "admit",
                "brieux",
                {"member": member_doc("saint-aubin", k["saint-aubin"], r.next_address())},
                k["brieux"],
                T0,
            ),
            lambda r: r.append(
                "update",
                "mortree",
                {"commune": "mortree", "changes": {"endpoints": ["198.51.100.7:51820"]}},
                k["mortree"],
                T0,
            ),
            lambda r: r.append(
                "revoke", "brieux", {"commune": "saint-aubin", "reason": "left"}, k["brieux"], T0
            ),
        ]
        for step in steps[: upto - 1]:
            registry = step(registry)
        return registry


@pytest.fixture
def federation() -> Federation:
    return Federation()
