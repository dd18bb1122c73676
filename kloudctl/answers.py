"""Reading what external tools answer (podman, restic, Pulumi, the Proxmox API...).

A tool that answers something unexpected is an `ExternalError` naming the tool, what was
expected and what came back; never a `KeyError` or `TypeError` reaching the user. Every read
of another program's JSON goes through `parse_json` and `dig`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from kloudctl.errors import ExternalError, KloudError

#: How much of an unexpected answer a message quotes (enough to recognise it).
QUOTE_CHARS = 200

Path = tuple[str | int, ...]


class UnexpectedAnswer(ExternalError):
    """A tool answered, but not in the shape kloudctl knows."""

    def __init__(self, tool: str, expected: str, got: object) -> None:
        self.tool = tool
        self.expected = expected
        self.got = quote(got)
        super().__init__(f"{tool} answered unexpectedly: expected {expected}; got {self.got}")


def quote(value: object) -> str:
    """A short, one-line rendering of what came back."""
    if isinstance(value, str | bytes):
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        if not text.strip():
            return "nothing"
    else:
        try:
            text = json.dumps(value, sort_keys=True, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    text = " ".join(text.split())
    return repr(text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "...")


def parse_json(tool: str, text: str | bytes) -> Any:
    """`text` as JSON, or UnexpectedAnswer naming `tool`."""
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError):  # nested beyond any answer: not one
        raise UnexpectedAnswer(tool, "JSON", text) from None


def _where(path: Path) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else f".{step}"
    return out.lstrip(".") or "the answer"


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def dig(
    tool: str,
    data: Any,
    *path: str | int,
    kind: type | tuple[type, ...] = object,
    default: Any = ...,
) -> Any:
    """`data[path[0]][path[1]]...`, checked: each step must exist (or `default` is returned)
    and the value must be of `kind`; otherwise UnexpectedAnswer says where and what came back.
    """
    value = data
    for depth, step in enumerate(path):
        container_ok = isinstance(value, dict) if isinstance(step, str) else isinstance(value, list)
        present = container_ok and (
            step in value if isinstance(step, str) else -len(value) <= step < len(value)
        )
        if not present:
            if default is not ...:
                return default
            expected = f"{_where(path[: depth + 1])} in its answer"
            raise UnexpectedAnswer(tool, expected, data)
        value = value[step]
    if kind is not object:
        bad_bool = isinstance(value, bool) and bool not in (
            kind if isinstance(kind, tuple) else (kind,)
        )
        if bad_bool or not isinstance(value, kind):
            if value is None and default is not ...:
                return default
            raise UnexpectedAnswer(tool, f"{_where(path)} to be {_kind_name(kind)}", data)
    return value


def number(tool: str, data: Any, *path: str | int, default: Any = ...) -> Any:
    """`dig` for a number: an integer or a float, finite, as a float (never true or false).

    JSON's integers have no bound and Python's `float()` of a huge one overflows, so a huge
    or infinite value is an unexpected answer too, said where `dig` would say it.
    """
    value = dig(tool, data, *path, default=default)
    if value is default or (value is None and default is not ...):
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnexpectedAnswer(tool, f"{_where(path)} to be a number", data)
    try:
        result = float(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        raise UnexpectedAnswer(tool, f"{_where(path)} to be a finite number", data)
    return result


# --- documents described by a JSON Schema ---------------------------------------------------
#
# kloudctl's own machine interfaces (the replication agent's) ship a JSON Schema. Cabinets
# carry no JSON Schema library (kloudctl.hosts.bundle), so both ends read the schema with
# this small reader of the subset they use; the tests check it agrees with the `jsonschema`
# library on the interface's documents. A keyword outside the subset is refused when the
# schema is read, never silently ignored.

#: The keywords the reader checks.
SCHEMA_KEYWORDS = frozenset({
    "$ref", "type", "const", "enum", "properties", "required", "additionalProperties",
    "items", "minimum", "maximum", "minLength", "pattern", "allOf", "if", "then", "else",
})  # fmt: skip
#: Keywords that describe and never constrain.
SCHEMA_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description"})
_JSON_TYPE_NAMES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


class SchemaUnsupported(KloudError):
    """A schema uses what `schema_problem` does not read: a bug of kloudctl's own schema
    (the tests read every shipped schema), said rather than ignored."""


def _is_type(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return name == "boolean"
    if name == "number" and isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, _JSON_TYPES[name])


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _resolve(root: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/$defs/"):
        raise SchemaUnsupported(f"only local references to #/$defs are read, not {ref!r}")
    name = ref.removeprefix("#/$defs/")
    try:
        return root["$defs"][name]
    except KeyError:
        raise SchemaUnsupported(f"no definition {name!r} in the schema") from None


def schema_problem(document: Any, schema: Any, root: dict[str, Any]) -> tuple[Path, str] | None:
    """The first place where `document` breaks `schema` (whose `$ref`s point into `root`):
    (path, what was expected there), or None when it conforms."""
    return _problem(document, schema, root, ())


def _problem(value: Any, schema: Any, root: dict[str, Any], path: Path) -> tuple[Path, str] | None:
    if schema is True:
        return None
    if schema is False:
        return path, "to be absent"
    if not isinstance(schema, dict):
        raise SchemaUnsupported(f"a schema is an object or a boolean, not {schema!r}")
    unknown = set(schema) - SCHEMA_KEYWORDS - SCHEMA_ANNOTATIONS
    if unknown:
        raise SchemaUnsupported(f"schema keyword(s) {', '.join(sorted(unknown))} not read")
    if "$ref" in schema:
        found = _problem(value, _resolve(root, schema["$ref"]), root, path)
        if found:
            return found
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, name) for name in names):
            kinds = " or ".join(_JSON_TYPE_NAMES[n] for n in names)
            return path, f"to be {kinds}"
    if "const" in schema and not _same(value, schema["const"]):
        return path, f"to be {json.dumps(schema['const'])}"
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        return path, "to be one of " + ", ".join(json.dumps(e) for e in schema["enum"])
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                return (*path, key), "to be given"
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            sub = properties.get(key, extra)
            found = _problem(item, sub, root, (*path, key))
            if found:
                return found
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found = _problem(item, schema["items"], root, (*path, i))
            if found:
                return found
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            return path, f"to be at least {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return path, f"to be at most {schema['maximum']}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return path, f"to be at least {schema['minLength']} character(s) long"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return path, f"to match {schema['pattern']}"
    for sub in schema.get("allOf", []):
        found = _problem(value, sub, root, path)
        if found:
            return found
    if "if" in schema:
        branch = "then" if _problem(value, schema["if"], root, path) is None else "else"
        if branch in schema:
            return _problem(value, schema[branch], root, path)
    return None


def conforming(tool: str, document: Any, schema: Any, root: dict[str, Any]) -> Any:
    """`document`, if it conforms to `schema`; otherwise UnexpectedAnswer naming `tool`,
    where the document breaks the schema, and what came back there."""
    found = schema_problem(document, schema, root)
    if found is None:
        return document
    where, expected = found
    value: Any = document
    for step in where:
        if not _present(value, step):
            value = ""  # quoted as "nothing"
            break
        value = value[step]
    raise UnexpectedAnswer(tool, f"{_where(where)} {expected}", value)


def _present(container: Any, step: str | int) -> bool:
    if isinstance(step, str):
        return isinstance(container, dict) and step in container
    return isinstance(container, list) and -len(container) <= step < len(container)
