"""Serving: one process, many cabinets, each on its own loopback address and port, HTTPS.

`Simulator` owns the cabinets and their aiohttp sites; `SimCabinet` holds one cabinet's
state and answers `/api2/json/...` the way pveproxy does (auth, CSRF, validation,
permissions, the handler, Proxmox's error shapes), plus the control endpoint `/_sim/...`
(faults, health) which is outside the API and needs the simulator's control token.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import json
import random
import secrets
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from kloudctl.sim import faults as faultmod
from kloudctl.sim import persist, tasks
from kloudctl.sim.api import HANDLERS, ApiError, Call, Raw
from kloudctl.sim.auth import AuthError, TicketSigner, parse_token_header
from kloudctl.sim.certs import ensure_cert, fingerprint_of
from kloudctl.sim.perms import AccessControl, Identity, PermissionDenied
from kloudctl.sim.schema import Method, load_schema
from kloudctl.sim.state import hash_secret, new_secret, new_state, verify_secret
from kloudctl.sim.validate import ParamError, validate_params

API_PREFIX = "/api2/json"
UPLOAD_SIZE = "\0upload-size"  # never a parameter name: carries an uploaded file's size
CONTROL_PREFIX = "/_sim"


@dataclass(frozen=True)
class Endpoint:
    """What a client needs to reach a simulated cabinet."""

    name: str
    host: str
    port: int
    fingerprint: str
    root_password: str
    nodes: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "host": self.host,
            "port": self.port,
            "fingerprint": self.fingerprint,
            "user": "root@pam",
            "password": self.root_password,
            "nodes": list(self.nodes),
        }


class SimCabinet:
    def __init__(
        self,
        name: str,
        state: dict[str, Any],
        *,
        root_password: str,
        state_file: Path | None,
        task_seconds: float,
        control_token: str,
    ) -> None:
        self.name = name
        self.state = state
        self.acl = AccessControl(state["access"])
        self.root_password = root_password
        self.state_file = state_file
        self.task_seconds = task_seconds
        self.control_token = control_token
        self.faults = faultmod.Faults()
        self.signer = TicketSigner()
        self.locks: dict[int, str] = {}
        self.status_400: set[str] = set()
        self.generation = 0
        self.cache: dict[Any, bytes] = {}
        self._save_handle: asyncio.Handle | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.jobs: dict[str, asyncio.Task[None]] = {}
        self._token_ok: dict[str, tuple[str, Any]] = {}
        self.schema = load_schema()
        self.endpoint: Endpoint | None = None
        self.upload_size = 0
        self.recorder: list[tuple[tuple[str, str], Any]] | None = None  # conformance tests
        for task in state["tasks"]:  # tasks cut by a restart end as PVE shows them
            if task["status"] == "running":
                tasks.finish(task, error="unexpected status")

    # -- state bookkeeping ------------------------------------------------------------------
    def changed(self) -> None:
        self.generation += 1
        self.cache.clear()
        self.state["access"].pop("_acl_index", None)
        if self.state_file is not None and self._save_handle is None:
            loop = asyncio.get_running_loop()
            self._save_handle = loop.call_later(0.05, self.save)

    def save(self) -> None:
        self._save_handle = None
        if self.state_file is not None:
            persist.save_state(self.state_file, self.state)

    def node(self, name: str) -> dict[str, Any]:
        node = self.state["nodes"].get(name)
        if node is None:
            raise ApiError(
                500,
                f"hostname lookup '{name}' failed - failed to get address info for: {name}: "
                "Name or service not known",
            )
        return node

    # -- locks and tasks ------------------------------------------------------------------------
    def lock(self, vmid: int, upid: str = "api") -> None:
        if vmid in self.locks or self.faults.locked(vmid):
            raise ApiError(
                500, f"can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout"
            )
        self.locks[vmid] = upid

    def unlock(self, vmid: int) -> None:
        self.locks.pop(vmid, None)

    def start_task(
        self,
        call: Call,
        kind: str,
        ident: str,
        node: str,
        work: Callable[[dict[str, Any]], None] | None = None,
        *,
        lock: int | None = None,
        on_error: Callable[[], None] | None = None,
        seconds: float | None = None,
    ) -> str:
        if self.faults.no_worker_upid > 0:
            self.faults.no_worker_upid -= 1
            raise ApiError(500, "got no worker upid - start worker failed")
        if lock is not None:
            self.lock(lock)
        task = tasks.new_task(self.state, node, kind, ident, call.who.authid)
        if lock is not None:
            self.locks[lock] = task["upid"]
        task["log"].append(f"simulated {kind} task for {ident or node} by {call.who.authid}")
        if self.faults.status_400 > 0:
            self.faults.status_400 -= 1
            self.status_400.add(task["upid"])
        fail = warn = None
        if self.faults.task_failures > 0:
            self.faults.task_failures -= 1
            fail = self.faults.task_failure_message
        elif self.faults.task_warnings > 0:
            self.faults.task_warnings -= 1
            warn = self.faults.task_warning_count
        duration = self.task_seconds if seconds is None else seconds
        job = asyncio.get_running_loop().create_task(
            self._run(task, work, lock, on_error, fail, warn or 0, duration)
        )
        self._running.add(job)
        self.jobs[task["upid"]] = job
        job.add_done_callback(self._running.discard)
        job.add_done_callback(lambda _: self.jobs.pop(task["upid"], None))
        self.changed()
        return str(task["upid"])

    async def _run(
        self,
        task: dict[str, Any],
        work: Callable[[dict[str, Any]], None] | None,
        lock: int | None,
        on_error: Callable[[], None] | None,
        fail: str | None,
        warnings: int,
        duration: float,
    ) -> None:
        try:
            try:
                await asyncio.sleep(duration)
            except asyncio.CancelledError:
                if on_error:
                    on_error()
                tasks.finish(task, error="received interrupt")
                return
            if fail:
                if on_error:
                    on_error()
                tasks.finish(task, error=fail)
                return
            try:
                if work:
                    work(task)
            except ApiError as exc:
                if on_error:
                    on_error()
                tasks.finish(task, error=exc.message)
                return
            tasks.finish(task, warnings=warnings)
        finally:
            if lock is not None and self.locks.get(lock) == task["upid"]:
                self.unlock(lock)
            self.changed()

    def stop_task(self, upid: str) -> None:
        job = self.jobs.get(upid)
        if job is not None:
            job.cancel()

    def find_task(self, upid: str) -> dict[str, Any] | None:
        for task in reversed(self.state["tasks"]):
            if task["upid"] == upid:
                return task
        return None

    # -- requests -------------------------------------------------------------------------------
    def authenticate(self, request: web.Request, method: Method) -> Identity | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("PVEAPIToken="):
            who, secret = parse_token_header(header)
            user = self.state["access"]["users"].get(who.user)
            token = (user or {}).get("tokens", {}).get(who.token)
            if not user or not token:
                raise AuthError("invalid token value!")
            presented = hashlib.sha256(secret.encode()).hexdigest()
            if self._token_ok.get(who.authid) != (presented, token.get("secret")):
                # the salted hash is slow on purpose; remember a success for this secret
                if not verify_secret(secret, token.get("secret", "")):
                    raise AuthError("invalid token value!")
                self._token_ok[who.authid] = (presented, token.get("secret"))
            if not user.get("enable", 1) or _expired(user) or _expired(token):
                raise AuthError("invalid token value!")
            if not method.allowtoken:
                raise AuthError("API tokens are not allowed for this API call")
            return who
        cookie = request.cookies.get("PVEAuthCookie")
        if cookie:
            userid = self.signer.verify_ticket(unquote(cookie))
            user = self.state["access"]["users"].get(userid)
            if not user or not user.get("enable", 1):
                raise AuthError("invalid PVE ticket")
            if request.method != "GET":
                self.signer.verify_csrf(request.headers.get("CSRFPreventionToken"), userid)
            return Identity(userid)
        return None

    async def handle_api(self, request: web.Request) -> web.StreamResponse:
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        if self.faults.error_rate and random.random() < self.faults.error_rate:
            return _error(503, "Service Unavailable (simulated fault)")
        path = request.rel_url.raw_path[len(API_PREFIX) :] or "/"  # %2F stays inside a segment
        http = request.method
        routed = self.schema.route(path)
        if routed is None:
            return _error(501, f"Method '{http} {path}' not implemented")
        template, path_params, methods = routed
        method = methods.get(http)
        if method is None:
            return _error(501, f"Method '{http} {path}' not implemented")
        handler = HANDLERS.get((http, template))
        try:
            raw = await _read_params(request)
            self.upload_size = int(raw.pop(UPLOAD_SIZE, 0))
            perms = method.permissions
            public = perms is not None and perms.get("user") == "world"
            try:
                who = self.authenticate(request, method)
            except AuthError as exc:
                if public:
                    who = None
                else:
                    return _error(401, str(exc))
            if who is None and not public:
                return _error(401, "No ticket")
            for key, value in path_params.items():
                raw[key] = unquote(value)
            params = validate_params(method.parameters, raw)
            node = path_params.get("node")
            nodes = self.state["nodes"]
            if node is not None and node in nodes and not nodes[node]["online"]:
                return _error(595, f"Connection refused: {node} is offline (simulated)")
            if handler is None:
                return _error(
                    501,
                    f"Method '{http} {template}' ({method.name}) is not simulated by kloudctl sim",
                )
            if not public and who is not None:
                self.acl.evaluate(who, perms, params)
            call = Call(self, method, params, who or Identity("nobody@pve"))
            data = handler(call)
            if asyncio.iscoroutine(data):
                data = await data
        except ParamError as exc:
            return _error(400, "Parameter verification failed.", exc.errors)
        except PermissionDenied as exc:
            return _error(403, str(exc))
        except ApiError as exc:
            return _error(exc.status, exc.message, exc.errors)
        if http != "GET":
            self.changed()
        if isinstance(data, Raw):
            body = data.body
        else:
            body = json.dumps({"data": data}, separators=(",", ":")).encode()
        if self.recorder is not None:
            self.recorder.append(((http, template), json.loads(body)["data"]))
        return web.Response(body=body, content_type="application/json")

    async def handle_control(self, request: web.Request) -> web.StreamResponse:
        token = request.headers.get("X-Sim-Control", "")
        if not hmac.compare_digest(token, self.control_token):
            return web.json_response({"error": "control token required"}, status=401)
        what = request.path[len(CONTROL_PREFIX) :]
        if what == "/health":
            return web.json_response({"name": self.name, "generation": self.generation})
        if what != "/fault":
            return web.json_response({"error": f"unknown control path {what}"}, status=404)
        if request.method == "GET":
            return web.json_response(self.fault_view())
        try:
            spec = await request.json()
            self.apply_fault(spec)
        except (ValueError, faultmod.FaultError, ApiError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.fault_view())

    def fault_view(self) -> dict[str, Any]:
        offline = [n for n, d in self.state["nodes"].items() if not d["online"]]
        return {**self.faults.as_dict(), "offline_nodes": offline}

    def apply_fault(self, spec: dict[str, Any]) -> None:
        action = faultmod.apply(self.faults, spec)
        nodes = self.state["nodes"]
        if action in ("node_offline", "node_online"):
            node = spec.get("node")
            if node not in nodes:
                raise faultmod.FaultError(f"no node {node!r} in cabinet {self.name}")
            nodes[node]["online"] = action == "node_online"
        elif action == "move_guest":
            vmid, node = str(spec.get("vmid")), spec.get("node")
            guest = self.state["guests"].get(vmid)
            if guest is None:
                raise faultmod.FaultError(f"no guest {vmid} in cabinet {self.name}")
            if node is None:
                others = [n for n in nodes if n != guest["node"]]
                if not others:
                    raise faultmod.FaultError("the cabinet has a single node: nowhere to move to")
                node = others[0]
            if node not in nodes:
                raise faultmod.FaultError(f"no node {node!r} in cabinet {self.name}")
            guest["node"] = node
        if spec.get("kind") == "clear":
            for data in nodes.values():
                data["online"] = True
        self.changed()


def _expired(entry: dict[str, Any]) -> bool:
    expire = int(entry.get("expire") or 0)
    return bool(expire) and expire < time.time()


async def _read_params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in parse_qsl(request.query_string, keep_blank_values=True):
        _add(params, key, value)
    if request.can_read_body:
        ctype = request.content_type
        if ctype == "multipart/form-data":
            form = await request.post()
            for name, field in form.items():
                if isinstance(field, web.FileField):
                    params[name] = field.filename
                    params[UPLOAD_SIZE] = len(field.file.read())
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
    return params


def _add(params: dict[str, Any], key: str, value: str) -> None:
    if key in params:
        prev = params[key]
        params[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
    else:
        params[key] = value


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

    def add_cabinet(self, name: str, model: Any | None = None) -> SimCabinet:
        from kloudctl.sim import handlers  # noqa: F401  (registers the handlers)

        folder = self.state_dir / name if self.state_dir else None
        state_file = folder / "state.json" if folder else None
        state = persist.load_state(state_file) if state_file else None
        secrets_file = folder / "credentials.json" if folder else None
        root_password = None
        if secrets_file is not None and secrets_file.exists():
            root_password = json.loads(secrets_file.read_text())["root_password"]
        if state is None or root_password is None:
            state = new_state(name, model)
            root_password = new_secret()
            state["access"]["users"]["root@pam"]["password"] = hash_secret(root_password)
            if folder is not None and secrets_file is not None:
                # Test-cabinet credentials, readable by the owner only (never in git or logs).
                persist.write_atomic(
                    secrets_file, json.dumps({"root_password": root_password}).encode()
                )
                persist.save_state(state_file, state)  # type: ignore[arg-type]
        cab = SimCabinet(
            name,
            state,
            root_password=root_password,
            state_file=state_file,
            task_seconds=self.task_seconds,
            control_token=self.control_token,
        )
        self.cabinets[name] = cab
        return cab

    def make_app(self, cab: SimCabinet) -> web.Application:
        async def dispatch(request: web.Request) -> web.StreamResponse:
            if request.path.startswith(API_PREFIX + "/") or request.path == API_PREFIX:
                return await cab.handle_api(request)
            if request.path.startswith(CONTROL_PREFIX + "/"):
                return await cab.handle_control(request)
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
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        for cab in self.cabinets.values():
            for job in list(cab._running):
                job.cancel()
            if cab._save_handle is not None:
                cab._save_handle.cancel()
            cab.save()
