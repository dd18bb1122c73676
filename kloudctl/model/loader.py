"""Loading a fleet: every file parsed, validated and cross-checked, every error collected.

`load_fleet` either returns a complete, consistent `Fleet` or raises one `InputError`
carrying all problems found, each located as `file:line:col field: message`.
"""

from __future__ import annotations

import difflib
import errno
import os
import stat
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from kloudctl.errors import InputError, NotFound, Problem
from kloudctl.model.fleet import Fleet, LoadedCabinet, LoadedPolicy, cross_check
from kloudctl.model.schema import BackupPolicy, Cabinet, FleetSettings
from kloudctl.model.secrets import SecretFolders, extra_folder
from kloudctl.model.types import VARIANT_TAGS, Unique
from kloudctl.model.yamlsource import Located, PathKey, dotted, load_file

M = TypeVar("M", bound=BaseModel)

CABINETS_DIR = "cabinets"
BACKUPS_DIR = "backups"
SETTINGS_FILE = "fleet.yaml"
# Keys that, when unknown, are most likely a secret pasted in place of a reference.
_SECRET_WORDS = ("password", "passwd", "secret", "token", "passphrase", "private_key", "apikey")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at `loc` inside `model` (for did-you-mean)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            current = field.annotation if field else None
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip Optional[...] and Annotated[...] around a model or list type."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            real = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(real) != 1:
                return annotation
            annotation = real[0]
        else:
            return annotation


