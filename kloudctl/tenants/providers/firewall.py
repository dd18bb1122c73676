"""A cluster firewall security group and its ordered rules.

Proxmox inserts a rule created without `pos` at the top, so rules are added last-first.
Rules are compared as declared (normalised); any difference rewrites the group's rules.
A group must be empty before Proxmox deletes it.
"""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import CheckResult

from kloudctl.proxmox.client import Client, ProxmoxError
from kloudctl.tenants.providers.base import ProxmoxProvider

RULE_KEYS = ("type", "action", "source", "dest", "proto", "dport", "comment")


def normalise_rule(rule: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: str(rule[k]) for k in RULE_KEYS if rule.get(k) not in (None, "")}
    out["enable"] = int(rule.get("enable", 1))
    return out


class SecurityGroupProvider(ProxmoxProvider):
    kind = "security group"
    replace_on = ("group",)

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = super().check(_olds, news)
        rules = result.inputs.get("rules")
        if isinstance(rules, list) and all(isinstance(r, dict) for r in rules):
            result.inputs["rules"] = [normalise_rule(r) for r in rules]
        return result

    def _exists(self, client: Client, group: str) -> bool:
        return any(g.get("group") == group for g in client.get("cluster/firewall/groups") or [])

    def _rules(self, client: Client, group: str) -> list[dict[str, Any]]:
        rules = list(client.get(f"cluster/firewall/groups/{group}") or [])
        return sorted(rules, key=lambda r: int(r.get("pos", 0)))

    def _set_rules(self, client: Client, group: str, rules: list[dict[str, Any]]) -> None:
        for _ in self._rules(client, group):
            client.delete(f"cluster/firewall/groups/{group}/0")
        for rule in reversed(rules):
            client.post(f"cluster/firewall/groups/{group}", **normalise_rule(rule))

    def _create(self, client: Client, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        group = props["group"]
        try:
            client.post("cluster/firewall/groups", group=group, comment=props.get("comment"))
        except ProxmoxError:
            if not self._exists(client, group):
                raise
        self._set_rules(client, group, props.get("rules", []))
        return group, {}

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        if not self._exists(client, id_):
            return None
        return {"group": id_, "rules": [normalise_rule(r) for r in self._rules(client, id_)]}

    def _update(
        self, client: Client, id_: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        wanted = [normalise_rule(r) for r in news.get("rules", [])]
        current = [normalise_rule(r) for r in self._rules(client, id_)]
        if wanted != current:
            self._set_rules(client, id_, news.get("rules", []))
        return {}

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        if self._exists(client, id_):
            for _ in self._rules(client, id_):
                client.delete(f"cluster/firewall/groups/{id_}/0")
            client.delete(f"cluster/firewall/groups/{id_}")
