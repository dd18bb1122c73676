"""kloudctl: run a fleet of commune-owned micro-cloud cabinets."""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("kloudctl")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

#: A file of the package present only in the trimmed kloudctl a cabinet carries
#: (`kloudctl.hosts.bundle` adds it): there, and only there, command groups whose libraries
#: the bundle does not carry are left out of the CLI.
CABINET_MARKER = "CABINET_BUNDLE"

#: Whether this kloudctl is a cabinet's (the bundle's marker is in the package).
ON_CABINET = (Path(__file__).resolve().parent / CABINET_MARKER).is_file()
