"""Where replication keeps its repositories, secrets and memory on the machine that runs it.

The state folder (default `<fleet>/.state/replication`, or `KLOUDCTL_REPLICATION_STATE`, or
`--state-dir`) holds:

    endpoints.json                  where each cabinet's repository and rest-server are
    secrets/            (0700)      generated once, 0600, never printed, never in git:
      <cab>.local.password            key of the cabinet's local repository
      <src>@<peer>.password           the source's key to its copy on the peer
      <src>@<peer>.owner.password     the peer owner's key to that copy (it prunes by age)
      <src>@<peer>.rest               `src:password`, the source's rest-server identity
    cabinets/<cab>/repo             the local repository, unless endpoints.json says otherwise
    cabinets/<cab>/state.json       integrity-check rotation and results, last runs
    cabinets/<cab>/run.lock         flock: runs of one cabinet never overlap
    cache/                          restic's cache

On a cabinet the `replication_source` role writes the same layout under
/var/lib/kloudctl/replication, so the same code runs there and on a controller.

`endpoints.json` (written by `kloudctl replication serve` for loopback cabinets, by the
testbed, or by hand for real cabinets):

    {"cabinets": {"brieux": {"repository": "/path/or/empty-for-default",
                             "root": "/optional/prefix/for/backed-up/paths",
                             "server": {"url": "https://127.0.0.2:8000",
                                        "cacert": "/path/ca.pem",
                                        "data_dir": "/path/only/where/the/owner/runs"},
                             "ssh": {"address": "192.0.2.10", "user": "root",
                                     "options": ["-i", "/path/key"],
                                     "fleet": "/etc/kloudctl/fleet"},
                             "storages": {"pve1/local": "/folder/of/the/storage"}}},
     "generate_secrets": true}

`storages` says where a cabinet's path-based Proxmox storages are on this machine (written
by `kloudctl sim up` for simulated cabinets): the failover commands move backup archives
through them.

A cabinet with `ssh` is a real host where kloudctl itself is installed (`kloudctl
replication deploy`): its runs, status and restore tests execute there, over SSH, and the
controller reads only what comes back. On a cabinet, `generate_secrets` is false: its
secrets come from the controller, and a missing one is an error, never a new key.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kloudctl import files
from kloudctl.errors import InputError, KloudError, NotFound
from kloudctl.federation.peers import PeerResolver
from kloudctl.model import Fleet
from kloudctl.replication.restic import Repo
from kloudctl.ssh import SshTarget

STATE_ENV = "KLOUDCTL_REPLICATION_STATE"
NOW_ENV = "KLOUDCTL_NOW"
LATEST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z, the last time datetime can show


class AlreadyRunning(KloudError):
    """Another replication run of this cabinet holds its lock."""


def now(override: str | None = None) -> float:
    """The clock: `--now` or KLOUDCTL_NOW (epoch seconds or ISO 8601) for tests, else real time."""
    value = override if override is not None else os.environ.get(NOW_ENV)
    if not value:
        return time.time()
    expected = (
        f"--now/{NOW_ENV}: expected epoch seconds (0 to {LATEST_TIME:.0f}) or ISO 8601,"
        f" got '{value}'"
    )
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(expected) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = parsed.timestamp()
    if not 0 <= seconds <= LATEST_TIME:  # also refuses nan and inf
        raise InputError(expected)
    return seconds


@dataclass(frozen=True)
class Server:
    url: str
    cacert: Path | None = None
    data_dir: Path | None = None


@dataclass(frozen=True)
class Ssh:
    """How the controller reaches a cabinet where kloudctl is installed."""

    address: str
    user: str = "root"
    options: tuple[str, ...] = ()
    fleet: str = "/etc/kloudctl/fleet"
    state: str = "/var/lib/kloudctl/replication"

    @property
    def target(self) -> SshTarget:
        """The one SSH path's target for this cabinet."""
        return SshTarget(self.address, self.user, options=self.options)


@dataclass(frozen=True)
class Endpoint:
    repository: Path
    root: Path | None
    server: Server | None
    ssh: Ssh | None = None


def state_folder(fleet_root: Path, override: str | Path | None = None) -> Path:
    """The replication state folder: the one given, else $KLOUDCTL_REPLICATION_STATE, else
    the fleet's `.state/replication` (not resolved, not made)."""
    return Path(override or os.environ.get(STATE_ENV) or fleet_root / ".state" / "replication")


