"""One simulated cabinet, without HTTP: its state, locks, tasks, credentials and faults.

`SimCabinet` is what handlers reach through `call.cab`: the JSON state and its
bookkeeping (cache, persistence), node lookup, per-guest locks, tasks that run on the event
loop (with the injected faults), who a request's credentials name, and the faults the
control endpoint applies. `open_cabinet` loads one from its state folder or seeds a new
one. Serving it over HTTPS is `kloudctl.sim.server`'s work.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from kloudctl.sim import faults as faultmod
from kloudctl.sim import persist, tasks
from kloudctl.sim.auth import AuthError, TicketSigner, parse_token_header
from kloudctl.sim.errors import ApiError
from kloudctl.sim.perms import AccessControl, Identity
from kloudctl.sim.schema import Method
from kloudctl.sim.state import (
    ARCHIVE_DISK_BYTES,
    PATH_STORAGE_TYPES,
    hash_secret,
    new_secret,
    new_state,
    verify_secret,
)


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
        #: bytes of stand-in data per disk in a vzdump archive (a bench sets archives of a
        #: realistic size)
        self.archive_disk_bytes = ARCHIVE_DISK_BYTES
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
        self.endpoint: Endpoint | None = None
        self.recorder: list[tuple[tuple[str, str], Any]] | None = None  # conformance tests
        self._files_root: Path | None = None
        self._files_temporary = False
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

    def close(self) -> None:
        """Stop the running tasks and write the state now."""
        for job in list(self._running):
            job.cancel()
        if self._save_handle is not None:
            self._save_handle.cancel()
        self.save()
        if self._files_temporary and self._files_root is not None:
            shutil.rmtree(self._files_root, ignore_errors=True)

    @property
    def files_root(self) -> Path:
        """Where the files of this cabinet's directory storages live (backup archives):
        next to its state file, or for an ephemeral cabinet a temporary folder that
        `close()` removes."""
        if self._files_root is None:
            if self.state_file is not None:
                self._files_root = self.state_file.parent / "storage"
            else:
                self._files_root = Path(tempfile.mkdtemp(prefix=f"kloudsim-{self.name}-"))
                self._files_temporary = True
        return self._files_root

    def storage_folder(self, node: str, storage: str) -> Path:
        """The real folder standing for a path-based storage on `node` (its backups are
        in `dump/`). A shared storage has one folder for every node."""
        where = "shared" if self.state["storages"][storage].get("shared") else node
        return self.files_root / where / storage

    def path_storages(self) -> dict[str, str]:
        """`{"NODE/STORAGE": FOLDER}` for every path-based storage on every node: where the
        files of its storages are, for a client on this machine (kloudctl's failover reads
        and writes backup archives there, as it would on a cabinet's host)."""
        return {
            f"{node}/{sid}": str(self.storage_folder(node, sid))
            for sid, st in sorted(self.state["storages"].items())
            if st.get("type") in PATH_STORAGE_TYPES
            for node in sorted(self.state["nodes"])
        }

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
        who: Identity,
        kind: str,
        ident: str,
        node: str,
        work: Callable[[dict[str, Any]], None] | None = None,
        *,
        lock: int | None = None,
        on_error: Callable[[], None] | None = None,
        seconds: float | None = None,
    ) -> str:
        """Start a task of `who` on the running loop; return its UPID. `work(task)` runs
        when it ends (an `ApiError` there fails the task), `on_error()` when it fails;
        `lock` holds that guest's lock for the task's duration."""
        user = who.authid
        if self.faults.no_worker_upid > 0:
            self.faults.no_worker_upid -= 1
            raise ApiError(500, "got no worker upid - start worker failed")
        if lock is not None:
            self.lock(lock)
        task = tasks.new_task(self.state, node, kind, ident, user)
        if lock is not None:
            self.locks[lock] = task["upid"]
        task["log"].append(f"simulated {kind} task for {ident or node} by {user}")
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
            except Exception as exc:  # a worker that dies ends its task
                # As a PVE worker's `die` does: the task ends with the message as its exit
                # status; a client polling it must never wait for a task nobody runs.
                if on_error:
                    on_error()
                tasks.finish(task, error=f"{type(exc).__name__}: {exc}".strip())
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

    # -- credentials ----------------------------------------------------------------------------
    def authenticate(
        self,
        method: Method,
        *,
        authorization: str,
        cookie: str | None,
        csrf: str | None,
        write: bool,
    ) -> Identity | None:
        """Who an API token (`Authorization` header) or a ticket (`PVEAuthCookie`, with the
        CSRF token on writes) names; None without credentials. Raises `AuthError`."""
        if authorization.startswith("PVEAPIToken="):
            who, secret = parse_token_header(authorization)
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
            if not user.get("enable", 1) or expired(user) or expired(token):
                raise AuthError("invalid token value!")
            if not method.allowtoken:
                raise AuthError("API tokens are not allowed for this API call")
            return who
        if cookie:
            userid = self.signer.verify_ticket(unquote(cookie))
            user = self.state["access"]["users"].get(userid)
            if not user or not user.get("enable", 1):
                raise AuthError("invalid PVE ticket")
            if write:
                self.signer.verify_csrf(csrf, userid)
            return Identity(userid)
        return None

    # -- faults ---------------------------------------------------------------------------------
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


def expired(entry: dict[str, Any]) -> bool:
    """Whether a user or token's `expire` (epoch seconds, 0 for never) has passed."""
    expire = int(entry.get("expire") or 0)
    return bool(expire) and expire < time.time()


def open_cabinet(
    name: str,
    model: Any | None,
    folder: Path | None,
    *,
    task_seconds: float,
    control_token: str,
) -> SimCabinet:
    """The cabinet kept in `folder` (state and credentials), or a new one seeded from the
    fleet model (written there when there is a folder; ephemeral without one)."""
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
    return SimCabinet(
        name,
        state,
        root_password=root_password,
        state_file=state_file,
        task_seconds=task_seconds,
        control_token=control_token,
    )
