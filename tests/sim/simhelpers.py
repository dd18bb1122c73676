"""Helpers for the simulator's tests: proxmoxer clients and task waiting."""

from __future__ import annotations

import time
from typing import Any

import urllib3
from proxmoxer import ProxmoxAPI, ResourceException

from kloudctl.sim.server import Endpoint

# The tests connect with verify_ssl=False; the fingerprint is checked against the served
# certificate in test_sim_auth.py, so the warning says nothing useful here.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


def root_api(ep: Endpoint) -> ProxmoxAPI:
    # verify_ssl=False: the served certificate is checked against ep.fingerprint in
    # test_sim_auth.py::test_fingerprint_matches_served_certificate.
    return ProxmoxAPI(
        ep.host, port=ep.port, user="root@pam", password=ep.root_password, verify_ssl=False
    )


def token_api(ep: Endpoint, user: str, token: str, secret: str) -> ProxmoxAPI:
    return ProxmoxAPI(
        ep.host, port=ep.port, user=user, token_name=token, token_value=secret, verify_ssl=False
    )


def user_api(ep: Endpoint, user: str, password: str) -> ProxmoxAPI:
    return ProxmoxAPI(ep.host, port=ep.port, user=user, password=password, verify_ssl=False)


def wait(api: ProxmoxAPI, upid: str, timeout: float = 10) -> dict[str, Any]:
    """Poll a task like a client does (retrying a 400 right after creation)."""
    node = upid.split(":")[1]
    deadline = time.monotonic() + timeout
    while True:
        try:
            status: dict[str, Any] = api.nodes(node).tasks(upid).status.get()
        except ResourceException as exc:
            if exc.status_code != 400 or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
            continue
        if status["status"] == "stopped":
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(upid)
        time.sleep(0.02)


def ok(api: ProxmoxAPI, upid: str) -> dict[str, Any]:
    status = wait(api, upid)
    assert status["exitstatus"] == "OK", status
    return status


def error_of(fn: Any, *args: Any, **kwargs: Any) -> ResourceException:
    try:
        fn(*args, **kwargs)
    except ResourceException as exc:
        return exc
    raise AssertionError("expected an error answer")
