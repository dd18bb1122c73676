"""Serving: one process, many cabinets, each on its own loopback address and port, HTTPS.

`Simulator` owns the cabinets (`kloudctl.sim.cabinet`) and their aiohttp sites. For each
request under `/api2/json` it reads the HTTP request into a `dispatch.Request`, lets the
`Dispatcher` answer it as pveproxy would, and renders the answer in Proxmox's shapes. The
control endpoint `/_sim/...` (faults, health, usage) is outside the API and needs the
simulator's control token. The schema is loaded, and the registry of handlers built, once,
when the first cabinet is served.
"""

from __future__ import annotations

import gc
import hmac
import json
import secrets
import ssl
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from kloudctl.files import write_atomic
from kloudctl.sim import faults as faultmod
from kloudctl.sim.api import Raw
from kloudctl.sim.cabinet import Endpoint, SimCabinet, open_cabinet
from kloudctl.sim.certs import ensure_cert, fingerprint_of
from kloudctl.sim.dispatch import Answer, Dispatcher, Request
from kloudctl.sim.errors import ApiError
from kloudctl.sim.handlers import build_registry
from kloudctl.sim.schema import load_schema
from kloudctl.sim.usage import CLIENT_HEADER, Usage

__all__ = ["API_PREFIX", "CONTROL_PREFIX", "Endpoint", "SimCabinet", "Simulator"]

API_PREFIX = "/api2/json"
CONTROL_PREFIX = "/_sim"


async def handle_api(
    dispatcher: Dispatcher, cab: SimCabinet, usage: Usage, request: web.Request
) -> web.StreamResponse:
    req = Request(
        http=request.method,
        path=request.rel_url.raw_path[len(API_PREFIX) :] or "/",
        authorization=request.headers.get("Authorization", ""),
        cookie=request.cookies.get("PVEAuthCookie"),
        csrf=request.headers.get("CSRFPreventionToken"),
        read_params=lambda: _read_params(request),
    )
    answer = await dispatcher.answer(cab, req)
    http, path = answer.method or answer.route or (req.http, req.path)
    headers = request.headers
    client = usage.client(headers.get(CLIENT_HEADER), headers.get("User-Agent"))
    usage.record(client, http, path, answer.status)
    return _render(cab, answer)


