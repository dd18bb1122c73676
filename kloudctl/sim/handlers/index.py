"""Directory indexes (`GET /nodes/{node}`, `GET /cluster`, ...), derived from the schema.

A GET whose path has only literal children in the schema, and whose answer is a list of
objects naming those children, is answered with one entry per child (each required string
property set to the child's name). Used only where no specific handler exists.
"""

from __future__ import annotations

from typing import Any

from kloudctl.sim.api import Call, Handler
from kloudctl.sim.schema import Method, Schema


def _child_names(schema: Schema, path: str) -> list[str] | None:
    children = schema.children.get(path, [])
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


def index_handlers(schema: Schema, taken: set[tuple[str, str]]) -> dict[tuple[str, str], Handler]:
    """A handler for every directory index of the schema that `taken` does not answer."""
    out: dict[tuple[str, str], Handler] = {}
    for (http, path), method in schema.methods.items():
        if http != "GET" or (http, path) in taken or method.properties.keys() - {"node"}:
            continue
        names = _child_names(schema, path)
        keys = _index_keys(method)
        if names is None or keys is None:
            continue
        out[(http, path)] = _make(names, keys or [])
    return out
