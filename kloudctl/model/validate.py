"""Validation entry point for files and folders given on the command line."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kloudctl.errors import InputError, Problem
from kloudctl.model.fleet import Fleet
from kloudctl.model.loader import (
    BACKUPS_DIR,
    CABINETS_DIR,
    declaration_files,
    find_root,
    load_fleet,
)

#: A check beyond the declaration (an engine's, such as the federation's registry), handed
#: in by the CLI so the model imports no engine: the fleet and the files asked for (None:
#: all) -> their problems.
Check = Callable[[Fleet, list[Path] | None], list[Problem]]


def validate_paths(
    paths: list[str], fleet_dir: str | None = None, checks: Sequence[Check] = ()
) -> dict[str, Any]:
    """Validate the given files/folders (or the fleet); raise InputError with all problems.

    A file is validated within its fleet (the folder above its `cabinets/` or `backups/`),
    so its cross-references resolve; only its own problems are reported.
    """
    if not paths:
        root = Path(fleet_dir).resolve() if fleet_dir else find_root(Path.cwd())
        fleet = load_fleet(root)
        extra = [p for check in checks for p in check(fleet, None)]
        if extra:
            raise InputError(extra)
        return {
            "valid": True,
            "cabinets": len(fleet.cabinets),
            "policies": len(fleet.policies),
            "problems": [],
        }

    problems: list[Problem] = []
    cabinets = policies = 0
    # per fleet root, the files asked for; None: the whole fleet
    by_root: dict[Path, list[Path] | None] = {}
    for raw in paths:
        path = Path(raw).absolute()
        if path.suffix in (".yaml", ".yml") and path.parent.name in (CABINETS_DIR, BACKUPS_DIR):
            # a declaration, whatever it is on disk (the loader says why a folder or a
            # link named like one cannot be read); its folder resolved, not the file
            path = path.parent.resolve() / path.name
            files = by_root.setdefault(path.parent.parent, [])
            if files is not None:
                files.append(path)
            continue
        path = path.resolve()
        if not path.is_dir():
            problems.append(
                Problem(
                    raw, 0, 0, "", "expected a file inside a fleet's cabinets/ or backups/ folder"
                )
            )
        elif (path / CABINETS_DIR).is_dir():
            if not declaration_files(path / CABINETS_DIR) + declaration_files(path / BACKUPS_DIR):
                problems.append(Problem(raw, 0, 0, "", "holds no .yaml file to validate"))
            by_root[path] = None
        elif path.name in (CABINETS_DIR, BACKUPS_DIR) and (path.parent / CABINETS_DIR).is_dir():
            declared = declaration_files(path)
            if not declared:
                problems.append(Problem(raw, 0, 0, "", "holds no .yaml file to validate"))
            files = by_root.setdefault(path.parent, [])
            if files is not None:
                files += declared
        else:
            problems.append(
                Problem(
                    raw,
                    0,
                    0,
                    "",
                    "expected a fleet folder (holding cabinets/), its cabinets/ or backups/ "
                    "folder, or a file in them",
                )
            )
    for root, files in sorted(by_root.items()):
        try:
            fleet = load_fleet(root, only=files)
        except InputError as exc:
            problems += exc.problems
            continue
        problems += [p for check in checks for p in check(fleet, files)]
        if files is not None:
            cabinets += sum(1 for f in files if f.parent.name == CABINETS_DIR)
            policies += sum(1 for f in files if f.parent.name == BACKUPS_DIR)
        else:
            cabinets += len(fleet.cabinets)
            policies += len(fleet.policies)
    if problems:
        raise InputError(problems)
    return {"valid": True, "cabinets": cabinets, "policies": policies, "problems": []}
