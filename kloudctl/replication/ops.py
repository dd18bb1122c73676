"""Replication operations: back up to the local repository, copy to the peer, prune, check.

    run(cabinet) = ensure repos -> backup (paths, then each streamed command)
                   -> copy new snapshots to each peer -> prune local by count
                   -> prune the copies this cabinet hosts, by age (daily, as their owner)
                   -> integrity checks (structural every run, one data slice a day)

Every restic call goes through `kloudctl.replication.restic.Restic`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kloudctl import ON_CABINET
from kloudctl.answers import UnexpectedAnswer, dig, number
from kloudctl.errors import KloudError, RepositoryMissing, ResticError
from kloudctl.federation.peers import PeerResolver
from kloudctl.model import BackupPolicy, Fleet
from kloudctl.replication import restic as r
from kloudctl.replication.agent_interface import RunOptions, tool_name
from kloudctl.replication.layout import Layout, Ssh, now, probe, sources_of
from kloudctl.replication.remote import ask_agent
from kloudctl.replication.restic import Outcome, Repo, Restic, parse_time

DAY = 86400
TAG = "kloudctl"
PEER_TIMEOUT = 120.0  # restic retries an unreachable server for minutes: cut it short


@dataclass
class Step:
    name: str  # backup:paths, backup:cmd:NAME, copy:PEER, prune:local, prune:hosted:SRC, check:...
    ok: bool
    duration: float
    detail: str = ""
    warning: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, tool: str = "kloudctl replication run") -> Step:
        """A step as `kloudctl replication run --json` (or a cabinet's agent, `tool`) reports it."""
        if not isinstance(data, dict):
            raise UnexpectedAnswer(tool, "each step to be an object", data)
        known = {"step", "ok", "warning", "duration", "detail"}
        return cls(
            str(data.get("step", "?")),
            bool(data.get("ok")),
            number(tool, data, "duration", default=0.0),
            str(data.get("detail", "")),
            bool(data.get("warning")),
            {k: v for k, v in data.items() if k not in known},
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "ok": self.ok,
            "warning": self.warning,
            "duration": round(self.duration, 3),
            "detail": self.detail,
            **self.data,
        }


@dataclass
class RunReport:
    cabinet: str
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"cabinet": self.cabinet, "ok": self.ok, "steps": [s.as_dict() for s in self.steps]}


