"""Roles, ACLs and the schema's `permissions.check` expressions, as PVE evaluates them.

Built-in roles are generated the way PVE::AccessControl does it: privileges are split per
category into root/admin/user/audit groups; `PVE<Cat>Admin` gets admin+user+audit,
`PVE<Cat>User` user+audit (when the category has user privileges), `PVEAdmin` every
non-root privilege, `PVEAuditor` every audit privilege, `Administrator` all, `NoAccess`
none, `PVETemplateUser` VM.Clone+VM.Audit. The groups are those of PVE 9 (VM.Monitor
replaced by the VM.GuestAgent.* privileges, SDN.Use, Mapping.*, VM.Replicate).

ACL resolution (`roles`): walk the path from `/` down; at each level a token rule replaces
what was inherited, else a user rule, else the union of the user's groups' rules; rules
apply to the level they sit on, and below only when propagating; `NoAccess` cancels.
Members of a pool also get what the ACLs give on `/pool/<pool>`. A privilege-separated
token gets the intersection of its own rights and its user's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_PRIVGROUPS: dict[str, dict[str, list[str]]] = {
    "VM": {
        "root": [],
        "admin": [
            "VM.Config.Disk",
            "VM.Config.CPU",
            "VM.Config.Memory",
            "VM.Config.Network",
            "VM.Config.HWType",
            "VM.Config.Options",
            "VM.Allocate",
            "VM.Clone",
            "VM.Migrate",
            "VM.Snapshot",
            "VM.Snapshot.Rollback",
            "VM.Replicate",
            "VM.GuestAgent.FileRead",
            "VM.GuestAgent.FileWrite",
            "VM.GuestAgent.FileSystemMgmt",
            "VM.GuestAgent.Unrestricted",
        ],
        "user": [
            "VM.Config.CDROM",
            "VM.Config.Cloudinit",
            "VM.Console",
            "VM.Backup",
            "VM.PowerMgmt",
        ],
        "audit": ["VM.Audit", "VM.GuestAgent.Audit"],
    },
    "Sys": {
        "root": ["Sys.PowerMgmt", "Sys.Modify", "Sys.Incoming", "Sys.AccessNetwork"],
        "admin": ["Sys.Console", "Sys.Syslog", "Permissions.Modify"],
        "user": [],
        "audit": ["Sys.Audit"],
    },
    "Datastore": {
        "root": [],
        "admin": ["Datastore.Allocate", "Datastore.AllocateTemplate"],
        "user": ["Datastore.AllocateSpace"],
        "audit": ["Datastore.Audit"],
    },
    "SDN": {
        "root": [],
        "admin": ["SDN.Allocate"],
        "user": ["SDN.Use"],
        "audit": ["SDN.Audit"],
    },
    "User": {
        "root": ["Realm.Allocate"],
        "admin": ["User.Modify", "Group.Allocate", "Realm.AllocateUser"],
        "user": [],
        "audit": [],
    },
    "Pool": {
        "root": [],
        "admin": ["Pool.Allocate"],
        "user": ["Pool.Audit"],
        "audit": ["Pool.Audit"],
    },
    "Mapping": {
        "root": [],
        "admin": ["Mapping.Modify"],
        "user": ["Mapping.Use"],
        "audit": ["Mapping.Audit"],
    },
}


def _builtin_roles() -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    valid: set[str] = set()
    roles: dict[str, set[str]] = {"NoAccess": set(), "PVEAdmin": set(), "PVEAuditor": set()}
    for cat, groups in _PRIVGROUPS.items():
        valid.update(groups["root"], groups["admin"], groups["user"], groups["audit"])
        admin = set(groups["admin"]) | set(groups["user"]) | set(groups["audit"])
        roles[f"PVE{cat}Admin"] = admin
        roles["PVEAdmin"] |= admin
        if groups["user"]:
            roles[f"PVE{cat}User"] = set(groups["user"]) | set(groups["audit"])
        roles["PVEAuditor"] |= set(groups["audit"])
    roles["Administrator"] = set(valid)
    roles["PVETemplateUser"] = {"VM.Clone", "VM.Audit"}
    return frozenset(valid), {k: frozenset(v) for k, v in roles.items()}


VALID_PRIVS, BUILTIN_ROLES = _builtin_roles()


class PermissionDenied(Exception):
    """403 with Proxmox's message, e.g. `Permission check failed (/vms/101, VM.Allocate)`.
    Answered by `dispatch`; internal to the simulator, see kloudctl.sim.errors."""


@dataclass(frozen=True)
class Identity:
    """Who calls: a user (ticket) or a token (`user@realm!tokenid`)."""

    user: str
    token: str | None = None

    @property
    def authid(self) -> str:
        return f"{self.user}!{self.token}" if self.token else self.user


def normalize_path(path: str) -> str:
    path = re.sub(r"/+", "/", path).rstrip("/")
    return path if path.startswith("/") else "/" + path if path else "/"


class AccessControl:
    """Evaluates privileges over a cabinet's access state (users, groups, roles, ACLs, pools)."""

    def __init__(self, access: dict[str, Any]) -> None:
        self.access = access

    # -- roles -------------------------------------------------------------------------
    def role_privs(self, role: str) -> frozenset[str]:
        if role in BUILTIN_ROLES:
            return BUILTIN_ROLES[role]
        return frozenset(self.access["roles"].get(role, []))

    def _roles(self, ugid: str, kind: str, path: str) -> dict[str, int]:
        """PVE::AccessControl::roles for a user (kind=user) or a token (kind=token)."""
        users = self.access["users"]
        user = ugid.split("!")[0]
        groups = set(users.get(user, {}).get("groups", []))
        parts = [""] if path == "/" else path.split("/")
        roles: dict[str, int] = {}
        acl_by_path = self._acl_index()
        cur = ""
        for i, part in enumerate(parts):
            cur = "/" if i == 0 else (cur.rstrip("/") + "/" + part)
            final = i == len(parts) - 1
            rules = acl_by_path.get(cur)
            if not rules:
                continue
            new: dict[str, int] = {}
            for rule in rules:
                if rule["type"] == kind and rule["ugid"] == ugid and (final or rule["propagate"]):
                    new[rule["roleid"]] = rule["propagate"]
            if new:
                roles = new
                continue
            if kind == "token":
                continue
            for rule in rules:
                if (
                    rule["type"] == "group"
                    and rule["ugid"] in groups
                    and (final or rule["propagate"])
                ):
                    new[rule["roleid"]] = rule["propagate"]
            if new:
                roles = new
        if "NoAccess" in roles:
            return {"NoAccess": roles["NoAccess"]}
        return roles

    def _acl_index(self) -> dict[str, list[dict[str, Any]]]:
        cache = self.access.get("_acl_index")
        if cache is None:
            cache = {}
            for rule in self.access["acl"]:
                cache.setdefault(rule["path"], []).append(rule)
            self.access["_acl_index"] = cache
        return cache

    def _privs_on(self, ugid: str, kind: str, path: str) -> set[str]:
        privs: set[str] = set()
        for role in self._roles(ugid, kind, path):
            privs |= self.role_privs(role)
        return privs

    def permissions(self, who: Identity, path: str) -> set[str]:
        """Effective privileges of a user or token on a path (pools included)."""
        if who.user == "root@pam" and not who.token:
            return set(VALID_PRIVS)
        path = normalize_path(path)
        paths = [path]
        m = re.match(r"^/(vms|storage)/([^/]+)", path)
        if m:
            pool = self._pool_of(m.group(1), m.group(2))
            if pool:
                paths.append(f"/pool/{pool}")
        user = self.access["users"].get(who.user)
        if user is None or not user.get("enable", 1):
            return set()
        privs: set[str] = set()
        for p in paths:
            up = set(VALID_PRIVS) if who.user == "root@pam" else self._privs_on(who.user, "user", p)
            if who.token:
                token = user.get("tokens", {}).get(who.token)
                if token is None:
                    return set()
                if token.get("privsep", 1):
                    up &= self._privs_on(who.authid, "token", p)
            privs |= up
        return privs

    def _pool_of(self, kind: str, member: str) -> str | None:
        for name, pool in self.access["pools"].items():
            if kind == "vms" and member.isdigit() and int(member) in pool.get("vms", []):
                return str(name)
            if kind == "storage" and member in pool.get("storage", []):
                return str(name)
        return None

    # -- checks ------------------------------------------------------------------------
    def check(self, who: Identity, path: str, privs: list[str], any_: bool = False) -> None:
        have = self.permissions(who, path)
        if any_:
            if not have.intersection(privs):
                raise PermissionDenied(
                    f"Permission check failed ({normalize_path(path)}, {'|'.join(privs)})"
                )
            return
        for priv in privs:
            if priv not in have:
                raise PermissionDenied(f"Permission check failed ({normalize_path(path)}, {priv})")

    def allowed(self, who: Identity, path: str, privs: list[str], any_: bool = False) -> bool:
        try:
            self.check(who, path, privs, any_)
        except PermissionDenied:
            return False
        return True

    def evaluate(self, who: Identity, perms: dict[str, Any] | None, params: dict[str, Any]) -> None:
        """Apply a method's `permissions` (schema) to a call; raise PermissionDenied."""
        if perms is None:
            if who.user != "root@pam" or who.token:
                raise PermissionDenied("Permission check failed (user != root@pam)")
            return
        check = perms.get("check")
        if check:
            self._expr(who, check, params)
            return
        if perms.get("user") in ("all", "world"):
            return
        if who.user != "root@pam":
            raise PermissionDenied("Permission check failed (user != root@pam)")

    def _expr(self, who: Identity, expr: list[Any], params: dict[str, Any]) -> None:
        op = expr[0]
        if op == "and":
            for sub in expr[1:]:
                self._expr(who, sub, params)
        elif op == "or":
            first: PermissionDenied | None = None
            for sub in expr[1:]:
                try:
                    self._expr(who, sub, params)
                    return
                except PermissionDenied as exc:
                    first = first or exc
            raise first or PermissionDenied("Permission check failed")
        elif op == "perm":
            path, privs, opts = expr[1], expr[2], expr[3:]
            options = dict(zip(opts[::2], opts[1::2], strict=False))
            req = options.get("require_param")
            if req and params.get(req) in (None, ""):
                raise PermissionDenied(f"Permission check failed (missing parameter '{req}')")
            self.check(who, _subst(path, params), privs, any_=bool(options.get("any")))
        elif op == "perm-modify":
            self.check_perm_modify(who, _subst(expr[1], params))
        elif op == "userid-param":
            target = str(params.get("userid", ""))
            if expr[1] == "self":
                if target != who.user:
                    raise PermissionDenied("Permission check failed (user != " + target + ")")
            else:
                realm = target.split("@")[-1]
                self.check(who, f"/access/realm/{realm}", [expr[1]])
        elif op == "userid-group":
            privs = expr[1]
            if self.allowed(who, "/access/groups", privs):
                return
            member = params.get("userid")
            groups = self.access["users"].get(member, {}).get("groups", []) if member else []
            if not any(self.allowed(who, f"/access/groups/{g}", privs) for g in groups):
                raise PermissionDenied(f"Permission check failed (/access/groups, {privs[0]})")
        else:  # an expression PVE knows and we do not: refuse rather than allow
            raise PermissionDenied(f"Permission check failed (unsupported check '{op}')")

    def check_perm_modify(self, who: Identity, path: str) -> None:
        """check_perm_modify: Permissions.Modify, or the object's allocate privilege."""
        path = normalize_path(path)
        privs = ["Permissions.Modify"]
        if re.match(r"^/storage/.+", path):
            privs.append("Datastore.Allocate")
        elif re.match(r"^/vms/.+", path):
            privs.append("VM.Allocate")
        elif re.match(r"^/pool/.+", path):
            privs.append("Pool.Allocate")
        self.check(who, path, privs, any_=True)


def _subst(path: str, params: dict[str, Any]) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: str(params.get(m.group(1), "")), path)
