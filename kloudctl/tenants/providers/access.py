"""Pools, groups, users, API tokens and ACLs (the tenant's identity and its fence).

Creates adopt an object that already exists with the same id: a run killed between the
Proxmox call and the state write leaves such an object, and the next run takes it over
instead of failing. (A token cannot be adopted, its secret is shown once: it is rotated.)
"""

from __future__ import annotations

import secrets
from typing import Any

from kloudctl.answers import UnexpectedAnswer
from kloudctl.proxmox.client import ApiTarget, Client, ProxmoxError
from kloudctl.tenants.providers.base import (
    API,
    PROVIDER_COMPONENT,
    ProxmoxProvider,
    is_gone,
)

EXISTS_WORDS = ("already exists", "already defined")


def _exists_error(exc: ProxmoxError) -> bool:
    return exc.status == 400 or any(w in str(exc).lower() for w in EXISTS_WORDS)


def _csv(values: list[str]) -> str:
    return ",".join(values)


class PoolProvider(ProxmoxProvider):
    kind = "pool"
    replace_on = ("poolid",)

    def _find(self, client: Client, poolid: str) -> dict[str, Any] | None:
        for pool in client.get("pools") or []:
            if pool.get("poolid") == poolid:
                return dict(pool)
        return None

    def _create(self, client: Client, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        try:
            client.post("pools", poolid=props["poolid"], comment=props.get("comment"))
        except ProxmoxError as exc:
            if not (_exists_error(exc) and self._find(client, props["poolid"])):
                raise
            client.put("pools", poolid=props["poolid"], comment=props.get("comment", ""))
        return props["poolid"], {}

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        pool = self._find(client, id_)
        if pool is None:
            return None
        return {"poolid": id_, "comment": pool.get("comment", "")}

    def _update(
        self, client: Client, id_: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        client.put("pools", poolid=id_, comment=news.get("comment", ""))
        return {}

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        if self._find(client, id_) is not None:
            client.delete("pools", poolid=id_)


class GroupProvider(ProxmoxProvider):
    kind = "group"
    replace_on = ("groupid",)

    def _find(self, client: Client, groupid: str) -> dict[str, Any] | None:
        for group in client.get("access/groups") or []:
            if group.get("groupid") == groupid:
                return dict(group)
        return None

    def _create(self, client: Client, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        try:
            client.post("access/groups", groupid=props["groupid"], comment=props.get("comment"))
        except ProxmoxError as exc:
            if not (_exists_error(exc) and self._find(client, props["groupid"])):
                raise
            self._update(client, props["groupid"], {}, props)
        return props["groupid"], {}

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        group = self._find(client, id_)
        if group is None:
            return None
        return {"groupid": id_, "comment": group.get("comment", "")}

    def _update(
        self, client: Client, id_: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        client.put(f"access/groups/{id_}", comment=news.get("comment", ""))
        return {}

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        if self._find(client, id_) is not None:
            client.delete(f"access/groups/{id_}")


class UserProvider(ProxmoxProvider):
    """A tenant's user. It gets a random initial password (a secret output) so that it can
    log in once to create its own API token: Proxmox refuses tokens creating tokens."""

    kind = "user"
    replace_on = ("userid",)
    computed = ("password",)

    def _exists(self, client: Client, userid: str) -> bool:
        return any(u.get("userid") == userid for u in client.get("access/users") or [])

    def _create(self, client: Client, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        userid = props["userid"]
        if self._exists(client, userid):
            # Left by an interrupted run: its password is unknown, so make it again.
            client.delete(f"access/users/{userid}")
        password = secrets.token_urlsafe(24)
        client.post(
            "access/users",
            userid=userid,
            password=password,
            groups=_csv(props.get("groups", [])),
            comment=props.get("comment"),
            enable=int(props.get("enable", True)),
        )
        return userid, {"password": password}

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        if not self._exists(client, id_):
            return None
        user = client.get(f"access/users/{id_}") or {}
        groups = user.get("groups") or []
        if isinstance(groups, str):
            groups = [g for g in groups.split(",") if g]
        return {
            "userid": id_,
            "groups": sorted(groups),
            "comment": user.get("comment", ""),
            "enable": bool(int(user.get("enable", 1))),
        }

    def _update(
        self, client: Client, id_: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        client.put(
            f"access/users/{id_}",
            groups=_csv(news.get("groups", [])),
            comment=news.get("comment", ""),
            enable=int(news.get("enable", True)),
        )
        return {}

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        if self._exists(client, id_):
            client.delete(f"access/users/{id_}")


class TokenProvider(ProxmoxProvider):
    """A privilege-separated API token; its secret (`value`) is a secret output."""

    kind = "token"
    replace_on = ("userid", "tokenid", "privsep", "login_password")
    computed = ("value", "full_tokenid")

    def _tokens(self, client: Client, userid: str) -> list[dict[str, Any]]:
        try:
            return list(client.get(f"access/users/{userid}/token") or [])
        except ProxmoxError as exc:
            if is_gone(exc):
                return []
            raise

    def _create(self, client: Client, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        userid, tokenid = props["userid"], props["tokenid"]
        path = f"access/users/{userid}/token/{tokenid}"
        if any(t.get("tokenid") == tokenid for t in self._tokens(client, userid)):
            client.delete(path)  # left by an interrupted run: its secret is lost, rotate it
        api = ApiTarget.from_inputs(props[API])
        own = Client.login(
            api.endpoint,
            api.fingerprint,
            userid,
            props["login_password"],
            component=PROVIDER_COMPONENT,
        )
        made = own.post(path, privsep=int(props.get("privsep", True)), comment=props.get("comment"))
        full = f"{userid}!{tokenid}"
        # Checked by hand, not with `dig`: its message would quote the answer, a secret.
        made = made if isinstance(made, dict) else {}
        if not isinstance(made.get("value"), str):
            raise UnexpectedAnswer(own.tool, "the new token's value", "(not shown: a secret)")
        return full, {"value": made["value"], "full_tokenid": made.get("full-tokenid", full)}

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        userid, _, tokenid = id_.partition("!")
        for token in self._tokens(client, userid):
            if token.get("tokenid") == tokenid:
                return {
                    "userid": userid,
                    "tokenid": tokenid,
                    "privsep": bool(int(token.get("privsep", 1))),
                    "comment": token.get("comment", ""),
                }
        return None

    def _update(
        self, client: Client, id_: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        client.put(
            f"access/users/{news['userid']}/token/{news['tokenid']}",
            comment=news.get("comment", ""),
        )
        return {}

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        userid, _, tokenid = id_.partition("!")
        if any(t.get("tokenid") == tokenid for t in self._tokens(client, userid)):
            client.delete(f"access/users/{userid}/token/{tokenid}")


_ACL_PARAM = {"group": "groups", "user": "users", "token": "tokens"}


class AclProvider(ProxmoxProvider):
    """One ACL entry: (path, group|user|token, role). Any change is a new entry."""

    kind = "acl"
    replace_on = ("path", "kind", "ugid", "role", "propagate")

    def _find(self, client: Client, props: dict[str, Any]) -> dict[str, Any] | None:
        for entry in client.get("access/acl") or []:
            if (
                entry.get("path") == props["path"]
                and entry.get("type") == props["kind"]
                and entry.get("ugid") == props["ugid"]
                and entry.get("roleid") == props["role"]
            ):
                return dict(entry)
        return None

    def _put(self, client: Client, props: dict[str, Any], delete: bool = False) -> None:
        client.put(
            "access/acl",
            path=props["path"],
            roles=props["role"],
            propagate=int(props.get("propagate", True)),
            delete=1 if delete else None,
            **{_ACL_PARAM[props["kind"]]: props["ugid"]},
        )

    def _create(self, client: Client, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._put(client, props)
        return f"{props['path']}|{props['kind']}|{props['ugid']}|{props['role']}", {}

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        entry = self._find(client, props)
        if entry is None:
            return None
        return {"propagate": bool(int(entry.get("propagate", 1)))}

    def _update(
        self, client: Client, id_: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        return {}  # only the connection changed: every property replaces

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        if self._find(client, props) is not None:
            self._put(client, props, delete=True)
