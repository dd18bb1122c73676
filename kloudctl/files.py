"""Files kloudctl writes and stores it reads: the rules, in one place.

A file kloudctl may write is a regular file, or a missing name in an existing folder; never
a device (replacing /dev/full with a file is how a typo does damage), a folder or a link
(writing through a link someone planted writes somewhere else). A write replaces the file
atomically: a temporary file in the same folder, fsync, os.replace, fsync of the folder, so
readers (node_exporter, a crash, a concurrent run) see the old content or the new one,
never a torn one.

A store kloudctl reads (an accounts database, a state folder, a key file) must exist: read
commands never create one, so a mistyped path is an error, not an empty answer.

Every violation is an InputError (exit 2) naming the path and what to do.

(`kloudctl.mail.accounts_db` keeps its own small writer: it runs on the mail host with the
standard library only, where kloudctl is not installed.)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kloudctl.errors import InputError, KloudError


def checked_path(path: str | Path, what: str) -> Path:
    """`path` as a Path; an empty path or one holding a NUL is an input error."""
    text = os.fspath(path)
    if not text:
        raise InputError(f"{what}: the path is empty")
    if "\0" in text:
        raise InputError(f"{what} {text!r}: a path cannot hold a NUL character")
    return Path(text)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _check_folder(path: Path, what: str) -> None:
    folder = path.parent
    try:
        is_folder = stat.S_ISDIR(os.stat(folder).st_mode)  # a link to a folder is fine
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(
            f"{what} {path}: folder {folder} does not exist: create it first or choose another path"
        ) from None
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot reach {folder} ({exc.strerror})") from None
    if not is_folder:
        raise InputError(f"{what} {path}: {folder} is not a folder: choose another path")


def writable_file(path: str | Path, what: str = "file") -> Path:
    """`path` if kloudctl may write it (a regular file, or absent in an existing folder).

    Checked before any work, so a wrong path fails first and changes nothing."""
    checked = checked_path(path, what)
    try:
        mode = os.lstat(checked).st_mode
    except FileNotFoundError:
        _check_folder(checked, what)
        return checked
    except NotADirectoryError:
        raise InputError(f"{what} {checked}: a part of the path is not a folder") from None
    except OSError as exc:
        raise InputError(f"{what} {checked}: cannot be checked ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise InputError(
            f"{what} {checked} is {_kind(mode)}, not a regular file: kloudctl never replaces"
            " one; give the path of a file"
        )
    return checked


def _temporary(path: Path, what: str, data: bytes, mode: int) -> str:
    """A fsynced temporary file holding `data` with `mode`, next to `path`."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise InputError(
            f"{what} {path}: cannot create a file in {path.parent} ({exc.strerror}):"
            " choose a folder where you may write"
        ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise KloudError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    return tmp


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(
    path: str | Path,
    data: str | bytes,
    *,
    mode: int = 0o644,
    keep_mode: bool = False,
    what: str = "file",
) -> Path:
    """Replace (or create) `path` with `data`, atomically.

    A new file gets `mode`. With `keep_mode`, an existing file keeps its mode (and its
    owner, where allowed): a file someone else made, such as a textfile node_exporter
    reads, stays as they set it. Without it the file gets `mode` every time (secrets)."""
    checked = writable_file(path, what)
    raw = data.encode() if isinstance(data, str) else data
    current = None
    if keep_mode:
        with contextlib.suppress(FileNotFoundError):
            current = os.stat(checked)
    tmp = _temporary(checked, what, raw, stat.S_IMODE(current.st_mode) if current else mode)
    try:
        if current is not None:
            with contextlib.suppress(PermissionError):
                os.chown(tmp, current.st_uid, current.st_gid)
        os.replace(tmp, checked)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise KloudError(f"cannot write {what} {checked}: {exc.strerror or exc}") from None
    _sync_folder(checked.parent)
    return checked


def create_once(
    path: str | Path, data: str | bytes, *, mode: int = 0o600, what: str = "file"
) -> bool:
    """Create `path` with `data` unless it exists; True when this call created it.

    For values made once (generated keys): when two runs race, exactly one file wins,
    whole, and neither overwrites the other's (a hard link never replaces a name)."""
    checked = writable_file(path, what)
    if checked.exists():
        return False
    raw = data.encode() if isinstance(data, str) else data
    tmp = _temporary(checked, what, raw, mode)
    try:
        os.link(tmp, checked)
        created = True
    except FileExistsError:
        created = False
    except OSError as exc:
        raise KloudError(f"cannot write {what} {checked}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _sync_folder(checked.parent)
    return created


def existing_store(path: str | Path, what: str, remedy: str, *, folder: bool = False) -> Path:
    """`path` if it exists as a file (or, with `folder`, a folder) kloudctl may read.

    Read commands call this instead of creating what is missing."""
    checked = checked_path(path, what)
    try:
        mode = os.stat(checked).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{what} {checked} does not exist: {remedy}") from None
    except OSError as exc:
        raise InputError(f"{what} {checked}: cannot be read ({exc.strerror}): {remedy}") from None
    if folder and not stat.S_ISDIR(mode):
        raise InputError(f"{what} {checked} is not a folder: {remedy}")
    if not folder and not stat.S_ISREG(mode):
        raise InputError(f"{what} {checked} is {_kind(mode)}, not a file: {remedy}")
    return checked


def sha256_of(path: Path) -> str:
    """The file's SHA-256, read in 1 MiB blocks (archives may be larger than memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a lock file, made 0600) for the block: read, change
    and write back a small store without a concurrent run in between."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_json_object(path: Path, what: str, not_object: str) -> dict[str, Any]:
    """The JSON object a small store keeps in `path` ({} before its first write); a damaged
    one is an error naming `what` and the file."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:
        raise KloudError(f"{what} {path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise KloudError(f"{what} {path}: {not_object}")
    return data
