"""Firewall at the three scopes (cluster, node, guest): options, rules, security groups,
aliases, IP sets, with digests on every list as PVE keeps them.

The same handlers serve every scope; the scope is found from the call's path.
"""

from __future__ import annotations

from typing import Any

from kloudctl.sim.api import ApiError, Call, api, bad_request
from kloudctl.sim.handlers import common as c
from kloudctl.sim.state import config_digest

CL, ND, VM = "/cluster/firewall", "/nodes/{node}/firewall", "/nodes/{node}/qemu/{vmid}/firewall"
_RULE_KEYS = (
    "type",
    "action",
    "macro",
    "source",
    "dest",
    "proto",
    "dport",
    "sport",
    "iface",
    "log",
    "comment",
    "enable",
    "icmp-type",
)


def _scope(call: Call) -> dict[str, Any]:
    fw = call.state["firewall"]
    path = call.method.path
    if path.startswith(VM):
        g = c.guest(call)
        return fw["vms"].setdefault(
            str(g["vmid"]), {"options": {}, "rules": [], "aliases": {}, "ipset": {}}
        )
    if path.startswith(ND):
        call.cab.node(call.p("node"))
        return fw["nodes"].setdefault(
            call.p("node"), {"options": {}, "rules": [], "aliases": {}, "ipset": {}}
        )
    return fw["cluster"]


def _rules(call: Call) -> list[dict[str, Any]]:
    if "/groups/" in call.method.path:
        group = call.state["firewall"]["groups"].get(call.p("group"))
        if group is None:
            raise ApiError(500, f"no such security group '{call.p('group')}'")
        return group["rules"]
    return _scope(call)["rules"]


def _digest(obj: Any) -> str:
    return config_digest({"fw": obj})


def _check_digest(call: Call, obj: Any) -> None:
    if call.p("digest") and call.p("digest") != _digest(obj):
        raise ApiError(
            500, "detected modified configuration - file changed by other user? Try again."
        )


# --- options ----------------------------------------------------------------------------


@api("GET", CL + "/options", ND + "/options", VM + "/options")
def options_get(call: Call) -> dict[str, Any]:
    opts = _scope(call)["options"]
    return {**opts, "digest": _digest(opts)}


@api("PUT", CL + "/options", ND + "/options", VM + "/options")
def options_put(call: Call) -> None:
    opts = _scope(call)["options"]
    _check_digest(call, opts)
    for key, value in call.params.items():
        if key not in ("node", "vmid", "delete", "digest"):
            opts[key] = value
    for key in str(call.p("delete") or "").split(","):
        opts.pop(key, None)


# --- rules ------------------------------------------------------------------------------


