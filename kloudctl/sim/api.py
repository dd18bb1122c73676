"""What a handler receives and returns, and how a handler module lists its methods.

A handler module records its handlers with its own `Routes`:

    routes = Routes()

    @routes("GET", "/cluster/resources")
    def resources(call: Call) -> ...

Recording checks nothing and needs no schema: `kloudctl.sim.handlers.build_registry(schema)`
gathers every module's routes once, refuses any that is not a method of the schema, and
returns the registry the server dispatches with. A handler gets a `Call` (cabinet,
validated parameters, caller) and returns the `data` of the answer, or raises `ApiError`
with Proxmox's status and message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kloudctl.sim.cabinet import SimCabinet
from kloudctl.sim.errors import ApiError, bad_request
from kloudctl.sim.perms import Identity
from kloudctl.sim.schema import Method

__all__ = ["ApiError", "Call", "Handler", "Raw", "Registry", "Routes", "bad_request"]

Handler = Callable[["Call"], Any]
Registry = dict[tuple[str, str], Handler]
H = TypeVar("H", bound=Handler)


@dataclass
class Call:
    cab: SimCabinet
    method: Method
    params: dict[str, Any]
    who: Identity
    upload_size: int = 0  # the size of the file uploaded with the call, if any

    @property
    def state(self) -> dict[str, Any]:
        return self.cab.state

    def p(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)


class Raw:
    """A pre-serialised answer (the whole `{"data":...}` body), for hot read paths."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    @classmethod
    def of(cls, json_data: bytes) -> Raw:
        return cls(b'{"data":' + json_data + b"}")


class Routes:
    """The (http, schema path, handler) triples of one handler module, in order."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, Handler]] = []

    def __call__(self, http: str, *paths: str) -> Callable[[H], H]:
        def record(fn: H) -> H:
            self.entries.extend((http, path, fn) for path in paths)
            return fn

        return record
