"""Capacity: what a cabinet can admit, and the ranges and addresses each tenant gets."""

from kloudctl.capacity.plan import (
    CabinetPlan,
    ContainerPlan,
    TenantPlan,
    VmPlan,
    admit,
    plan_cabinet,
)

__all__ = ["CabinetPlan", "ContainerPlan", "TenantPlan", "VmPlan", "admit", "plan_cabinet"]
