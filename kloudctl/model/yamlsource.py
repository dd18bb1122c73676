"""YAML loading that keeps where every value came from.

PyYAML's C composer gives nodes with marks; we construct plain Python data from them and
record, for every path inside the document, its 1-based line and column. Duplicate keys,
which YAML loaders silently merge, are reported as errors. Whatever the text, the answer is
data or located problems: nesting, size and values PyYAML cannot construct are bounded or
caught here, never left to crash the process.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kloudctl.errors import Problem

try:  # the C loader is an order of magnitude faster; fall back where libyaml is absent
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

PathKey = tuple[str | int, ...]
# A cabinet file holds a few thousand values; aliases could expand a small file into
# billions (the "billion laughs"): stop well before memory does.
MAX_VALUES = 200_000
# A cabinet nests 7 levels deep (cabinet, tenants, tenant, vms, vm, network, address).
MAX_DEPTH = 32
# libyaml's composer recurses in C, one frame per level: 30,000 brackets overflow the stack
# (SIGSEGV). Text that might nest deeper than this is scanned as events (no recursion)
# before anything is composed.
_COMPOSE_SAFE_DEPTH = 500
# A cabinet file is a few KB; a file a thousand times larger is a mistake (a dump, a log).
MAX_FILE_BYTES = 4 * 1024 * 1024


class _Refused(Exception):
    """Stops construction at a located value: too deep, too many values, unreadable.
    Internal: `load_text` turns it into a located Problem, so it never leaves this module."""

    def __init__(self, mark: tuple[int, int], field: str, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.field = field
        self.message = message


@dataclass
class Located:
    """A parsed document with the position of each of its values."""

    file: str
    data: Any
    # Scalars are located at their value (where the mistake is); collections at their key,
    # the line a person looks for.
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    keys: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    count: int = 0

    def where(self, path: PathKey) -> tuple[int, int]:
        """Position of `path`, or of its nearest existing ancestor."""
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), (1, 1))

    def problem(self, path: PathKey, message: str) -> Problem:
        line, column = self.where(path)
        return Problem(self.file, line, column, dotted(path), message)

    def key_problem(self, path: PathKey, message: str) -> Problem:
        """A problem about the key itself (unknown, misspelt), located at the key."""
        line, column = self.keys.get(path) or self.where(path)
        return Problem(self.file, line, column, dotted(path), message)


def dotted(path: PathKey) -> str:
    """`("tenants", 1, "vms", 0, "memory")` -> `tenants[1].vms[0].memory`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _nesting_bound(text: str) -> int:
    """An upper bound of the document's nesting depth, cheap to compute: every level opens
    with a character of its own among these (flow brackets, `-` entries, `?`/`:` keys)."""
    return 1 + sum(text.count(char) for char in "[{-:?")


def _too_deep(text: str) -> tuple[int, int] | None:
    """Where the nesting first exceeds MAX_DEPTH, from the event stream (no recursion)."""
    loader = _Loader(text)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    return (mark.line + 1, mark.column + 1) if mark else (1, 1)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    finally:
        loader.dispose()
    return None


def load_text(text: str, file: str) -> Located:
    """Parse one YAML document; syntax errors become Problems, never exceptions."""
    located = Located(file, None)
    loader = _Loader(text)
    try:
        if _nesting_bound(text) > _COMPOSE_SAFE_DEPTH:
            deep_at = _too_deep(text)
            if deep_at is not None:
                raise _Refused(deep_at, "", f"nesting deeper than {MAX_DEPTH} levels")
        node = loader.get_single_node()
        if node is None:
            located.data = None
            return located
        # Only merges (`<<`) need each mapping's own keys told from merged ones.
        own_keys = _own_keys(node) if "<<" in text else {}
        located.data = _construct(loader, node, (), located, own_keys)
    except _Refused as exc:
        located.problems.append(Problem(file, *exc.mark, exc.field, exc.message))
        located.data = None
    except yaml.reader.ReaderError as exc:
        # e.g. a control character: located by its offset in the text
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        located.problems.append(Problem(file, line, column, "", f"invalid YAML: {exc.reason}"))
        located.data = None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        located.problems.append(Problem(file, line, column, "", f"invalid YAML: {what}"))
        located.data = None
    except yaml.YAMLError as exc:
        located.problems.append(Problem(file, 1, 1, "", f"invalid YAML: {exc}"))
        located.data = None
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        # e.g. pathological nesting, or a timestamp/number PyYAML cannot construct
        located.problems.append(Problem(file, 1, 1, "", f"invalid YAML: {exc}"))
        located.data = None
    finally:
        loader.dispose()
    return located


