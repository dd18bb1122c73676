"""The Proxmox VE API schema (apidata.js of pve-docs 9.1.3, as JSON) and routing over it.

Routes come from the schema only: a path/method pair the schema does not list is a 404 / 501
exactly as on a real node, and a listed method without a simulated handler answers 501
naming it. Nothing of the schema is copied into code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Method:
    path: str
    http: str
    info: dict[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"{self.http} {self.path}"

    @property
    def name(self) -> str:
        return str(self.info.get("name", ""))

    @property
    def parameters(self) -> dict[str, Any]:
        return self.info.get("parameters") or {}

    @property
    def properties(self) -> dict[str, Any]:
        return self.parameters.get("properties") or {}

    @property
    def returns(self) -> dict[str, Any]:
        return self.info.get("returns") or {}

    @property
    def permissions(self) -> dict[str, Any] | None:
        return self.info.get("permissions")

    @property
    def allowtoken(self) -> bool:
        return bool(self.info.get("allowtoken", 1))

    @property
    def protected(self) -> bool:
        return bool(self.info.get("protected"))


class _Node:
    __slots__ = ("literal", "methods", "path", "var", "var_name")

    def __init__(self) -> None:
        self.literal: dict[str, _Node] = {}
        self.var: _Node | None = None
        self.var_name = ""
        self.path = ""
        self.methods: dict[str, Method] = {}


class Schema:
    """All methods of the API, a router, and the tree's children (for directory indexes)."""

    def __init__(self, tree: list[dict[str, Any]]) -> None:
        self.methods: dict[tuple[str, str], Method] = {}
        self.children: dict[str, list[str]] = {}
        self._root = _Node()
        for node in tree:
            self._walk(node, "")

    def _walk(self, node: dict[str, Any], parent: str) -> None:
        path = node["path"]
        self.children.setdefault(parent, []).append(path)
        trie = self._insert(path)
        for http, info in (node.get("info") or {}).items():
            method = Method(path, http, info)
            self.methods[(http, path)] = method
            trie.methods[http] = method
        for child in node.get("children") or []:
            self._walk(child, path)

    def _insert(self, path: str) -> _Node:
        cur = self._root
        for seg in path.strip("/").split("/"):
            if seg.startswith("{") and seg.endswith("}"):
                if cur.var is None:
                    cur.var = _Node()
                    cur.var_name = seg[1:-1]
                cur = cur.var
            else:
                cur = cur.literal.setdefault(seg, _Node())
        cur.path = path
        return cur

    def route(self, path: str) -> tuple[str, dict[str, Any], dict[str, Method]] | None:
        """Match a request path (below /api2/json) to a schema path and its path variables."""
        segs = [s for s in path.strip("/").split("/")] if path.strip("/") else []
        found = self._match(self._root, segs, 0, {})
        # A volume ID holds slashes (`local:iso/debian.iso`) and clients send it as is: the
        # `{volume}` at the end of a path takes the rest of it, as PVE's router lets it.
        cut = len(segs) - 1
        while found is None and cut >= 1:
            joined = [*segs[: cut - 1], "/".join(segs[cut - 1 :])]
            candidate = self._match(self._root, joined, 0, {})
            if candidate is not None and candidate[0].path.endswith("{volume}"):
                found = candidate
            cut -= 1
        if found is None:
            return None
        node, params = found
        return node.path, params, node.methods

    def _match(
        self, node: _Node, segs: list[str], i: int, params: dict[str, str]
    ) -> tuple[_Node, dict[str, str]] | None:
        if i == len(segs):
            return (node, params) if node.path else None
        seg = segs[i]
        child = node.literal.get(seg)
        if child is not None:
            found = self._match(child, segs, i + 1, params)
            if found:
                return found
        if node.var is not None and seg:
            found = self._match(node.var, segs, i + 1, {**params, node.var_name: seg})
            if found:
                return found
        return None

    def __len__(self) -> int:
        return len(self.methods)


@cache
def load_schema() -> Schema:
    text = resources.files("kloudctl.sim").joinpath("data/pve-api-schema.json").read_text()
    return Schema(json.loads(text))
