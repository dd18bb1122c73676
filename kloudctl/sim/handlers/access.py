"""Access control: tickets, passwords, users, API tokens, groups, roles, ACLs, permissions,
realms. Pools are `pools.py`."""

from __future__ import annotations

import re
import uuid
from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes, bad_request
from kloudctl.sim.auth import AuthError
from kloudctl.sim.cabinet import expired
from kloudctl.sim.handlers import common as c
from kloudctl.sim.perms import BUILTIN_ROLES, Identity, normalize_path
from kloudctl.sim.state import hash_secret, verify_secret

_ACL_PATH = re.compile(
    r"^(/|/access(/groups(/[\w.\-]+)?|/realm(/[\w.\-]+)?)?|/nodes(/[\w.\-]+)?|/pool(/[\w.\-]+)?"
    r"|/sdn(/zones(/[\w.\-]+(/[\w.\-]+(/\d+)?)?)?|/vnets(/[\w.\-]+)?)?|/storage(/[\w.\-]+)?"
    r"|/vms(/[1-9]\d{2,})?|/mapping(/\w+(/[\w.\-]+)?)?)$"
)
routes = Routes()


def _users(call: Call) -> dict[str, Any]:
    return call.state["access"]["users"]


def _user(call: Call, userid: str) -> dict[str, Any]:
    user = _users(call).get(userid)
    if user is None:
        raise ApiError(500, f"no such user ('{userid}')")
    return user


# --- tickets ----------------------------------------------------------------------------


@routes("GET", "/access")
def access_index(call: Call) -> list[dict[str, str]]:
    return [
        {"subdir": s}
        for s in ("users", "groups", "roles", "acl", "domains", "ticket", "password", "permissions")
    ]


@routes("GET", "/access/ticket")
def ticket_page(call: Call) -> None:
    return None


@routes("POST", "/access/ticket")
def create_ticket(call: Call) -> dict[str, Any]:
    username = str(call.p("username"))
    if call.p("realm") and "@" not in username:
        username = f"{username}@{call.p('realm')}"
    password = str(call.p("password"))
    user = _users(call).get(username)
    ok = False
    if user and user.get("enable", 1) and not expired(user):
        if password.startswith("PVE:"):
            try:
                ok = call.cab.signer.verify_ticket(password) == username
            except AuthError:
                ok = False
        elif user.get("password"):
            ok = verify_secret(password, user["password"])
    if not ok:
        raise ApiError(401, "authentication failure")
    if call.p("path") and call.p("privs"):
        call.cab.acl.check(Identity(username), call.p("path"), c.split_ids(call.p("privs")))
    return {
        "username": username,
        "ticket": call.cab.signer.ticket(username),
        "CSRFPreventionToken": call.cab.signer.csrf(username),
        "clustername": call.state["cluster"],
    }


@routes("PUT", "/access/password")
def change_password(call: Call) -> None:
    userid = call.p("userid")
    user = _user(call, userid)
    if userid != call.who.user or call.who.token:
        call.cab.acl.check(
            call.who, f"/access/realm/{userid.split('@')[-1]}", ["Realm.AllocateUser"]
        )
    if userid.endswith("@pam") and call.who.user != "root@pam":
        raise ApiError(500, "you are not allowed to change the password of a pam user")
    user["password"] = hash_secret(str(call.p("password")))


# --- users ------------------------------------------------------------------------------


def _sees_all_users(call: Call) -> bool:
    return call.cab.acl.allowed(call.who, "/access/groups", ["User.Modify", "Sys.Audit"], any_=True)


def _token_view(tokenid: str, tok: dict[str, Any]) -> dict[str, Any]:
    return {
        "tokenid": tokenid,
        "privsep": tok.get("privsep", 1),
        "expire": tok.get("expire", 0),
        "comment": tok.get("comment", ""),
    }


@routes("GET", "/access/users")
def list_users(call: Call) -> list[dict[str, Any]]:
    out = []
    see_all = _sees_all_users(call)
    for userid, user in sorted(_users(call).items()):
        if not see_all and userid != call.who.user:
            continue
        if call.p("enabled") is not None and int(user.get("enable", 1)) != int(call.p("enabled")):
            continue
        entry = {
            k: user[k]
            for k in ("enable", "expire", "comment", "email", "firstname", "lastname")
            if user.get(k) not in (None, "")
        }
        entry["userid"] = userid
        entry["realm-type"] = (
            userid.split("@")[-1] if userid.split("@")[-1] in ("pam", "pve") else "pve"
        )
        if user.get("groups"):
            entry["groups"] = ",".join(user["groups"])
        if call.p("full"):
            entry["tokens"] = [_token_view(t, d) for t, d in sorted(user.get("tokens", {}).items())]
        out.append(entry)
    return out