def _own_keys(root: yaml.Node) -> dict[int, set[int]]:
    """Each mapping's own key nodes, taken before any `<<` is flattened: flattening changes
    the nodes in place, so a mapping reached again through an alias no longer tells."""
    own: dict[int, set[int]] = {}
    stack, seen = [root], set()
    while stack:  # no recursion: aliases may even make cycles
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            own[id(node)] = {id(key_node) for key_node, _ in node.value}
            stack.extend(child for pair in node.value for child in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return own


def _construct(
    loader: Any, node: yaml.Node, path: PathKey, located: Located, own_keys: dict[int, set[int]]
) -> Any:
    located.positions[path] = _mark(node)
    located.count += 1
    if located.count > MAX_VALUES:
        raise _Refused(_mark(node), "", f"too many values (over {MAX_VALUES}), check aliases")
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and len(path) >= MAX_DEPTH:
        # aliases can nest an anchor inside itself: the event scan cannot see that depth
        raise _Refused(_mark(node), "", f"nesting deeper than {MAX_DEPTH} levels")
    if isinstance(node, yaml.MappingNode):
        own = own_keys.get(id(node))
        loader.flatten_mapping(node)  # resolves `<<` merge keys like the safe loader does
        result: dict[Any, Any] = {}
        first_seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            plain = isinstance(key_node, yaml.ScalarNode)
            key = _scalar(loader, key_node, path) if plain else None
            if not plain or not isinstance(key, str | int | float | bool | None):
                line, column = _mark(key_node)
                located.problems.append(
                    Problem(located.file, line, column, dotted(path), "keys must be plain scalars")
                )
                continue
            key = str(key) if not isinstance(key, str) else key
            # Keys merged in by `<<` come first and are overridden by later ones, as YAML
            # says; only the mapping's own keys may not repeat.
            is_own = own is None or id(key_node) in own
            if is_own and key in first_seen:
                line, column = _mark(key_node)
                located.problems.append(
                    Problem(
                        located.file,
                        line,
                        column,
                        dotted((*path, key)),
                        f"duplicate key (first defined on line {first_seen[key]})",
                    )
                )
                continue
            if is_own:
                first_seen[key] = _mark(key_node)[0]
            child = (*path, key)
            result[key] = _construct(loader, value_node, child, located, own_keys)
            located.keys[child] = _mark(key_node)
            if isinstance(value_node, yaml.MappingNode | yaml.SequenceNode):
                located.positions[child] = _mark(key_node)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _construct(loader, item, (*path, index), located, own_keys)
            for index, item in enumerate(node.value)
        ]
    return _scalar(loader, node, path)


def _scalar(loader: Any, node: yaml.Node, path: PathKey) -> Any:
    """The scalar's value; one PyYAML cannot build (a date that does not exist, an integer
    of thousands of digits) is refused where it is written."""
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, OverflowError) as exc:
        digits = sum(char.isdigit() for char in node.value)
        if node.tag == "tag:yaml.org,2002:int" and digits > sys.get_int_max_str_digits():
            message = f"a number too large to read ({digits} digits)"
        else:
            text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
            message = f"cannot read {text!r}: {exc}"
        raise _Refused(_mark(node), dotted(path), message) from None


def load_file(path: Path, display: str | None = None) -> Located:
    name = display or str(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            return Located(
                name,
                None,
                problems=[
                    Problem(name, 0, 0, "", f"file larger than {MAX_FILE_BYTES // 1024**2} MiB")
                ],
            )
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Located(
            name, None, problems=[Problem(name, 1, 1, "", f"not UTF-8 text: {exc.reason}")]
        )
    except OSError as exc:
        return Located(
            name, None, problems=[Problem(name, 0, 0, "", f"cannot read: {exc.strerror}")]
        )
    return load_text(text, name)
