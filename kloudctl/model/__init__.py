"""The fleet model: cabinets and backup policies declared in YAML, loaded and validated."""

from kloudctl.model.fleet import Fleet, LoadedCabinet, LoadedPolicy
from kloudctl.model.loader import find_root, load_fleet
from kloudctl.model.schema import BackupPolicy, Cabinet, Tenant, Vm

__all__ = [
    "BackupPolicy",
    "Cabinet",
    "Fleet",
    "LoadedCabinet",
    "LoadedPolicy",
    "Tenant",
    "Vm",
    "find_root",
    "load_fleet",
]