@dataclass(frozen=True)
class Layout:
    state: Path
    #: Read commands (status, check) never make the state folder or a secret: what is
    #: missing is reported, so a mistyped --state-dir changes nothing.
    read_only: bool = False

    @classmethod
    def for_fleet(
        cls, fleet_root: Path, override: str | Path | None = None, *, read_only: bool = False
    ) -> Layout:
        layout = cls(state_folder(fleet_root, override).resolve(), read_only)
        if read_only:
            files.existing_store(
                layout.state,
                "replication state folder",
                "give the --state-dir (or KLOUDCTL_REPLICATION_STATE) that `kloudctl"
                " replication run` uses; a first run, or `replication serve`, makes it",
                folder=True,
            )
        return layout

    # ---- folders and files
    @property
    def secrets(self) -> Path:
        return self.state / "secrets"

    @property
    def cache(self) -> Path:
        return self.state / "cache"

    def cabinet_dir(self, cabinet: str) -> Path:
        return self.state / "cabinets" / cabinet

    def state_file(self, cabinet: str) -> Path:
        return self.cabinet_dir(cabinet) / "state.json"

    # ---- endpoints
    def endpoints(self) -> dict[str, Any]:
        path = self.state / "endpoints.json"
        if not path.exists():
            return {"cabinets": {}}
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise InputError(f"{path}: not valid JSON: {exc}") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
        if not isinstance(data, dict) or not isinstance(data.get("cabinets", {}), dict):
            raise InputError(f"{path}: expected an object with a 'cabinets' object")
        data.setdefault("cabinets", {})
        return data

    def write_endpoints(self, data: dict[str, Any]) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        files.write_atomic(
            self.state / "endpoints.json", json.dumps(data, indent=2, sort_keys=True) + "\n"
        )

    def endpoint(self, cabinet: str) -> Endpoint:
        entry = self.endpoints()["cabinets"].get(cabinet, {})
        repo = entry.get("repository") or str(self.cabinet_dir(cabinet) / "repo")
        root = entry.get("root")
        server = entry.get("server")
        srv = None
        if server:
            srv = Server(
                url=server["url"].rstrip("/"),
                cacert=Path(server["cacert"]) if server.get("cacert") else None,
                data_dir=Path(server["data_dir"]) if server.get("data_dir") else None,
            )
        ssh = entry.get("ssh")
        remote = None
        if ssh:
            remote = Ssh(
                address=ssh["address"],
                user=ssh.get("user", "root"),
                options=tuple(ssh.get("options", ())),
                fleet=ssh.get("fleet", Ssh.fleet),
                state=ssh.get("state", Ssh.state),
            )
        return Endpoint(Path(repo), Path(root) if root else None, srv, remote)

    def update_endpoints(self, cabinets: dict[str, dict[str, Any]]) -> None:
        """Replace the entries of these cabinets, keep the others."""
        data = self.endpoints()
        data["cabinets"].update(cabinets)
        self.write_endpoints(data)

    def record_storages(self, storages: dict[str, dict[str, str]]) -> None:
        """Record where each cabinet's storage folders are on this machine (`storages:
        {"NODE/STORAGE": FOLDER}`, what `kloudctl sim up` reports for a simulated cabinet),
        keeping the rest of each entry."""
        data = self.endpoints()
        for cabinet, folders in storages.items():
            data["cabinets"].setdefault(cabinet, {})["storages"] = dict(folders)
        self.write_endpoints(data)

    # ---- secrets
    def secret(self, name: str) -> Path:
        """The path of a generated secret; created once (0600) if it does not exist."""
        path = self.secrets / name
        if path.exists():
            return path
        if self.read_only:
            raise KeyNotMade(
                f"secret {path} is missing: `kloudctl replication run` makes the keys of"
                " the cabinets it runs (with this --state-dir)"
            )
        if self.endpoints().get("generate_secrets") is False:
            raise NotFound(
                f"secret {path} is missing: secrets come from the controller "
                "(`kloudctl replication deploy`)"
            )
        self.secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.secrets, 0o700)
        files.create_once(path, secrets.token_urlsafe(32) + "\n", mode=0o600, what="secret")
        return path

    def rest_identity(self, source: str, peer: str) -> Path:
        path = self.secrets / f"{source}@{peer}.rest"
        if not path.exists():
            password = self.secret(f"{source}@{peer}.rest-password").read_text().strip()
            files.create_once(path, f"{source}:{password}\n", mode=0o600, what="secret")
        return path

    def htpasswd_line(self, source: str, peer: str) -> str:
        """`source:$2b$...`, the bcrypt hash rest-server checks (it caches a success for a
        minute, so bcrypt's cost is paid once per connection burst, not per request).
        Made once: the salt is random, and a stable line keeps Ansible runs idempotent."""
        path = self.secrets / f"{source}@{peer}.htpasswd"
        if not path.exists():
            import bcrypt

            user, password = self.rest_identity(source, peer).read_text().strip().split(":", 1)
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
            files.write_atomic(path, f"{user}:{hashed}\n", mode=0o600, what="secret")
        return path.read_text().strip()

    def ensure_secrets(
        self, fleet: Fleet, cabinets: list[str], resolver: PeerResolver | None = None
    ) -> list[str]:
        """Every secret these cabinets and their peers need, made now if missing; their names."""
        resolver = resolver or PeerResolver(fleet)
        names = []
        for cabinet in cabinets:
            names.append(self.secret(f"{cabinet}.local.password").name)
            for peer in resolver.peers(cabinet, strict=False):
                names.append(self.secret(f"{cabinet}@{peer}.password").name)
                names.append(self.secret(f"{cabinet}@{peer}.owner.password").name)
                names.append(self.rest_identity(cabinet, peer).name)
                self.htpasswd_line(cabinet, peer)
                names.append(f"{cabinet}@{peer}.htpasswd")
        return names

    # ---- repositories
    def local_repo(self, cabinet: str) -> Repo:
        return Repo(
            str(self.endpoint(cabinet).repository),
            password_file=self.secret(f"{cabinet}.local.password"),
        )

    def peer_repo(self, source: str, peer: str) -> Repo:
        server = self.endpoint(peer).server
        if server is None:
            raise NotFound(
                f"no rest-server known for cabinet '{peer}' (peer of '{source}'): declare it in "
                f"{self.state / 'endpoints.json'} or start one with `kloudctl replication serve`"
            )
        hint = self.state / "key-hints" / f"{source}@{peer}"
        return Repo(
            f"rest:{server.url}/{source}/",
            password_file=self.secret(f"{source}@{peer}.password"),
            rest_credentials_file=self.rest_identity(source, peer),
            cacert=server.cacert,
            # The copy has two keys (the source's, the owner's); each wrong try costs a
            # full scrypt derivation, so tell restic which one to try first.
            key_hint=hint.read_text().strip() if hint.exists() else None,
        )

    def remember_key_hint(self, source: str, peer: str, key_id: str) -> None:
        folder = self.state / "key-hints"
        folder.mkdir(parents=True, exist_ok=True)
        files.write_atomic(folder / f"{source}@{peer}", key_id + "\n")

    def hosted_repo(self, owner: str, source: str) -> Repo:
        """The copy of `source` that `owner` hosts, opened directly by the owner to prune it."""
        server = self.endpoint(owner).server
        if server is None or server.data_dir is None:
            raise NotFound(f"cabinet '{owner}' has no rest-server data folder here")
        return Repo(
            str(server.data_dir / source),
            password_file=self.secret(f"{source}@{owner}.owner.password"),
        )

    # ---- per-cabinet state (our bookkeeping: check rotation, results, run times)
    def load_state(self, cabinet: str) -> dict[str, Any]:
        path = self.state_file(cabinet)
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def save_state(self, cabinet: str, data: dict[str, Any]) -> None:
        self.cabinet_dir(cabinet).mkdir(parents=True, exist_ok=True)
        files.write_atomic(
            self.state_file(cabinet), json.dumps(data, indent=2, sort_keys=True) + "\n"
        )

    @contextlib.contextmanager
    def run_lock(self, cabinet: str) -> Iterator[None]:
        self.cabinet_dir(cabinet).mkdir(parents=True, exist_ok=True)
        with open(self.cabinet_dir(cabinet) / "run.lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AlreadyRunning(
                    f"a replication run of '{cabinet}' is already in progress"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def replicated_cabinets(fleet: Fleet, name: str | None, all_: bool) -> list[str]:
    """The cabinets a command acts on: one by name, or every one that replicates."""
    if name and all_:
        raise InputError("give a cabinet name or --all, not both")
    if name:
        cab = fleet.cabinet(name)
        if cab.replication is None:
            raise InputError(f"cabinet '{name}' declares no replication")
        return [name]
    if not all_:
        raise InputError("give a cabinet name or --all")
    return sorted(c.name for c in fleet if c.replication is not None)


def sources_of(fleet: Fleet, owner: str, resolver: PeerResolver | None = None) -> list[str]:
    """Cabinets whose copies `owner` hosts: their declared peers, or their `auto` choice."""
    return (resolver or PeerResolver(fleet)).sources_of(owner)


def probe(url: str, timeout: float = 3.0) -> None:
    """Is anything listening at the peer's rest-server? Raise PeerUnreachable if not."""
    parsed = urlsplit(url.removeprefix("rest:"))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            pass
    except OSError as exc:
        raise PeerUnreachable(f"{parsed.hostname}:{port}: {exc.strerror or exc}") from None


class KeyNotMade(NotFound):
    """A read found no key for a repository: no run has made it in this state folder, so
    nothing was ever replicated from here."""


class PeerUnreachable(KloudError):
    """The peer's rest-server does not answer."""
