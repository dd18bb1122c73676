"""Section-config objects (PVE keeps them in one `/etc/pve/*.cfg` each: backup jobs,
metric servers, notification endpoints and matchers, resource mappings): list, create,
read with the file's digest, update with `delete`/`digest`, remove.

`SectionStore` describes one kind; `register` records its handlers in a module's routes.
Secret options (tokens, passwords) are kept as salted hashes and never shown, as PVE
never shows them. Objects live in the state under `sections/<store>/<id>`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kloudctl.sim.api import ApiError, Call, Routes, bad_request
from kloudctl.sim.state import config_digest, hash_secret

_NOT_STORED = {"digest", "delete", "node"}


@dataclass(frozen=True)
class SectionStore:
    store: str  # the key in the state's `sections`
    key: str  # the parameter naming an object (`id`, `name`)
    what: str  # how error texts name one ("metric server", "endpoint")
    kind: str | None = None  # a fixed section type (`vzdump`, `smtp`, ...), if any
    secrets: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    new_id: Callable[[], str] | None = None  # an ID when the create call gives none
    shown_too: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None  # derived fields
    # how PVE completes a given name (HA: a bare VMID becomes `vm:<id>` or `ct:<id>`)
    complete: Callable[[Call, str], str] | None = None

    def name(self, call: Call) -> str:
        name = str(call.p(self.key))
        return self.complete(call, name) if self.complete is not None else name

    def objects(self, call: Call) -> dict[str, dict[str, Any]]:
        sections: dict[str, dict[str, Any]] = call.state.setdefault("sections", {})
        return sections.setdefault(self.store, {})

    def digest(self, call: Call) -> str:
        return config_digest({"section": self.objects(call)})

    def get(self, call: Call) -> dict[str, Any]:
        obj = self.objects(call).get(self.name(call))
        if obj is None:
            raise ApiError(500, f"{self.what} '{self.name(call)}' does not exist")
        return obj

    def shown(self, name: str, obj: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in obj.items() if k not in self.secrets}
        out[self.key] = name
        if self.kind is not None:
            out.setdefault("type", self.kind)
        if self.shown_too is not None:
            out.update(self.shown_too(name, obj))
        return out

    def values(self, call: Call) -> dict[str, Any]:
        out = {}
        for k, v in call.params.items():
            if k in _NOT_STORED or k == self.key or v is None:
                continue
            out[k] = hash_secret(str(v)) if k in self.secrets else v
        return out


def register(
    routes: Routes, base: str, item: str, store: SectionStore, *, create_on_item: bool = False
) -> None:
    """Record list (GET base), create (POST base, or POST item where PVE names the new
    object in the path: metric servers), read, update and remove (item) for `store`."""

    def listing(call: Call) -> list[dict[str, Any]]:
        digest = store.digest(call)
        objs = store.objects(call)
        return [{**store.shown(n, o), "digest": digest} for n, o in sorted(objs.items())]

    def create(call: Call) -> None:
        objs = store.objects(call)
        name = store.name(call) if call.p(store.key) is not None else None
        if name is None and store.new_id is not None:
            name = store.new_id()
        if name in objs:
            raise ApiError(500, f"{store.what} '{name}' already exists")
        objs[str(name)] = {**store.defaults, **store.values(call)}

    def read(call: Call) -> dict[str, Any]:
        return {
            **store.shown(store.name(call), store.get(call)),
            "digest": store.digest(call),
        }

    def update(call: Call) -> None:
        obj = store.get(call)
        want = call.p("digest")
        if want and want != store.digest(call):
            raise ApiError(
                500, "detected modified configuration - file changed by other user? Try again."
            )
        changes = store.values(call)
        deletes = [d for d in str(call.p("delete") or "").replace(";", ",").split(",") if d]
        for d in deletes:
            if d in changes:
                raise bad_request(
                    "delete", f"cannot set and delete property '{d}' at the same time"
                )
            obj.pop(d, None)
        obj.update(changes)

    def remove(call: Call) -> None:
        store.get(call)
        store.objects(call).pop(store.name(call))

    routes("GET", base)(listing)
    routes("POST", item if create_on_item else base)(create)
    routes("GET", item)(read)
    routes("PUT", item)(update)
    routes("DELETE", item)(remove)
