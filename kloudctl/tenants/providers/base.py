"""What every Proxmox dynamic provider shares.

Pulumi pickles a dynamic provider (with dill) into the stack's state and runs that pickled
code for every later operation, delete included. So a provider here holds NO state and NO
client: each method builds its proxmoxer client from the resource's `api` input (endpoint,
fingerprint, token id, and the token secret, which arrives as a Pulumi secret and is only
ever stored encrypted), and drops it when the method returns.

`update` always returns the full outputs (Pulumi's default would drop them).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from kloudctl.proxmox.client import ApiTarget, Client, ProxmoxError

API = "api"
#: How the providers name themselves to Proxmox (User-Agent `kloudctl/<v> (pulumi-provider)`).
PROVIDER_COMPONENT = "pulumi-provider"
# Connection details: a change updates the stored outputs, never the Proxmox object.
_API_KEYS = ("endpoint", "fingerprint", "token_id", "secret")

GONE_WORDS = ("does not exist", "no such", "not found", "unknown")


def is_gone(exc: ProxmoxError) -> bool:
    text = str(exc).lower()
    return exc.status == 404 or any(word in text for word in GONE_WORDS)


def client_for(props: dict[str, Any]) -> Client:
    return Client(ApiTarget.from_inputs(props[API]), component=PROVIDER_COMPONENT)


def inputs_of(props: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if not k.startswith("__")}


class ProxmoxProvider(ResourceProvider):
    """Base: diff on declared inputs; `replace_on` keys need a new object."""

    kind: ClassVar[str] = "object"
    replace_on: ClassVar[tuple[str, ...]] = ()
    # Output-only keys (never compared with inputs).
    computed: ClassVar[tuple[str, ...]] = ()

    # -- hooks -------------------------------------------------------------------------

    def validate(self, olds: dict[str, Any], news: dict[str, Any]) -> list[CheckFailure]:
        return []

    def _create(self, client: Client, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError

    def _update(
        self, client: Client, id_: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- the Pulumi protocol -------------------------------------------------------------

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        news = inputs_of(news)
        failures = self.validate(inputs_of(_olds or {}), news)
        return CheckResult(news, failures)

    def changed_keys(self, olds: dict[str, Any], news: dict[str, Any]) -> list[str]:
        keys = []
        for key, value in inputs_of(news).items():
            if key in self.computed:
                continue
            if key == API:
                old_api = olds.get(API) or {}
                if any(old_api.get(k) != value.get(k) for k in _API_KEYS):
                    keys.append(key)
            elif olds.get(key) != value:
                keys.append(key)
        return keys

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = self.changed_keys(olds, news)
        replaces = [k for k in changed if k in self.replace_on]
        return DiffResult(
            changes=bool(changed),
            replaces=replaces,
            stables=[k for k in inputs_of(news) if k not in self.replace_on and k != API],
            delete_before_replace=bool(replaces) and self.delete_before_replace(replaces),
        )

    def delete_before_replace(self, replaces: list[str]) -> bool:
        return True

    def create(self, props: dict[str, Any]) -> CreateResult:
        props = inputs_of(props)
        id_, extra = self._create(client_for(props), props)
        return CreateResult(id_, {**props, **extra})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        props = inputs_of(props)
        current = self._read(client_for(props), id_, props)
        if current is None:
            return ReadResult(None, {})  # gone: Pulumi drops it from the state
        return ReadResult(id_, {**props, **current})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        news = inputs_of(news)
        extra = self._update(client_for(news), id_, inputs_of(olds), news)
        kept = {k: olds[k] for k in self.computed if k in olds}
        return UpdateResult({**news, **kept, **extra})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        props = inputs_of(props)
        try:
            self._delete(client_for(props), id_, props)
        except ProxmoxError as exc:
            if not is_gone(exc):
                raise
