"""The Pulumi resources (one per Proxmox object) behind the components.

Every resource takes the API target as its `api` input; the token secret in it is a
Pulumi secret, and `api` is declared a secret output too, so the state holds it only
encrypted. Output-only properties are declared as `None` inputs so Pulumi exposes them.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import Resource

from kloudctl.tenants import providers


def _opts(opts: pulumi.ResourceOptions | None, *secret: str) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions.merge(
        opts, pulumi.ResourceOptions(additional_secret_outputs=["api", *secret])
    )


class Pool(Resource):
    poolid: pulumi.Output[str]

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__(providers.PoolProvider(), name, props, _opts(opts))


class Group(Resource):
    groupid: pulumi.Output[str]

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__(providers.GroupProvider(), name, props, _opts(opts))


class User(Resource):
    userid: pulumi.Output[str]
    password: pulumi.Output[str]

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ):
        props = {**props, "password": None}
        super().__init__(providers.UserProvider(), name, props, _opts(opts, "password"))


class Token(Resource):
    full_tokenid: pulumi.Output[str]
    value: pulumi.Output[str]

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ):
        props = {**props, "value": None, "full_tokenid": None}
        super().__init__(providers.TokenProvider(), name, props, _opts(opts, "value"))


class Acl(Resource):
    path: pulumi.Output[str]

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__(providers.AclProvider(), name, props, _opts(opts))


class SecurityGroup(Resource):
    group: pulumi.Output[str]

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__(providers.SecurityGroupProvider(), name, props, _opts(opts))


class Vm(Resource):
    vmid: pulumi.Output[int]
    name: pulumi.Output[str]

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ):
        props = {**props, "vmid": None}
        super().__init__(providers.GuestProvider(), name, props, _opts(opts))


class Lxc(Resource):
    """An LXC container (`providers.ContainerProvider`)."""

    vmid: pulumi.Output[int]
    name: pulumi.Output[str]

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ):
        props = {**props, "vmid": None}
        super().__init__(providers.ContainerProvider(), name, props, _opts(opts))
