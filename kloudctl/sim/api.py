"""The registry of simulated methods and what a handler receives.

A handler is registered for one schema method (`@api("GET", "/cluster/resources")`); the
registration fails at import if the schema has no such method, so every simulated route is
a real one. Handlers get a `Call` (cabinet, validated parameters, caller) and return the
`data` of the answer, or raise `ApiError` with Proxmox's status and message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kloudctl.sim.perms import Identity
from kloudctl.sim.schema import Method, load_schema

if TYPE_CHECKING:
    from kloudctl.sim.server import SimCabinet

Handler = Callable[["Call"], Any]
HANDLERS: dict[tuple[str, str], Handler] = {}


class ApiError(Exception):
    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


def bad_request(param: str, message: str) -> ApiError:
    return ApiError(400, "Parameter verification failed.", {param: message})


@dataclass
class Call:
    cab: SimCabinet
    method: Method
    params: dict[str, Any]
    who: Identity

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


def api(http: str, *paths: str) -> Callable[[Handler], Handler]:
    schema = load_schema()

    def register(fn: Handler) -> Handler:
        for path in paths:
            if (http, path) not in schema.methods:
                raise LookupError(f"{http} {path} is not a method of the PVE API schema")
            HANDLERS[(http, path)] = fn
        return fn

    return register
