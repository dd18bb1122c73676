"""kloudctl: run a fleet of commune-owned micro-cloud cabinets."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kloudctl")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
