"""Firewall at the four scopes (cluster, node, guest, SDN vnet): options, rules, security
groups, aliases, IP sets, with digests on every list as PVE keeps them.

The same handlers serve every scope; the scope is found from the call's path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes, bad_request
from kloudctl.sim.handlers import common as c
from kloudctl.sim.state import config_digest, fw_scope

routes = Routes()

CL, ND = "/cluster/firewall", "/nodes/{node}/firewall"
VM, CT = "/nodes/{node}/qemu/{vmid}/firewall", "/nodes/{node}/lxc/{vmid}/firewall"
VN = "/cluster/sdn/vnets/{vnet}/firewall"


def _under(scopes: tuple[str, ...], sub: str) -> tuple[str, ...]:
    return tuple(scope + sub for scope in scopes)


# the schema paths each handler serves, at every scope that has them
EVERY, DC_VM = (CL, ND, VM, CT, VN), (CL, VM, CT)
OPTIONS = _under(EVERY, "/options")
RULES = (*_under(EVERY, "/rules"), CL + "/groups/{group}")  # a security group's rules too
RULE = (*_under(EVERY, "/rules/{pos}"), CL + "/groups/{group}/{pos}")
ALIASES, ALIAS = _under(DC_VM, "/aliases"), _under(DC_VM, "/aliases/{name}")
IPSETS, IPSET = _under(DC_VM, "/ipset"), _under(DC_VM, "/ipset/{name}")
IPSET_ENTRY = _under(DC_VM, "/ipset/{name}/{cidr}")
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
    if path.startswith((VM, CT)):
        g = c.guest(call)
        return fw["vms"].setdefault(str(g["vmid"]), fw_scope())
    if path.startswith(VN):
        if call.p("vnet") not in call.state["sdn"]["vnets"]:
            raise ApiError(500, f"sdn vnet '{call.p('vnet')}' does not exist")
        return fw.setdefault("vnets_sdn", {}).setdefault(call.p("vnet"), fw_scope())
    if path.startswith(ND):
        call.cab.node(call.p("node"))
        return fw["nodes"].setdefault(call.p("node"), fw_scope())
    return fw["cluster"]


def _rules(call: Call) -> list[dict[str, Any]]:
    if "/groups/" in call.method.path:
        return _group(call)["rules"]
    return _scope(call)["rules"]


def _digest(obj: Any) -> str:
    return config_digest({"fw": obj})


def _check_digest(call: Call, obj: Any) -> None:
    c.check_digest(call, _digest(obj))


def _digested(obj: Any, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """A listing: each row with the digest of the whole (`obj`), as PVE lists them."""
    digest = _digest(obj)
    return [{**row, "digest": digest} for row in rows]


def _named(objs: dict[str, Any], name: str, missing: str) -> dict[str, Any]:
    """A security group, alias or IP set by name; `missing` ({} for the name) if none."""
    obj = objs.get(name)
    if obj is None:
        raise ApiError(500, missing.format(name))
    return obj


def _list_named(objs: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """Security groups or IP sets: name (under `key`) and comment, sorted."""
    rows = ({key: n, "comment": o.get("comment", "")} for n, o in sorted(objs.items()))
    return _digested(objs, rows)


def _create_named(
    call: Call, objs: dict[str, Any], name: str, members: str, missing: str, exists: str
) -> None:
    """POST of a security group or an IP set: a new empty one, or `rename` one."""
    rename = call.p("rename")
    if rename:
        if rename not in objs:
            raise ApiError(500, missing.format(rename))
        objs[name] = objs.pop(rename)
        return
    if name in objs:
        raise ApiError(500, exists.format(name))
    objs[name] = {"comment": call.p("comment", ""), members: []}


def _delete_named(
    objs: dict[str, Any], name: str, missing: str, members: str, refusal: str, force: bool = False
) -> None:
    """DELETE of a security group or an IP set, refused while it has members (unless
    `force`)."""
    if _named(objs, name, missing)[members] and not force:
        raise ApiError(500, refusal)
    objs.pop(name)


# --- options ----------------------------------------------------------------------------


@routes("GET", *OPTIONS)
def options_get(call: Call) -> dict[str, Any]:
    opts = _scope(call)["options"]
    return {**opts, "digest": _digest(opts)}


@routes("PUT", *OPTIONS)
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


@routes("GET", *RULES)
def rules_list(call: Call) -> list[dict[str, Any]]:
    rules = _rules(call)
    digest = _digest(rules)
    return [{**r, "digest": digest} for r in _renumber(rules)]


@routes("POST", *RULES)
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


@routes("GET", *RULE)
def rule_get(call: Call) -> dict[str, Any]:
    return dict(_rule(call)[1])


@routes("PUT", *RULE)
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


@routes("DELETE", *RULE)
def rule_delete(call: Call) -> None:
    rules, rule = _rule(call)
    _check_digest(call, rules)
    rules.remove(rule)
    _renumber(rules)


# --- security groups ----------------------------------------------------------------------


_NO_GROUP = "no such security group '{}'"


def _groups(call: Call) -> dict[str, Any]:
    return call.state["firewall"]["groups"]


def _group(call: Call) -> dict[str, Any]:
    return _named(_groups(call), call.p("group"), _NO_GROUP)


@routes("GET", CL + "/groups")
def groups_list(call: Call) -> list[dict[str, Any]]:
    return _list_named(_groups(call), "group")


@routes("POST", CL + "/groups")
def groups_create(call: Call) -> None:
    _create_named(
        call,
        _groups(call),
        call.p("group"),
        "rules",
        missing="security group '{}' does not exist",
        exists="security group '{}' already exists",
    )


@routes("DELETE", CL + "/groups/{group}")
def groups_delete(call: Call) -> None:
    _delete_named(
        _groups(call), call.p("group"), _NO_GROUP, "rules", "Security group contains rules."
    )


# --- aliases --------------------------------------------------------------------------------


def _aliases(call: Call) -> dict[str, Any]:
    return _scope(call)["aliases"]


@routes("GET", *ALIASES)
def aliases_list(call: Call) -> list[dict[str, Any]]:
    aliases = _aliases(call)
    return _digested(aliases, (a for _, a in sorted(aliases.items())))


@routes("POST", *ALIASES)
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
    return _named(_aliases(call), call.p("name"), "no such alias '{}'")


@routes("GET", *ALIAS)
def alias_get(call: Call) -> dict[str, Any]:
    return dict(_alias(call), digest=_digest(_aliases(call)))


@routes("PUT", *ALIAS)
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


@routes("DELETE", *ALIAS)
def alias_delete(call: Call) -> None:
    aliases = _aliases(call)
    _check_digest(call, aliases)
    _alias(call)
    aliases.pop(call.p("name"))


# --- IP sets --------------------------------------------------------------------------------


def _ipsets(call: Call) -> dict[str, Any]:
    return _scope(call)["ipset"]


_NO_IPSET = "no such IPSet '{}'"


@routes("GET", *IPSETS)
def ipsets_list(call: Call) -> list[dict[str, Any]]:
    return _list_named(_ipsets(call), "name")


@routes("POST", *IPSETS)
def ipsets_create(call: Call) -> None:
    _create_named(
        call,
        _ipsets(call),
        call.p("name"),
        "entries",
        missing=_NO_IPSET,
        exists="IPSet '{}' already exists",
    )


def _ipset(call: Call) -> dict[str, Any]:
    return _named(_ipsets(call), call.p("name"), _NO_IPSET)


@routes("GET", *IPSET)
def ipset_list(call: Call) -> list[dict[str, Any]]:
    entries = _ipset(call)["entries"]
    return _digested(entries, entries)


@routes("POST", *IPSET)
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


@routes("DELETE", *IPSET)
def ipset_delete(call: Call) -> None:
    _delete_named(
        _ipsets(call),
        call.p("name"),
        _NO_IPSET,
        "entries",
        "IPSet is not empty",
        force=bool(call.p("force")),
    )


def _entry(call: Call) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    entries = _ipset(call)["entries"]
    for e in entries:
        if e["cidr"] == call.p("cidr"):
            return entries, e
    raise ApiError(500, f"no such IP/Network '{call.p('cidr')}'")


@routes("GET", *IPSET_ENTRY)
def ipset_entry_get(call: Call) -> dict[str, Any]:
    entries, e = _entry(call)
    return dict(e, digest=_digest(entries))


@routes("PUT", *IPSET_ENTRY)
def ipset_entry_put(call: Call) -> None:
    entries, e = _entry(call)
    _check_digest(call, entries)
    if call.p("comment") is not None:
        e["comment"] = call.p("comment")
    if call.p("nomatch") is not None:
        e["nomatch"] = call.p("nomatch")


@routes("DELETE", *IPSET_ENTRY)
def ipset_entry_delete(call: Call) -> None:
    entries, e = _entry(call)
    _check_digest(call, entries)
    entries.remove(e)


@routes("GET", ND + "/log", VM + "/log", CT + "/log")
def fw_log(call: Call) -> list[dict[str, Any]]:
    _scope(call)
    return []


@routes("GET", CL + "/refs", VM + "/refs", CT + "/refs")
def fw_refs(call: Call) -> list[dict[str, Any]]:
    out = []
    scopes = [call.state["firewall"]["cluster"]]
    if call.method.path.startswith((VM, CT)):
        scopes.append(_scope(call))
    for scope in scopes:
        for kind, key, prefix in (("alias", "aliases", ""), ("ipset", "ipset", "+")):
            if call.p("type") not in (None, kind):
                continue
            for name, obj in sorted(scope[key].items()):
                out.append(
                    {
                        "type": kind,
                        "name": name,
                        "ref": prefix + name,
                        "scope": "dc",
                        "comment": obj.get("comment", ""),
                    }
                )
    return out
