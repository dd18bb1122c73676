"""Pulumi dynamic providers for the Proxmox objects kloudctl manages, on proxmoxer."""

from kloudctl.tenants.providers.access import (
    AclProvider,
    GroupProvider,
    PoolProvider,
    TokenProvider,
    UserProvider,
)
from kloudctl.tenants.providers.container import ContainerProvider
from kloudctl.tenants.providers.firewall import SecurityGroupProvider
from kloudctl.tenants.providers.guest import GuestProvider

__all__ = [
    "AclProvider",
    "ContainerProvider",
    "GroupProvider",
    "GuestProvider",
    "PoolProvider",
    "SecurityGroupProvider",
    "TokenProvider",
    "UserProvider",
]