def _renumber(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, r in enumerate(rules):
        r["pos"] = i
    return rules


@api("GET", CL + "/rules", ND + "/rules", VM + "/rules", CL + "/groups/{group}")
def rules_list(call: Call) -> list[dict[str, Any]]:
    rules = _rules(call)
    digest = _digest(rules)
    return [{**r, "digest": digest} for r in _renumber(rules)]


@api("POST", CL + "/rules", ND + "/rules", VM + "/rules", CL + "/groups/{group}")
def rules_create(call: Call) -> None:
    rules = _rules(call)
    _check_digest(call, rules)
    if call.p("action") is None:
        raise bad_request("action", "property is missing and it is not optional")
    rule = {k: call.p(k) for k in _RULE_KEYS if call.p(k) is not None}
    if rule.get("type") == "group" and rule["action"] not in call.state["firewall"]["groups"]:
        raise bad_request("action", f"security group '{rule['action']}' does not exist")
    pos = int(call.p("pos") or 0)
    rules.insert(min(pos, len(rules)), rule)
    _renumber(rules)


def _rule(call: Call) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rules = _rules(call)
    pos = int(call.p("pos"))
    if not 0 <= pos < len(rules):
        raise ApiError(500, f"no rule at position {pos}")
    return rules, rules[pos]


@api(
    "GET",
    CL + "/rules/{pos}",
    ND + "/rules/{pos}",
    VM + "/rules/{pos}",
    CL + "/groups/{group}/{pos}",
)
def rule_get(call: Call) -> dict[str, Any]:
    return dict(_rule(call)[1])


@api(
    "PUT",
    CL + "/rules/{pos}",
    ND + "/rules/{pos}",
    VM + "/rules/{pos}",
    CL + "/groups/{group}/{pos}",
)
def rule_put(call: Call) -> None:
    rules, rule = _rule(call)
    _check_digest(call, rules)
    for key in _RULE_KEYS:
        if call.p(key) is not None:
            rule[key] = call.p(key)
    for key in str(call.p("delete") or "").split(","):
        rule.pop(key, None)
    if call.p("moveto") is not None:
        rules.remove(rule)
        rules.insert(min(int(call.p("moveto")), len(rules)), rule)
    _renumber(rules)


@api(
    "DELETE",
    CL + "/rules/{pos}",
    ND + "/rules/{pos}",
    VM + "/rules/{pos}",
    CL + "/groups/{group}/{pos}",
)
def rule_delete(call: Call) -> None:
    rules, rule = _rule(call)
    _check_digest(call, rules)
    rules.remove(rule)
    _renumber(rules)


# --- security groups ----------------------------------------------------------------------


@api("GET", CL + "/groups")
def groups_list(call: Call) -> list[dict[str, Any]]:
    groups = call.state["firewall"]["groups"]
    digest = _digest(groups)
    return [
        {"group": n, "comment": g.get("comment", ""), "digest": digest}
        for n, g in sorted(groups.items())
    ]


@api("POST", CL + "/groups")
def groups_create(call: Call) -> None:
    groups = call.state["firewall"]["groups"]
    name = call.p("group")
    rename = call.p("rename")
    if rename:
        if rename not in groups:
            raise ApiError(500, f"security group '{rename}' does not exist")
        groups[name] = groups.pop(rename)
        return
    if name in groups:
        raise ApiError(500, f"security group '{name}' already exists")
    groups[name] = {"comment": call.p("comment", ""), "rules": []}


@api("DELETE", CL + "/groups/{group}")
def groups_delete(call: Call) -> None:
    groups = call.state["firewall"]["groups"]
    if call.p("group") not in groups:
        raise ApiError(500, f"no such security group '{call.p('group')}'")
    if groups[call.p("group")]["rules"]:
        raise ApiError(500, "Security group contains rules.")
    groups.pop(call.p("group"))


# --- aliases --------------------------------------------------------------------------------


def _aliases(call: Call) -> dict[str, Any]:
    return _scope(call)["aliases"]


@api("GET", CL + "/aliases", VM + "/aliases")
def aliases_list(call: Call) -> list[dict[str, Any]]:
    aliases = _aliases(call)
    digest = _digest(aliases)
    return [{**a, "digest": digest} for _, a in sorted(aliases.items())]


@api("POST", CL + "/aliases", VM + "/aliases")
def aliases_create(call: Call) -> None:
    aliases = _aliases(call)
    name = str(call.p("name"))
    if name.lower() in (n.lower() for n in aliases):
        raise ApiError(500, f"alias '{name}' already exists")
    aliases[name] = {
        "name": name,
        "cidr": call.p("cidr"),
        "comment": call.p("comment", ""),
        "ipversion": 6 if ":" in str(call.p("cidr")) else 4,
    }


def _alias(call: Call) -> dict[str, Any]:
    aliases = _aliases(call)
    alias = aliases.get(call.p("name"))
    if alias is None:
        raise ApiError(500, f"no such alias '{call.p('name')}'")
    return alias


@api("GET", CL + "/aliases/{name}", VM + "/aliases/{name}")
def alias_get(call: Call) -> dict[str, Any]:
    return dict(_alias(call), digest=_digest(_aliases(call)))


@api("PUT", CL + "/aliases/{name}", VM + "/aliases/{name}")
def alias_put(call: Call) -> None:
    aliases = _aliases(call)
    _check_digest(call, aliases)
    alias = _alias(call)
    alias["cidr"] = call.p("cidr")
    if call.p("comment") is not None:
        alias["comment"] = call.p("comment")
    if call.p("rename"):
        aliases.pop(alias["name"])
        alias["name"] = call.p("rename")
        aliases[alias["name"]] = alias


@api("DELETE", CL + "/aliases/{name}", VM + "/aliases/{name}")
def alias_delete(call: Call) -> None:
    aliases = _aliases(call)
    _check_digest(call, aliases)
    _alias(call)
    aliases.pop(call.p("name"))


# --- IP sets --------------------------------------------------------------------------------


def _ipsets(call: Call) -> dict[str, Any]:
    return _scope(call)["ipset"]


@api("GET", CL + "/ipset", VM + "/ipset")
def ipsets_list(call: Call) -> list[dict[str, Any]]:
    sets = _ipsets(call)
    digest = _digest(sets)
    return [
        {"name": n, "comment": s.get("comment", ""), "digest": digest}
        for n, s in sorted(sets.items())
    ]


@api("POST", CL + "/ipset", VM + "/ipset")
def ipsets_create(call: Call) -> None:
    sets = _ipsets(call)
    name = call.p("name")
    if call.p("rename"):
        if call.p("rename") not in sets:
            raise ApiError(500, f"no such IPSet '{call.p('rename')}'")
        sets[name] = sets.pop(call.p("rename"))
        return
    if name in sets:
        raise ApiError(500, f"IPSet '{name}' already exists")
    sets[name] = {"comment": call.p("comment", ""), "entries": []}


def _ipset(call: Call) -> dict[str, Any]:
    ipset = _ipsets(call).get(call.p("name"))
    if ipset is None:
        raise ApiError(500, f"no such IPSet '{call.p('name')}'")
    return ipset


@api("GET", CL + "/ipset/{name}", VM + "/ipset/{name}")
def ipset_list(call: Call) -> list[dict[str, Any]]:
    entries = _ipset(call)["entries"]
    digest = _digest(entries)
    return [{**e, "digest": digest} for e in entries]


@api("POST", CL + "/ipset/{name}", VM + "/ipset/{name}")
def ipset_add(call: Call) -> None:
    entries = _ipset(call)["entries"]
    cidr = call.p("cidr")
    if any(e["cidr"] == cidr for e in entries):
        raise ApiError(500, f"entry '{cidr}' already exists")
    entry: dict[str, Any] = {"cidr": cidr}
    if call.p("comment"):
        entry["comment"] = call.p("comment")
    if call.p("nomatch"):
        entry["nomatch"] = 1
    entries.append(entry)


@api("DELETE", CL + "/ipset/{name}", VM + "/ipset/{name}")
def ipset_delete(call: Call) -> None:
    ipset = _ipset(call)
    if ipset["entries"] and not call.p("force"):
        raise ApiError(500, "IPSet is not empty")
    _ipsets(call).pop(call.p("name"))


def _entry(call: Call) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    entries = _ipset(call)["entries"]
    for e in entries:
        if e["cidr"] == call.p("cidr"):
            return entries, e
    raise ApiError(500, f"no such IP/Network '{call.p('cidr')}'")


@api("GET", CL + "/ipset/{name}/{cidr}", VM + "/ipset/{name}/{cidr}")
def ipset_entry_get(call: Call) -> dict[str, Any]:
    entries, e = _entry(call)
    return dict(e, digest=_digest(entries))


@api("PUT", CL + "/ipset/{name}/{cidr}", VM + "/ipset/{name}/{cidr}")
def ipset_entry_put(call: Call) -> None:
    entries, e = _entry(call)
    _check_digest(call, entries)
    if call.p("comment") is not None:
        e["comment"] = call.p("comment")
    if call.p("nomatch") is not None:
        e["nomatch"] = call.p("nomatch")


@api("DELETE", CL + "/ipset/{name}/{cidr}", VM + "/ipset/{name}/{cidr}")
def ipset_entry_delete(call: Call) -> None:
    entries, e = _entry(call)
    _check_digest(call, entries)
    entries.remove(e)


@api("GET", ND + "/log", VM + "/log")
def fw_log(call: Call) -> list[dict[str, Any]]:
    _scope(call)
    return []


@api("GET", CL + "/refs", VM + "/refs")
def fw_refs(call: Call) -> list[dict[str, Any]]:
    out = []
    scopes = [call.state["firewall"]["cluster"]]
    if call.method.path.startswith(VM):
        scopes.append(_scope(call))
    for scope in scopes:
        for name, a in sorted(scope["aliases"].items()):
            if call.p("type") in (None, "alias"):
                out.append(
                    {
                        "type": "alias",
                        "name": name,
                        "ref": name,
                        "scope": "dc",
                        "comment": a.get("comment", ""),
                    }
                )
        for name, s in sorted(scope["ipset"].items()):
            if call.p("type") in (None, "ipset"):
                out.append(
                    {
                        "type": "ipset",
                        "name": name,
                        "ref": f"+{name}",
                        "scope": "dc",
                        "comment": s.get("comment", ""),
                    }
                )
    return out