def _set_groups(call: Call, userid: str, groups: list[str]) -> None:
    for g in groups:
        if g not in call.state["access"]["groups"]:
            raise ApiError(500, f"no such group '{g}'")
    _users(call)[userid]["groups"] = sorted(set(groups))


@routes("POST", "/access/users")
def create_user(call: Call) -> None:
    userid = str(call.p("userid"))
    if userid in _users(call):
        raise ApiError(500, f"create user failed: user '{userid}' already exists")
    realm = userid.split("@")[-1]
    if realm not in call.state["access"]["domains"]:
        raise ApiError(500, f"create user failed: domain '{realm}' does not exist")
    user: dict[str, Any] = {
        "enable": call.p("enable", 1),
        "expire": call.p("expire", 0),
        "tokens": {},
        "groups": [],
    }
    for key in ("comment", "email", "firstname", "lastname", "keys"):
        if call.p(key) is not None:
            user[key] = call.p(key)
    if call.p("password") is not None:
        if realm != "pve":
            raise ApiError(500, "create user failed: can't set password on non-pve realm")
        user["password"] = hash_secret(str(call.p("password")))
    _users(call)[userid] = user
    _set_groups(call, userid, c.split_ids(call.p("groups")))


@routes("GET", "/access/users/{userid}")
def read_user(call: Call) -> dict[str, Any]:
    user = _user(call, call.p("userid"))
    out = {
        k: user[k]
        for k in ("enable", "expire", "comment", "email", "firstname", "lastname", "keys")
        if user.get(k) not in (None, "")
    }
    out["groups"] = list(user.get("groups", []))
    out["tokens"] = {
        t: {k: v for k, v in _token_view(t, d).items() if k != "tokenid"}
        for t, d in user.get("tokens", {}).items()
    }
    return out


@routes("PUT", "/access/users/{userid}")
def update_user(call: Call) -> None:
    userid = call.p("userid")
    user = _user(call, userid)
    for key in ("enable", "expire", "comment", "email", "firstname", "lastname", "keys"):
        if call.p(key) is not None:
            user[key] = call.p(key)
    if call.p("groups") is not None:
        groups = c.split_ids(call.p("groups"))
        if call.p("append"):
            groups = list(set(groups) | set(user.get("groups", [])))
        _set_groups(call, userid, groups)
    for key in c.split_ids(call.p("delete")):
        user.pop(key, None)


@routes("DELETE", "/access/users/{userid}")
def delete_user(call: Call) -> None:
    userid = call.p("userid")
    _user(call, userid)
    if userid == "root@pam":
        raise ApiError(500, "you can't delete root@pam")
    _users(call).pop(userid)
    acl = call.state["access"]["acl"]
    acl[:] = [r for r in acl if r["ugid"] != userid and not r["ugid"].startswith(userid + "!")]


# --- tokens -----------------------------------------------------------------------------


@routes("GET", "/access/users/{userid}/token")
def list_tokens(call: Call) -> list[dict[str, Any]]:
    user = _user(call, call.p("userid"))
    return [_token_view(t, d) for t, d in sorted(user.get("tokens", {}).items())]


def _token(call: Call) -> dict[str, Any]:
    user = _user(call, call.p("userid"))
    tok = user.get("tokens", {}).get(call.p("tokenid"))
    if tok is None:
        raise ApiError(500, f"no such token '{call.p('tokenid')}' for user '{call.p('userid')}'")
    return tok


@routes("GET", "/access/users/{userid}/token/{tokenid}")
def read_token(call: Call) -> dict[str, Any]:
    tok = _token(call)
    return {k: v for k, v in _token_view(call.p("tokenid"), tok).items() if k != "tokenid"}


@routes("POST", "/access/users/{userid}/token/{tokenid}")
def create_token(call: Call) -> dict[str, Any]:
    userid, tokenid = call.p("userid"), str(call.p("tokenid"))
    user = _user(call, userid)
    if not re.match(r"^[A-Za-z][A-Za-z0-9.\-_]+$", tokenid):
        raise bad_request("tokenid", "invalid format - value does not look like a valid token ID")
    if tokenid in user.setdefault("tokens", {}):
        raise ApiError(500, "Token already exists.")
    if call.who.token:
        raise ApiError(500, "API tokens can not create API tokens")
    secret = str(uuid.uuid4())
    info = {
        "privsep": call.p("privsep", 1),
        "expire": call.p("expire", user.get("expire", 0)),
        "comment": call.p("comment", ""),
    }
    user["tokens"][tokenid] = {**info, "secret": hash_secret(secret)}
    return {"full-tokenid": f"{userid}!{tokenid}", "info": info, "value": secret}


