"""The simulated API methods, by area of the API, and the registry built from them.

Each module records its handlers in its own `routes` (`kloudctl.sim.api.Routes`); nothing
is registered by importing it. `build_registry(schema)` gathers them once, checks every
route against the schema, and adds the directory indexes the schema implies.
"""

from __future__ import annotations

from types import ModuleType

from kloudctl.sim.api import Registry
from kloudctl.sim.handlers import (
    access,
    backup,
    cluster,
    cluster_config,
    cluster_info,
    firewall,
    index,
    metrics,
    pools,
    sdn,
    storage,
)
from kloudctl.sim.handlers.nodes import (
    lxc,
    network,
    node,
    qemu,
    qemu_agent,
    qemu_migrate,
    qemu_snapshot,
    qemu_status,
    system,
    tasks,
    vzdump,
)
from kloudctl.sim.handlers.nodes import storage as node_storage
from kloudctl.sim.schema import Schema

MODULES: tuple[ModuleType, ...] = (
    access,
    pools,
    cluster,
    storage,
    sdn,
    firewall,
    node,
    network,
    node_storage,
    tasks,
    qemu,
    qemu_status,
    qemu_snapshot,
    qemu_migrate,
    lxc,
    vzdump,
    backup,
    metrics,
    cluster_config,
    cluster_info,
    system,
    qemu_agent,
)


def build_registry(schema: Schema) -> Registry:
    """(http, schema path) → handler, for every module's routes and the directory indexes.

    Raises `LookupError` for a route the schema does not list, or one recorded twice."""
    registry: Registry = {}
    for module in MODULES:
        for http, path, fn in module.routes.entries:
            if (http, path) not in schema.methods:
                raise LookupError(f"{http} {path} is not a method of the PVE API schema")
            if (http, path) in registry:
                raise LookupError(f"{http} {path} has two handlers ({module.__name__})")
            registry[(http, path)] = fn
    registry.update(index.index_handlers(schema, set(registry)))
    return registry


__all__ = ["MODULES", "build_registry"]
