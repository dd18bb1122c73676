"""Auth as pveproxy does it: tickets + CSRF, API tokens, privilege separation, 401s."""

from __future__ import annotations

import hashlib
import socket
import ssl

import pytest
import requests
import urllib3
from simhelpers import error_of, root_api, token_api, user_api

urllib3.disable_warnings()


def test_fingerprint_matches_served_certificate(pve_sim):
    ep = pve_sim["brieux"]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((ep.host, ep.port)) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    served = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert served == ep.fingerprint
    assert len(ep.fingerprint.split(":")) == 32
    # the other simulated node names the same certificate
    assert {n["ssl_fingerprint"] for n in root_api(ep).nodes.get()} == {ep.fingerprint}


def test_ticket_cookie_and_csrf(pve_sim):
    ep = pve_sim["brieux"]
    base = f"{ep.url}/api2/json"
    r = requests.post(
        f"{base}/access/ticket",
        data={"username": "root@pam", "password": ep.root_password},
        verify=False,
    )
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["ticket"].startswith("PVE:root@pam:")
    assert data["username"] == "root@pam"
    cookies = {"PVEAuthCookie": data["ticket"]}
    assert requests.get(f"{base}/version", cookies=cookies, verify=False).status_code == 200
    # writes need the CSRF prevention token
    r = requests.post(f"{base}/pools", data={"poolid": "csrf"}, cookies=cookies, verify=False)
    assert r.status_code == 401
    assert "csrf" in r.reason.lower()
    r = requests.post(
        f"{base}/pools",
        data={"poolid": "csrf"},
        cookies=cookies,
        headers={"CSRFPreventionToken": data["CSRFPreventionToken"]},
        verify=False,
    )
    assert r.status_code == 200, r.text
    # a forged ticket is refused
    forged = data["ticket"].rsplit("::", 1)[0] + "::AAAA"
    assert (
        requests.get(f"{base}/version", cookies={"PVEAuthCookie": forged}, verify=False).status_code
        == 401
    )
    assert requests.get(f"{base}/version", verify=False).status_code == 401


def test_bad_credentials_answer_401(pve_sim):
    ep = pve_sim["brieux"]
    r = requests.post(
        f"{ep.url}/api2/json/access/ticket",
        data={"username": "root@pam", "password": "wrong"},
        verify=False,
    )
    assert r.status_code == 401
    assert r.reason == "authentication failure"
    bad = {"Authorization": "PVEAPIToken=root@pam!nope=00000000-0000-0000-0000-000000000000"}
    assert requests.get(f"{ep.url}/api2/json/version", headers=bad, verify=False).status_code == 401


def test_tokens_secret_shown_once_and_privilege_separation(pve_sim):
    ep = pve_sim["brieux"]
    root = root_api(ep)
    root.access.users.post(userid="alice@pve", password="alice-pass-1")
    root.access.acl.put(path="/vms", roles="PVEVMAdmin", users="alice@pve")
    full = root.access.users("alice@pve").token("full").post(privsep=0)
    sep = root.access.users("alice@pve").token("sep").post()
    assert full["full-tokenid"] == "alice@pve!full"
    assert "value" not in root.access.users("alice@pve").token("full").get()
    assert sep["info"]["privsep"] == 1

    full_api = token_api(ep, "alice@pve", "full", full["value"])
    sep_api = token_api(ep, "alice@pve", "sep", sep["value"])
    # full-privilege token: the user's rights
    assert full_api.nodes("pve1").qemu(9000).config.get()["name"] == "debian-12-cloud"
    # separated token with no ACL of its own: nothing
    exc = error_of(sep_api.nodes("pve1").qemu(9000).config.get)
    assert exc.status_code == 403
    assert "Permission check failed (/vms/9000, VM.Audit)" in str(exc)
    # token ACL wider than the user's: the intersection only
    root.access.acl.put(path="/", roles="Administrator", tokens="alice@pve!sep")
    assert sep_api.nodes("pve1").qemu(9000).config.get()["name"] == "debian-12-cloud"
    exc = error_of(sep_api.access.users.post, userid="mallory@pve")
    assert exc.status_code == 403
    perms = root.access.permissions.get(userid="alice@pve!sep", path="/vms/9000")
    assert "VM.Audit" in perms["/vms/9000"] and "Sys.Modify" not in perms["/vms/9000"]
    # a deleted token stops working
    root.access.users("alice@pve").token("full").delete()
    assert error_of(full_api.version.get).status_code == 401


def test_user_ticket_login_and_token_forbidden_calls(pve_sim):
    ep = pve_sim["brieux"]
    root = root_api(ep)
    root.access.users.post(userid="bob@pve", password="bob-pass-123")
    bob = user_api(ep, "bob@pve", "bob-pass-123")
    assert bob.version.get()["release"] == "9.1"
    with pytest.raises(Exception, match="401"):
        user_api(ep, "bob@pve", "not-his")