@routes("PUT", "/access/users/{userid}/token/{tokenid}")
def update_token(call: Call) -> dict[str, Any]:
    tok = _token(call)
    for key in ("privsep", "expire", "comment"):
        if call.p(key) is not None:
            tok[key] = call.p(key)
    return {k: v for k, v in _token_view(call.p("tokenid"), tok).items() if k != "tokenid"}


@routes("DELETE", "/access/users/{userid}/token/{tokenid}")
def delete_token(call: Call) -> None:
    _token(call)
    userid, tokenid = call.p("userid"), call.p("tokenid")
    _users(call)[userid]["tokens"].pop(tokenid)
    acl = call.state["access"]["acl"]
    acl[:] = [r for r in acl if r["ugid"] != f"{userid}!{tokenid}"]


# --- groups -----------------------------------------------------------------------------


def _members(call: Call, group: str) -> list[str]:
    return sorted(u for u, d in _users(call).items() if group in d.get("groups", []))


@routes("GET", "/access/groups")
def list_groups(call: Call) -> list[dict[str, Any]]:
    out = []
    for gid, group in sorted(call.state["access"]["groups"].items()):
        if not call.cab.acl.allowed(
            call.who, f"/access/groups/{gid}", ["Sys.Audit", "Group.Allocate"], any_=True
        ):
            continue
        entry = {"groupid": gid, "users": ",".join(_members(call, gid))}
        if group.get("comment"):
            entry["comment"] = group["comment"]
        out.append(entry)
    return out


@routes("POST", "/access/groups")
def create_group(call: Call) -> None:
    gid = call.p("groupid")
    if gid in call.state["access"]["groups"]:
        raise ApiError(500, f"create group failed: group '{gid}' already exists")
    call.state["access"]["groups"][gid] = {"comment": call.p("comment", "")}


def _group(call: Call) -> dict[str, Any]:
    group = call.state["access"]["groups"].get(call.p("groupid"))
    if group is None:
        raise ApiError(500, f"group '{call.p('groupid')}' does not exist")
    return group


@routes("GET", "/access/groups/{groupid}")
def read_group(call: Call) -> dict[str, Any]:
    group = _group(call)
    out: dict[str, Any] = {"members": _members(call, call.p("groupid"))}
    if group.get("comment"):
        out["comment"] = group["comment"]
    return out


@routes("PUT", "/access/groups/{groupid}")
def update_group(call: Call) -> None:
    group = _group(call)
    if call.p("comment") is not None:
        group["comment"] = call.p("comment")


@routes("DELETE", "/access/groups/{groupid}")
def delete_group(call: Call) -> None:
    _group(call)
    gid = call.p("groupid")
    call.state["access"]["groups"].pop(gid)
    for user in _users(call).values():
        if gid in user.get("groups", []):
            user["groups"].remove(gid)
    acl = call.state["access"]["acl"]
    acl[:] = [r for r in acl if not (r["type"] == "group" and r["ugid"] == gid)]


# --- roles ------------------------------------------------------------------------------


@routes("GET", "/access/roles")
def list_roles(call: Call) -> list[dict[str, Any]]:
    out = [
        {"roleid": r, "privs": ",".join(sorted(p)), "special": 1}
        for r, p in sorted(BUILTIN_ROLES.items())
    ]
    out += [
        {"roleid": r, "privs": ",".join(sorted(p)), "special": 0}
        for r, p in sorted(call.state["access"]["roles"].items())
    ]
    return out


@routes("POST", "/access/roles")
def create_role(call: Call) -> None:
    roleid = call.p("roleid")
    if roleid in BUILTIN_ROLES or roleid in call.state["access"]["roles"]:
        raise ApiError(500, f"create role failed: role '{roleid}' already exists")
    if roleid.startswith("PVE"):
        raise ApiError(500, "create role failed: cannot use role ID starting with 'PVE'")
    call.state["access"]["roles"][roleid] = sorted(set(c.split_ids(call.p("privs"))))


@routes("GET", "/access/roles/{roleid}")
def read_role(call: Call) -> dict[str, int]:
    roleid = call.p("roleid")
    privs = BUILTIN_ROLES.get(roleid) or call.state["access"]["roles"].get(roleid)
    if privs is None and roleid != "NoAccess":
        raise ApiError(500, f"role '{roleid}' does not exist")
    return {p: 1 for p in sorted(privs or [])}