def _message(error: Any, model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "kloud":
        return str(error["msg"])
    if kind == "extra_forbidden":
        key = str(loc[-1])
        if any(word in key.lower().replace("-", "_") for word in _SECRET_WORDS):
            return (
                "unknown key; secrets are never written in cabinet files: use a reference "
                "such as vault:secrets/<cabinet>.vault.yml#<name> in the field meant for it"
            )
        allowed = _field_names(model, loc[:-1])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = (
            f"; did you mean '{close[0]}'?" if close else f"; expected one of: {', '.join(allowed)}"
        )
        return f"unknown key{hint}"
    if kind == "missing":
        return "required field is missing"
    expectations = {
        "int_parsing": "an integer",
        "int_type": "an integer",
        "int_from_float": "a whole number",
        "float_parsing": "a number",
        "float_type": "a number",
        "bool_parsing": "true or false",
        "bool_type": "true or false",
        "string_type": "a text",
        "list_type": "a list",
        "model_type": "a mapping of keys to values",
        "model_attributes_type": "a mapping of keys to values",
        "dict_type": "a mapping of keys to values",
    }
    if kind in expectations:
        return f"expected {expectations[kind]}, got {_shown(value)}"
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected')}, got {_shown(value)}"
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("more than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"expected a number {words} {ctx.get(key)}, got {_shown(value)}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} item(s)"
    if kind == "string_too_short":
        return "expected a non-empty text"
    if kind == "string_pattern_mismatch":
        return f"expected text matching {ctx.get('pattern')}, got {_shown(value)}"
    return f"{error['msg']}, got {_shown(value)}"


def validate_document(
    located: Located, model: type[BaseModel]
) -> tuple[BaseModel | None, list[Problem]]:
    """Validate one parsed document against `model`; every problem located."""
    problems = list(located.problems)
    if problems:
        return None, problems
    if not isinstance(located.data, dict):
        what = "an empty file" if located.data is None else f"a {type(located.data).__name__}"
        problems.append(located.problem((), f"expected a mapping of keys to values, got {what}"))
        return None, problems
    try:
        document = model.model_validate(located.data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc: PathKey = tuple(
                p for p in error["loc"] if isinstance(p, str | int) and p not in VARIANT_TAGS
            )
            message = _message(error, model, loc)
            if error["type"] == "extra_forbidden":
                problems.append(located.key_problem(loc, message))
            else:
                problems.append(located.problem(loc, message))
        return None, problems
    problems += _repeated_items(document, located)
    return (None if problems else document), problems


def _repeated_items(model: BaseModel, located: Located, path: PathKey = ()) -> list[Problem]:
    """A problem for each repeated item of every list of `model` marked `Unique` (a set),
    located at the repeat."""
    problems: list[Problem] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        here = (*path, name)
        if isinstance(value, BaseModel):
            problems += _repeated_items(value, located, here)
        if not isinstance(value, list):
            continue
        for marker in field.metadata:
            if not isinstance(marker, Unique):
                continue
            first: dict[Any, int] = {}
            for index, item in enumerate(value):
                seen = getattr(item, marker.key) if marker.key else item
                if seen in first:
                    where = (*here, index, marker.key) if marker.key else (*here, index)
                    also = dotted((*here, first[seen]))
                    message = f"duplicate {marker.what} {_shown(seen)} (also {also})"
                    problems.append(located.problem(where, message))
                first.setdefault(seen, index)
        for index, item in enumerate(value):
            if isinstance(item, BaseModel):
                problems += _repeated_items(item, located, (*here, index))
    return problems


def find_root(start: Path) -> Path:
    """The fleet root: the nearest folder at or above `start` holding `cabinets/`."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / CABINETS_DIR).is_dir():
            return candidate
    raise NotFound(f"{start}: no '{CABINETS_DIR}/' folder here or above; use --fleet DIR")


def _display(path: Path, root: Path) -> str:
    # The folder is resolved, not the file: a link stays named as it is in cabinets/.
    try:
        return str((path.parent.resolve() / path.name).relative_to(root))
    except ValueError:
        return str(path)


def declaration_files(folder: Path) -> list[Path]:
    """Every entry of `folder` named like a declaration, readable or not (a folder or a
    broken link named `x.yaml` is a mistake to report, not to skip). Names starting with
    a dot are left out: editors' lock and swap files."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith(".")
    )


def not_a_file(path: Path) -> str | None:
    """Why the entry `path` cannot be read as a declaration, or None when it is a file."""
    try:
        mode = path.stat().st_mode  # follows links
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "expected a file, got a symbolic link loop"
        if path.is_symlink():
            return f"expected a file, got a broken symbolic link (to {os.readlink(path)})"
        return f"cannot read: {exc.strerror}"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "expected a file, got a folder"
    # a named pipe would block the read forever, a device would never end
    return "expected a file, got a special file (pipe, socket or device)"


def declared_names(root: Path, folder: str = CABINETS_DIR) -> list[str]:
    """Names of the readable declaration files of `root/folder`, unvalidated (completion)."""
    return [p.stem for p in declaration_files(root / folder) if not_a_file(p) is None]


def _load_folder(
    root: Path, folder: str, model: type[M], problems: list[Problem]
) -> dict[str, tuple[M, Located]]:
    """Every valid document of `root/folder`, by name; problems appended to `problems`.
    A document's `name` must be its file name, so references by name find the file."""
    loaded: dict[str, tuple[M, Located]] = {}
    for path in declaration_files(root / folder):
        why = not_a_file(path)
        if why is not None:
            problems.append(Problem(_display(path, root), 0, 0, "", why))
            continue
        located = load_file(path, _display(path, root))
        document, found = validate_document(located, model)
        problems += found
        if isinstance(document, model):
            name = getattr(document, "name")  # noqa: B009 (both models have a name)
            if name != path.stem:
                problems.append(
                    located.problem(("name",), f"must match the file name '{path.stem}'")
                )
            loaded[name] = (document, located)
    return loaded


def load_settings(root: Path) -> tuple[SecretFolders, list[Problem]]:
    """The fleet's settings (`fleet.yaml` beside `cabinets/`, optional): where secret
    references may lead. Its problems concern every cabinet: they are always reported."""
    path = root / SETTINGS_FILE
    folders = SecretFolders(root)
    if not path.exists() and not path.is_symlink():
        return folders, []
    why = not_a_file(path)
    if why is not None:
        return folders, [Problem(SETTINGS_FILE, 0, 0, "", why)]
    located = load_file(path, SETTINGS_FILE)
    settings, problems = validate_document(located, FleetSettings)
    if not isinstance(settings, FleetSettings) or settings.secrets.extra_folder is None:
        return folders, problems
    extra, why = extra_folder(root, settings.secrets.extra_folder)
    if why is not None:
        return folders, [located.problem(("secrets", "extra_folder"), why)]
    return SecretFolders(root, extra), []


def load_fleet(root: Path, only: list[Path] | None = None) -> Fleet:
    """Load and validate the whole fleet under `root`.

    With `only`, problems are reported only for those files (the rest of the fleet is still
    loaded so cross-references resolve).
    """
    root = root.resolve()
    if not (root / CABINETS_DIR).is_dir():
        raise NotFound(f"{root}: no '{CABINETS_DIR}/' folder: not a fleet")
    folders, settings_problems = load_settings(root)
    problems: list[Problem] = []

    loaded_policies = _load_folder(root, BACKUPS_DIR, BackupPolicy, problems)
    loaded_cabinets = _load_folder(root, CABINETS_DIR, Cabinet, problems)
    policies = {name: LoadedPolicy(*pair) for name, pair in loaded_policies.items()}
    cabinets = {name: LoadedCabinet(*pair) for name, pair in loaded_cabinets.items()}

    fleet = Fleet(root, cabinets, policies, folders)
    problems += cross_check(
        fleet,
        frozenset(p.stem for p in declaration_files(root / CABINETS_DIR)),
        frozenset(p.stem for p in declaration_files(root / BACKUPS_DIR)),
    )

    if only is not None:
        wanted = {_display(p, root) for p in only}
        problems = [p for p in problems if p.file in wanted]
    problems += settings_problems
    if problems:
        raise InputError(problems)
    return fleet
