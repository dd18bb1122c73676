"""Estimated power draw of a cabinet.

A node draws its idle power plus a share of (peak - idle) proportional to its CPU
utilisation. Guests' expected load (the `load` of VMs and containers alike: the mean
fraction of their vCPUs they keep busy) is spread over the nodes in proportion to their
cores, as the scheduler would.
"""

from __future__ import annotations

from dataclasses import dataclass

from kloudctl.model.schema import Cabinet

#: The mean CPU load assumed for other communes' guests (a VM's default `load`).
GUEST_LOAD = 0.25


@dataclass(frozen=True)
class NodeDraw:
    node: str
    idle_watts: float
    peak_watts: float
    utilisation: float
    estimated_watts: float


@dataclass(frozen=True)
class PowerEstimate:
    budget_watts: float
    other_watts: float
    nodes: list[NodeDraw]

    @property
    def estimated_watts(self) -> float:
        return self.other_watts + sum(n.estimated_watts for n in self.nodes)

    @property
    def peak_watts(self) -> float:
        return self.other_watts + sum(n.peak_watts for n in self.nodes)

    @property
    def fits(self) -> bool:
        return self.estimated_watts <= self.budget_watts


def node_watts(idle_watts: float, peak_watts: float, utilisation: float) -> float:
    """A node's draw at a CPU utilisation (0..1): the one linear model of plans and status."""
    return idle_watts + (peak_watts - idle_watts) * min(1.0, max(0.0, utilisation))


def estimate_power(cabinet: Cabinet) -> PowerEstimate:
    total_cores = sum(n.cores for n in cabinet.hardware.nodes)
    busy_cores = sum(g.cores * g.load for t in cabinet.tenants for g in t.guests)
    guests = cabinet.federation.guests if cabinet.federation else None
    if guests is not None:
        # Other communes' failed-over council VMs may fill the lent quota: budget for it.
        busy_cores += guests.quota.vcpu * GUEST_LOAD
    # More busy vCPUs than cores means the CPUs are saturated: utilisation caps at 1.
    utilisation = min(1.0, busy_cores / total_cores) if total_cores else 0.0
    nodes = [
        NodeDraw(
            node=n.name,
            idle_watts=n.idle_watts,
            peak_watts=n.peak_watts,
            utilisation=utilisation,
            estimated_watts=node_watts(n.idle_watts, n.peak_watts, utilisation),
        )
        for n in cabinet.hardware.nodes
    ]
    return PowerEstimate(cabinet.power.budget_watts, cabinet.power.other_watts, nodes)
