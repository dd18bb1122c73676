"""A member's own `update` entry, as the coordinator takes it (`POST /v1/update`).

The member signs an `update` of its own registry document (only `registry.UPDATABLE`:
endpoints, capacity figures, endpoint certificate) whose `prev` is the head it last held.
The coordinator checks it exactly as any member checks it on load (the same replay, so the
same validators as an admission), and appends it as the next version only when `prev` is
its head: otherwise it answers 409 with its head's version, and the member reads the new
head and signs again (`service.update`, through `retry.retrying`). A refusal changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kloudctl.errors import KloudError
from kloudctl.federation.invites import InviteBook
from kloudctl.federation.keys import verify
from kloudctl.federation.registry import (
    ENTRY_KEYS,
    Registry,
    RegistryError,
    RegistryStore,
    signed_part,
)


class UpdateRefused(KloudError):
    """An update the coordinator does not append; `status` is its HTTP answer (4xx)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class StaleHead(KloudError):
    """An update signed on a head that is no longer the coordinator's (HTTP 409)."""

    def __init__(self, version: int, message: str | None = None) -> None:
        super().__init__(
            message
            or f"the update was signed on an older registry: the coordinator's head is version"
            f" {version}"
        )
        self.version = version


def _entry(document: Any) -> dict[str, Any]:
    """The entry of a request `{"entry": {...}}`, or UpdateRefused(400) saying what is wrong."""
    if not isinstance(document, dict) or set(document) != {"entry"}:
        raise UpdateRefused(400, 'update: expected an object {"entry": ...}')
    entry = document["entry"]
    if not isinstance(entry, dict) or set(entry) != ENTRY_KEYS:
        raise UpdateRefused(
            400, f"update: the entry must have exactly the fields {', '.join(sorted(ENTRY_KEYS))}"
        )
    if entry["kind"] != "update":
        raise UpdateRefused(400, f"update: kind {entry['kind']!r} is not taken here (only update)")
    return entry


def accept(folder: Path, document: Any) -> Registry:
    """Append the update in `document` to the coordinator's registry held in `folder`; the new
    registry. UpdateRefused (4xx) or StaleHead (409), and nothing written, otherwise."""
    entry = _entry(document)
    author, body = entry["author"], entry["body"]
    # The invites' lock serialises every change of the coordinator's registry.
    with InviteBook(folder).locked():
        store = RegistryStore(folder)
        registry = store.load()
        if entry["prev"] != registry.head or entry["version"] != registry.version + 1:
            raise StaleHead(registry.version)
        member = registry.members.get(author) if isinstance(author, str) else None
        if member is None:
            raise UpdateRefused(403, f"update: {author!r} is not a member of the federation")
        if member.state != "active":
            raise UpdateRefused(403, f"update: member {author!r} is {member.state}: refused")
        if not isinstance(body, dict) or body.get("commune") != author:
            raise UpdateRefused(403, f"update: {author!r} may change its own registry entry only")
        try:
            good = isinstance(entry["signature"], str) and verify(
                member.signing_key, entry["signature"], signed_part(entry)
            )
        except Exception:  # a malformed signature is a bad one
            good = False
        if not good:
            raise UpdateRefused(
                403, f"update: the signature is not {author!r}'s (its key in the registry)"
            )
        try:
            updated = Registry.verified([*registry.entries, entry], f"(update by {author})")
        except RegistryError as exc:
            raise UpdateRefused(400, str(exc)) from None
        store.accept(updated, f"(update by {author})")
    return updated