@dataclass
class Replicator:
    fleet: Fleet
    layout: Layout
    restic: Restic = field(default_factory=Restic)
    clock: str | None = None  # an injected "now" (tests); None = real time
    #: where the federation's registry and the `peers: auto` choices are (None: the default)
    federation_state: Path | None = None
    #: `peers: auto` answered only by the choices the controller shipped into this
    #: replication state folder (`peer-choices/`): always on a cabinet, where no choice is
    #: ever made (None: on a cabinet's kloudctl, yes; on the controller, no)
    shipped_choices: bool | None = None
    resolver: PeerResolver = field(init=False)

    def __post_init__(self) -> None:
        shipped = ON_CABINET if self.shipped_choices is None else self.shipped_choices
        self.resolver = PeerResolver(
            self.fleet, self.federation_state, shipped=self.layout.state if shipped else None
        )
        if self.restic.cache_dir is None:
            self.restic.cache_dir = self.layout.cache

    # ---- helpers
    def policy(self, cabinet: str) -> BackupPolicy:
        policy = self.fleet.policy_for(self.fleet.cabinet(cabinet))
        if policy is None:
            raise KloudError(f"cabinet '{cabinet}' declares no replication")
        return policy

    def peers(self, cabinet: str, *, commit: bool = False) -> list[str]:
        """The cabinet's peers: declared, or its `auto` choice (`commit` records a first or
        changed choice: commands that copy)."""
        return self.resolver.peers(cabinet, commit=commit)

    def rpo(self, cabinet: str) -> int:
        rep = self.fleet.cabinet(cabinet).replication
        return (rep.rpo if rep and rep.rpo else None) or self.policy(cabinet).rpo

    def _step(self, report: RunReport, name: str, fn: Any, *args: Any, **kw: Any) -> Step:
        started = time.monotonic()
        try:
            detail, data, warning = fn(*args, **kw)
            step = Step(name, True, time.monotonic() - started, detail, warning, data)
        except ResticError as exc:
            step = Step(name, False, time.monotonic() - started, str(exc), data={"exit": exc.code})
        except KloudError as exc:  # peer unreachable, missing endpoint...
            step = Step(name, False, time.monotonic() - started, str(exc))
        report.steps.append(step)
        return step

    # ---- repositories
    def ensure_local(self, cabinet: str) -> Repo:
        repo = self.layout.local_repo(cabinet)
        if not (Path(repo.location) / "config").exists():
            Path(repo.location).parent.mkdir(parents=True, exist_ok=True)
            self.restic.run(repo, r.init_args())
        return repo

    def ensure_peer(self, cabinet: str, peer: str) -> Repo:
        """The peer copy, created if missing with the local repository's chunker parameters."""
        remote = self.layout.peer_repo(cabinet, peer)
        probe(remote.location)
        try:
            self.restic.run(remote, ["cat", "config"])
        except RepositoryMissing:
            self.init_peer(cabinet, peer)
        return remote

    def init_peer(self, cabinet: str, peer: str) -> None:
        local = self.layout.local_repo(cabinet)
        remote = self.layout.peer_repo(cabinet, peer)
        self.restic.run(
            remote, r.init_args(from_repo=local, copy_chunker_params=True), from_repo=local
        )
        # The owner of the peer prunes by age, so it needs a key of its own.
        owner_key = self.layout.secret(f"{cabinet}@{peer}.owner.password")
        self.restic.run(remote, ["key", "add", "--new-password-file", str(owner_key)])
        listed = self.restic.run(remote, ["key", "list"])
        keys = r.document(listed, "restic key list", list)
        mine = [k.get("id") for k in keys if isinstance(k, dict) and k.get("current")]
        if mine and mine[0]:
            self.layout.remember_key_hint(cabinet, peer, str(mine[0]))

    # ---- the steps
    def backup(self, cabinet: str) -> list[Step]:
        policy = self.policy(cabinet)
        local = self.ensure_local(cabinet)
        root = self.layout.endpoint(cabinet).root
        report = RunReport(cabinet)
        if policy.include.paths:
            paths = [_under(root, p) for p in policy.include.paths]
            args = r.backup_paths_args(
                paths,
                host=cabinet,
                tags=[TAG, "paths"],
                excludes=[
                    _under(root, e) if e.startswith("/") else e for e in policy.include.exclude
                ],
            )
            self._step(report, "backup:paths", self._backup, local, args)
        for cmd in policy.include.commands:
            args = r.backup_command_args(
                cmd.command, filename=cmd.filename, host=cabinet, tags=[TAG, f"cmd:{cmd.name}"]
            )
            self._step(report, f"backup:cmd:{cmd.name}", self._backup, local, args)
        return report.steps

    def _backup(self, repo: Repo, args: list[str]) -> tuple[str, dict[str, Any], bool]:
        result = self.restic.run(repo, args)
        # A backup that names no snapshot saved none: never report it as done.
        snapshot = dig("restic backup", result.summary, "snapshot_id", kind=str)
        summary = result.summary or {}
        data = {
            "snapshot": snapshot,
            "data_added": summary.get("data_added"),
            "files_new": summary.get("files_new"),
            "files_changed": summary.get("files_changed"),
        }
        warning = result.outcome is Outcome.WARNING
        detail = f"snapshot {snapshot[:8]}"
        if warning:
            detail += f", {len(result.errors)} item(s) unreadable (snapshot kept)"
        return detail, data, warning

    def copy(self, cabinet: str, peer: str) -> tuple[str, dict[str, Any], bool]:
        local = self.layout.local_repo(cabinet)
        remote = self.layout.peer_repo(cabinet, peer)
        probe(remote.location)
        try:
            result = self.restic.run(remote, r.copy_args(local), from_repo=local)
        except RepositoryMissing:  # first copy: create the peer repository, then copy
            self.init_peer(cabinet, peer)
            result = self.restic.run(remote, r.copy_args(local), from_repo=local)
        copied = sum(
            1 for line in result.text if line.startswith("snapshot ") and line.endswith(" saved")
        )
        # Read back what the peer now holds: the check's next look needs no key derivation.
        try:
            on_peer = f", {len(self.peer_snapshots(cabinet, peer))} on {peer}"
        except KloudError:  # ResticError included: the copy is done, the check reads later
            on_peer = ""
        return f"{copied} snapshot(s) copied{on_peer}", {"copied": copied}, False

    def peer_snapshots(
        self, cabinet: str, peer: str, state: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The snapshots of `cabinet`'s copy on `peer`, read with restic; their times are
        remembered by id in the cabinet's state (`state` if given, else saved here), so a
        check finds them from the repository's listing alone (status.peer_snapshot_times)."""
        repo = self.layout.peer_repo(cabinet, peer)
        probe(repo.location)
        args = [*r.snapshots_args(), "--no-lock"]  # reading needs no lock
        result = self.restic.run(repo, args, retry_locked=False, timeout=PEER_TIMEOUT)
        snaps = r.snapshot_list(result)
        mine = state if state is not None else self.layout.load_state(cabinet)
        times = {str(s["id"]): parse_time(s["time"]) for s in snaps}
        mine.setdefault("peer_snapshot_times", {})[peer] = times
        if state is None:
            self.layout.save_state(cabinet, mine)
        return snaps

    def prune_local(self, cabinet: str) -> tuple[str, dict[str, Any], bool]:
        keep = self.policy(cabinet).retention.local.model_dump()
        self.restic.run(self.layout.local_repo(cabinet), r.forget_args(keep=keep))
        return "pruned by count", {}, False

    def prune_hosted(self, owner: str, source: str) -> tuple[str, dict[str, Any], bool]:
        """The owner of a peer repository prunes it by age (counts could be gamed)."""
        within = self.policy(source).retention.peer.model_dump()
        self.restic.run(self.layout.hosted_repo(owner, source), r.forget_args(keep_within=within))
        return "pruned by age", {}, False

    def integrity(
        self, cabinet: str, repo_key: str, repo: Repo, *, force_data: bool = False
    ) -> Step:
        """Structural check every run; one slice of the data a day, rotating through all."""
        state = self.layout.load_state(cabinet)
        checks = state.setdefault("checks", {})
        mine = checks.setdefault(repo_key, {})
        days = self.policy(cabinet).check.read_data_days
        t = now(self.clock)
        subset = None
        if force_data or t - float(mine.get("last_read_data", 0)) >= DAY:
            n = int(mine.get("next_slice", 1))
            if n > days:
                n = 1
            subset = f"{n}/{days}"
        started = time.monotonic()
        try:
            result = self.restic.run(repo, r.check_args(read_data_subset=subset), retry_locked=True)
            # restic 0.18 always ends a check with its summary: no summary is no verdict.
            ok = dig("restic check", result.summary, "num_errors", kind=int) == 0
            broken = dig("restic check", result.summary, "broken_packs", kind=list, default=[])
            detail = "structural" + (f" + data slice {subset}" if subset else "")
        except (ResticError, UnexpectedAnswer) as exc:
            ok, broken, detail = False, [], f"{exc}"
        duration = time.monotonic() - started
        mine.update(
            {
                "time": t,
                "ok": ok,
                "kind": detail if ok else mine.get("kind", "structural"),
                "detail": detail,
                "broken_packs": broken,
                "duration": round(duration, 3),
            }
        )
        if ok:
            mine["last_success"] = t
        if subset and ok:
            n = int(subset.split("/")[0])
            mine["last_read_data"] = t
            mine["next_slice"] = n % days + 1
        self.layout.save_state(cabinet, state)
        return Step(
            f"check:{repo_key}", ok, duration, detail, data={"broken_packs": mine["broken_packs"]}
        )

    def check_integrity(self, cabinet: str) -> list[Step]:
        """The tiered checks of the local repository and of each peer copy, now."""
        steps = [self.integrity(cabinet, "local", self.layout.local_repo(cabinet))]
        for peer in self.peers(cabinet):
            repo = self.layout.peer_repo(cabinet, peer)
            steps.append(self.integrity(cabinet, f"peer:{peer}", repo))
        return steps

    # ---- a whole run
    def run(self, cabinet: str, *, prune: bool = True, check: bool = True) -> RunReport:
        ssh = self.layout.endpoint(cabinet).ssh
        if ssh is not None:
            return self._run_on_cabinet(cabinet, ssh, prune=prune, check=check)
        if self.restic.binary is None:  # no restic: say so before a key or folder is made
            r.find_restic()
        report = RunReport(cabinet)
        started = time.monotonic()
        # Where the copies go, recorded before anything is made (`peers: auto` with no
        # registry or no eligible member stops here, with the reason).
        peers = self.resolver.resolve(cabinet, commit=True)
        if peers.verdict != "declared":
            detail = "; ".join([f"{peers.verdict}: {peers.why}", *peers.warnings.values()])
            report.steps.append(Step("peers:auto", True, 0.0, detail, bool(peers.warnings)))
        with self.layout.run_lock(cabinet):
            report.steps += self.backup(cabinet)
            backed_up = all(s.ok for s in report.steps)
            for peer in peers.peers:
                if backed_up:
                    self._step(report, f"copy:{peer}", self.copy, cabinet, peer)
            if prune and backed_up:
                self._step(report, "prune:local", self.prune_local, cabinet)
            if prune:
                self._prune_hosted_daily(cabinet, report)
            if check:
                report.steps.append(
                    self.integrity(cabinet, "local", self.layout.local_repo(cabinet))
                )
        self._remember_run(cabinet, report, time.monotonic() - started)
        return report

    def _run_on_cabinet(self, cabinet: str, ssh: Ssh, *, prune: bool, check: bool) -> RunReport:
        """The cabinet runs itself (its files, its repository, its keys): ask its agent."""
        options = RunOptions(prune=prune, check=check, now=self.clock)
        started = time.monotonic()
        tool = tool_name(cabinet)
        try:
            _code, report = ask_agent(ssh, cabinet, options)
            if dig(tool, report, "cabinet", kind=str) != cabinet:
                raise UnexpectedAnswer(tool, f"the report of {cabinet}", report)
            steps = dig(tool, report, "steps", kind=list)
            return RunReport(cabinet, [Step.from_dict(s, tool) for s in steps])
        except KloudError as exc:
            step = Step("ssh", False, time.monotonic() - started, str(exc))
            return RunReport(cabinet, [step])

    def _prune_hosted_daily(self, owner: str, report: RunReport) -> None:
        server = self.layout.endpoint(owner).server
        if server is None or server.data_dir is None:
            return  # this machine is not where the owner's rest-server keeps its data
        state = self.layout.load_state(owner)
        pruned = state.setdefault("hosted_pruned", {})
        t = now(self.clock)
        for source in sources_of(self.fleet, owner, self.resolver):
            if not (server.data_dir / source / "config").exists():
                continue
            if t - float(pruned.get(source, 0)) < DAY:
                continue
            step = self._step(report, f"prune:hosted:{source}", self.prune_hosted, owner, source)
            if step.ok:
                pruned[source] = t
        self.layout.save_state(owner, state)

    def _remember_run(self, cabinet: str, report: RunReport, duration: float) -> None:
        state = self.layout.load_state(cabinet)
        t = now(self.clock)
        jobs = state.setdefault("jobs", {})
        totals: dict[str, tuple[float, bool]] = {}
        for step in report.steps:
            job = step.name.split(":")[0]
            spent, ok = totals.get(job, (0.0, True))
            totals[job] = (spent + step.duration, ok and step.ok)
        for job, (spent, ok) in totals.items():
            entry = jobs.setdefault(job, {})
            entry.update(last_run=t, duration=round(spent, 3), ok=ok)
            if ok:
                entry["last_success"] = t
        state["last_run"] = {"time": t, "ok": report.ok, "duration": round(duration, 3)}
        self.layout.save_state(cabinet, state)


def _under(root: Path | None, path: str) -> str:
    """Paths of the policy, re-rooted for a cabinet simulated as a folder."""
    if root is None:
        return path
    return str(root / path.lstrip("/"))
