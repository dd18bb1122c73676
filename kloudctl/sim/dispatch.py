"""Answering one API request the way pveproxy does, without HTTP.

Injected faults (latency, 503s), routing over the schema (501 for what it does not list
or the simulator does not answer), credentials (401), parameter validation (400), offline
nodes (595), the method's permission check (403), then the handler. The server parses the
HTTP request into a `Request` and renders the `Answer`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

from kloudctl.sim.api import Call, Registry
from kloudctl.sim.auth import AuthError
from kloudctl.sim.cabinet import SimCabinet
from kloudctl.sim.errors import ApiError
from kloudctl.sim.perms import Identity, PermissionDenied
from kloudctl.sim.schema import Method, Schema
from kloudctl.sim.validate import ParamError, validate_params


@dataclass(frozen=True)
class Request:
    http: str
    path: str  # below /api2/json, as sent: %2F stays inside a segment
    authorization: str
    cookie: str | None
    csrf: str | None
    # the query and body parameters, and the size of an uploaded file (0 without one);
    # read only once the path is routed, as pveproxy does
    read_params: Callable[[], Awaitable[tuple[dict[str, Any], int]]]


@dataclass(frozen=True)
class Answer:
    status: int
    data: Any = None  # a success's `data` (or a `Raw` body)
    message: str = ""  # a failure's message
    errors: dict[str, str] | None = None  # a 400's faulty parameters
    method: tuple[str, str] | None = None  # a success's (http, schema path)
    # a routed failure's (http, schema path): what the usage log counts it under
    route: tuple[str, str] | None = None

    @property
    def ok(self) -> bool:
        return self.method is not None


def _fail(status: int, message: str, errors: dict[str, str] | None = None) -> Answer:
    return Answer(status, message=message, errors=errors)


class Dispatcher:
    """The schema and the registry of handlers, applied to the requests of any cabinet."""

    def __init__(self, schema: Schema, registry: Registry) -> None:
        self.schema = schema
        self.registry = registry

    async def answer(self, cab: SimCabinet, req: Request) -> Answer:
        if cab.faults.latency_ms:
            await asyncio.sleep(cab.faults.latency_ms / 1000)
        if cab.faults.error_rate and random.random() < cab.faults.error_rate:
            return _fail(503, "Service Unavailable (simulated fault)")
        http, path = req.http, req.path
        routed = self.schema.route(path)
        if routed is None:
            return _fail(501, f"Method '{http} {path}' not implemented")
        template, path_params, methods = routed
        method = methods.get(http)
        if method is None:
            message = f"Method '{http} {path}' not implemented"
            return Answer(501, message=message, route=(http, template))
        answer = await self._answer_routed(cab, req, template, path_params, method)
        if answer.ok:
            return answer
        return replace(answer, route=(http, template))

    async def _answer_routed(
        self,
        cab: SimCabinet,
        req: Request,
        template: str,
        path_params: dict[str, str],
        method: Method,
    ) -> Answer:
        http = req.http
        handler = self.registry.get((http, template))
        try:
            raw, upload_size = await req.read_params()
            perms = method.permissions
            public = perms is not None and perms.get("user") == "world"
            try:
                who = cab.authenticate(
                    method,
                    authorization=req.authorization,
                    cookie=req.cookie,
                    csrf=req.csrf,
                    write=http != "GET",
                )
            except AuthError as exc:
                if public:
                    who = None
                else:
                    return _fail(401, str(exc))
            if who is None and not public:
                return _fail(401, "No ticket")
            for key, value in path_params.items():
                raw[key] = unquote(value)
            params = validate_params(method.parameters, raw)
            node = path_params.get("node")
            nodes = cab.state["nodes"]
            if node is not None and node in nodes and not nodes[node]["online"]:
                return _fail(595, f"Connection refused: {node} is offline (simulated)")
            if handler is None:
                return _fail(
                    501,
                    f"Method '{http} {template}' ({method.name}) is not simulated by kloudctl sim",
                )
            if not public and who is not None:
                cab.acl.evaluate(who, perms, params)
            call = Call(cab, method, params, who or Identity("nobody@pve"), upload_size)
            data = handler(call)
            if asyncio.iscoroutine(data):
                data = await data
        except ParamError as exc:
            return _fail(400, "Parameter verification failed.", exc.errors)
        except PermissionDenied as exc:
            return _fail(403, str(exc))
        except ApiError as exc:
            return _fail(exc.status, exc.message, exc.errors)
        if http != "GET":
            cab.changed()
        return Answer(200, data, method=(http, template))
