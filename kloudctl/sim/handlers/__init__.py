"""The simulated API methods. Importing this package registers them all."""

from kloudctl.sim.handlers import access, extra, firewall, infra, qemu
from kloudctl.sim.handlers.index import register_indexes

register_indexes()

__all__ = ["access", "extra", "firewall", "infra", "qemu"]
