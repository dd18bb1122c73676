"""YAML loading that keeps where every value came from.

PyYAML's C composer gives nodes with marks; we construct plain Python data from them and
record, for every path inside the document, its 1-based line and column. Duplicate keys,
which YAML loaders silently merge, are reported as errors.
"""

from __future__ import annotations

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


class _TooLarge(Exception):
    pass


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


def load_text(text: str, file: str) -> Located:
    """Parse one YAML document; syntax errors become Problems, never exceptions."""
    located = Located(file, None)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            located.data = None
            return located
        located.data = _construct(loader, node, (), located)
    except _TooLarge:
        located.problems.append(
            Problem(
                file, 1, 1, "", f"invalid YAML: too many values (over {MAX_VALUES}), check aliases"
            )
        )
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


def _construct(loader: Any, node: yaml.Node, path: PathKey, located: Located) -> Any:
    located.positions[path] = _mark(node)
    located.count += 1
    if located.count > MAX_VALUES:
        raise _TooLarge
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<` merge keys like the safe loader does
        result: dict[Any, Any] = {}
        first_seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                line, column = _mark(key_node)
                located.problems.append(
                    Problem(located.file, line, column, dotted(path), "keys must be plain scalars")
                )
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in first_seen:
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
            first_seen[key] = _mark(key_node)[0]
            child = (*path, key)
            result[key] = _construct(loader, value_node, child, located)
            located.keys[child] = _mark(key_node)
            if isinstance(value_node, yaml.MappingNode | yaml.SequenceNode):
                located.positions[child] = _mark(key_node)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _construct(loader, item, (*path, index), located)
            for index, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)


def load_file(path: Path, display: str | None = None) -> Located:
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return Located(
            name, None, problems=[Problem(name, 1, 1, "", f"not UTF-8 text: {exc.reason}")]
        )
    except OSError as exc:
        return Located(
            name, None, problems=[Problem(name, 0, 0, "", f"cannot read: {exc.strerror}")]
        )
    return load_text(text, name)