async def handle_control(cab: SimCabinet, usage: Usage, request: web.Request) -> web.StreamResponse:
    token = request.headers.get("X-Sim-Control", "")
    if not hmac.compare_digest(token, cab.control_token):
        return web.json_response({"error": "control token required"}, status=401)
    what = request.path[len(CONTROL_PREFIX) :]
    if what == "/health":
        return web.json_response({"name": cab.name, "generation": cab.generation})
    if what == "/usage":
        return web.json_response(usage.to_report())
    if what != "/fault":
        return web.json_response({"error": f"unknown control path {what}"}, status=404)
    if request.method == "GET":
        return web.json_response(cab.fault_view())
    try:
        spec = await request.json()
        cab.apply_fault(spec)
    except (ValueError, faultmod.FaultError, ApiError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(cab.fault_view())


async def _read_params(request: web.Request) -> tuple[dict[str, Any], int]:
    """Query and body parameters (form, multipart or JSON), and an uploaded file's size."""
    params: dict[str, Any] = {}
    upload_size = 0
    for key, value in parse_qsl(request.query_string, keep_blank_values=True):
        _add(params, key, value)
    if request.can_read_body:
        ctype = request.content_type
        if ctype == "multipart/form-data":
            form = await request.post()
            for name, field in form.items():
                if isinstance(field, web.FileField):
                    params[name] = field.filename
                    upload_size = len(field.file.read())
                else:
                    params[name] = field
        elif ctype == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise ApiError(
                    400, "Parameter verification failed.", {"body": "invalid JSON"}
                ) from None
            if isinstance(body, dict):
                params.update(body)
        else:
            text = (await request.read()).decode()
            for key, value in parse_qsl(text, keep_blank_values=True):
                _add(params, key, value)
    return params, upload_size


def _add(params: dict[str, Any], key: str, value: str) -> None:
    if key in params:
        prev = params[key]
        params[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
    else:
        params[key] = value


def _render(cab: SimCabinet, answer: Answer) -> web.Response:
    if not answer.ok:
        return _error(answer.status, answer.message, answer.errors)
    data = answer.data
    if isinstance(data, Raw):
        body = data.body
    else:
        body = json.dumps({"data": data}, separators=(",", ":")).encode()
    if cab.recorder is not None and answer.method is not None:
        cab.recorder.append((answer.method, json.loads(body)["data"]))
    return web.Response(body=body, content_type="application/json")


def _error(status: int, message: str, errors: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"data": None, "message": message.rstrip("\n") + "\n"}
    if errors:
        body["errors"] = errors
    reason = message.splitlines()[0][:200] if message else None
    return web.Response(
        status=status,
        reason=reason,
        body=json.dumps(body).encode(),
        content_type="application/json",
    )


class Simulator:
    """Many cabinets in one asyncio process, each with its own HTTPS site."""

    def __init__(
        self,
        *,
        state_dir: Path | None = None,
        task_seconds: float = 1.0,
        control_token: str | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.task_seconds = task_seconds
        self.control_token = control_token or secrets.token_urlsafe(24)
        self.cabinets: dict[str, SimCabinet] = {}
        self._runners: list[web.AppRunner] = []
        self._dispatcher: Dispatcher | None = None
        #: Which methods each client called, and the answers' statuses (all cabinets).
        self.usage = Usage()

    @property
    def dispatcher(self) -> Dispatcher:
        """The API schema and the registry of handlers, loaded and built on first use."""
        if self._dispatcher is None:
            schema = load_schema()
            self._dispatcher = Dispatcher(schema, build_registry(schema))
        return self._dispatcher

    def add_cabinet(self, name: str, model: Any | None = None) -> SimCabinet:
        cab = open_cabinet(
            name,
            model,
            self.state_dir / name if self.state_dir else None,
            task_seconds=self.task_seconds,
            control_token=self.control_token,
        )
        self.cabinets[name] = cab
        return cab

    def make_app(self, cab: SimCabinet) -> web.Application:
        dispatcher = self.dispatcher

        async def dispatch(request: web.Request) -> web.StreamResponse:
            if request.path.startswith(API_PREFIX + "/") or request.path == API_PREFIX:
                return await handle_api(dispatcher, cab, self.usage, request)
            if request.path.startswith(CONTROL_PREFIX + "/"):
                return await handle_control(cab, self.usage, request)
            return web.Response(
                status=501, reason="Not Implemented", text="kloudctl sim: API under /api2/json\n"
            )

        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", dispatch)
        return app

    async def serve(self, cab: SimCabinet, host: str, port: int) -> Endpoint:
        folder = self.state_dir / cab.name if self.state_dir else None
        cert, key = ensure_cert(folder, cab.name, host, list(cab.state["nodes"]))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "c.pem").write_bytes(cert)
            (Path(tmp) / "k.pem").write_bytes(key)
            ctx.load_cert_chain(Path(tmp) / "c.pem", Path(tmp) / "k.pem")
        runner = web.AppRunner(self.make_app(cab), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ctx, reuse_address=True)
        await site.start()
        self._runners.append(runner)
        bound = runner.addresses[0][1] if runner.addresses else port
        cab.endpoint = Endpoint(
            cab.name,
            host,
            int(bound),
            fingerprint_of(cert),
            cab.root_password,
            tuple(cab.state["nodes"]),
        )
        return cab.endpoint

    def settle(self) -> None:
        """After loading: move the loaded state out of the cyclic GC's way (gc.freeze), so
        full collections do not walk thousands of guest dicts during requests."""
        gc.collect()
        gc.freeze()

    async def stop(self) -> None:
        if self.state_dir is not None and self.cabinets:
            # the usage of this run, for `kloudctl sim coverage --usage`
            report = json.dumps(self.usage.to_report(), indent=1) + "\n"
            write_atomic(self.state_dir / "usage.json", report, what="simulator usage log")
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        for cab in self.cabinets.values():
            cab.close()
