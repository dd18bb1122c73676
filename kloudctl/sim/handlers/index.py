"""Directory indexes (`GET /nodes/{node}`, `GET /cluster`, ...), derived from the schema.

A GET whose path has only literal children in the schema, and whose answer is a list of
objects naming those children, is answered with one entry per child (each required string
property set to the child's name). Registered only where no specific handler exists.
"""

from __future__ import annotations

from typing import Any

from kloudctl.sim.api import HANDLERS, Call, api
from kloudctl.sim.schema import Method, load_schema


def _child_names(path: str) -> list[str] | None:
    children = load_schema().children.get(path, [])
    names = [child.rsplit("/", 1)[1] for child in children]
    if not names or any(n.startswith("{") for n in names):
        return None
    return names


def _index_keys(method: Method) -> list[str] | None:
    ret = method.returns
    if ret.get("type") != "array":
        return None
    props = (ret.get("items") or {}).get("properties") or {}
    required = [k for k, v in props.items() if not v.get("optional")]
    if any(props[k].get("type", "string") != "string" for k in required):
        return None
    return required


def _make(names: list[str], keys: list[str]) -> Any:
    def handler(call: Call) -> list[dict[str, str]]:
        node = call.p("node")
        if node is not None:
            call.cab.node(node)
        return [{k: name for k in keys} if keys else {"name": name} for name in names]

    handler.schema_index = True  # type: ignore[attr-defined]
    return handler


def register_indexes() -> None:
    schema = load_schema()
    for (http, path), method in schema.methods.items():
        if http != "GET" or (http, path) in HANDLERS or method.properties.keys() - {"node"}:
            continue
        names = _child_names(path)
        keys = _index_keys(method)
        if names is None or keys is None:
            continue
        api("GET", path)(_make(names, keys or []))