@routes("PUT", "/access/roles/{roleid}")
def update_role(call: Call) -> None:
    roleid = call.p("roleid")
    if roleid in BUILTIN_ROLES:
        raise ApiError(500, f"cannot modify built-in role '{roleid}'")
    if roleid not in call.state["access"]["roles"]:
        raise ApiError(500, f"role '{roleid}' does not exist")
    privs = set(c.split_ids(call.p("privs")))
    if call.p("append"):
        privs |= set(call.state["access"]["roles"][roleid])
    call.state["access"]["roles"][roleid] = sorted(privs)


@routes("DELETE", "/access/roles/{roleid}")
def delete_role(call: Call) -> None:
    roleid = call.p("roleid")
    if roleid in BUILTIN_ROLES:
        raise ApiError(500, f"cannot delete built-in role '{roleid}'")
    if call.state["access"]["roles"].pop(roleid, None) is None:
        raise ApiError(500, f"role '{roleid}' does not exist")
    acl = call.state["access"]["acl"]
    acl[:] = [r for r in acl if r["roleid"] != roleid]


# --- ACLs -------------------------------------------------------------------------------


@routes("GET", "/access/acl")
def list_acl(call: Call) -> list[dict[str, Any]]:
    out = []
    for rule in call.state["access"]["acl"]:
        if not call.cab.acl.allowed(
            call.who, rule["path"], ["Permissions.Modify", "Sys.Audit"], any_=True
        ):
            continue
        out.append(dict(rule))
    return out


@routes("PUT", "/access/acl")
def update_acl(call: Call) -> None:
    path = normalize_path(str(call.p("path")))
    if not _ACL_PATH.match(path):
        raise bad_request("path", f"invalid ACL path '{call.p('path')}'")
    roles = c.split_ids(call.p("roles"))
    access = call.state["access"]
    for role in roles:
        if role not in BUILTIN_ROLES and role not in access["roles"]:
            raise ApiError(500, f"role '{role}' does not exist")
    targets: list[tuple[str, str]] = []
    for u in c.split_ids(call.p("users")):
        if u not in access["users"]:
            raise ApiError(500, f"user '{u}' does not exist")
        targets.append(("user", u))
    for g in c.split_ids(call.p("groups")):
        if g not in access["groups"]:
            raise ApiError(500, f"group '{g}' does not exist")
        targets.append(("group", g))
    for t in c.split_ids(call.p("tokens")):
        user, _, name = t.partition("!")
        if name not in access["users"].get(user, {}).get("tokens", {}):
            raise ApiError(500, f"no such token '{name}' for user '{user}'")
        targets.append(("token", t))
    if not targets:
        raise bad_request("users", "either 'users', 'groups' or 'tokens' is required")
    propagate = int(call.p("propagate", 1))
    acl = access["acl"]
    for kind, ugid in targets:
        for role in roles:
            acl[:] = [
                r
                for r in acl
                if not (
                    r["path"] == path
                    and r["type"] == kind
                    and r["ugid"] == ugid
                    and r["roleid"] == role
                )
            ]
            if not call.p("delete"):
                acl.append(
                    {
                        "path": path,
                        "type": kind,
                        "ugid": ugid,
                        "roleid": role,
                        "propagate": propagate,
                    }
                )


@routes("GET", "/access/permissions")
def permissions(call: Call) -> dict[str, dict[str, int]]:
    target = call.who
    userid = call.p("userid")
    if userid and userid != call.who.authid:
        owned = "!" in userid and userid.split("!")[0] == call.who.user and not call.who.token
        if not owned:
            call.cab.acl.check(call.who, "/access", ["Sys.Audit"])
        user, _, token = userid.partition("!")
        target = Identity(user, token or None)
    paths = (
        [call.p("path")]
        if call.p("path")
        else sorted({"/", *(r["path"] for r in call.state["access"]["acl"])})
    )
    out = {}
    for path in paths:
        privs = call.cab.acl.permissions(target, path)
        if privs:
            out[path] = {p: 1 for p in sorted(privs)}
    return out


@routes("GET", "/access/domains")
def list_domains(call: Call) -> list[dict[str, Any]]:
    return [{"realm": r, **d} for r, d in sorted(call.state["access"]["domains"].items())]


@routes("GET", "/access/domains/{realm}")
def domain(call: Call) -> dict[str, Any]:
    realm = call.state["access"]["domains"].get(call.p("realm"))
    if realm is None:
        raise ApiError(500, f"domain '{call.p('realm')}' does not exist")
    return dict(realm, digest=c.digest_of({"config": realm, "pending": {}}))
