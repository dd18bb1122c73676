"""The simulator's tests connect with verify_ssl=False (proxmoxer); the served certificate is
checked against the reported fingerprint in test_sim_auth.py, so urllib3's warning is noise."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/sim/" in str(item.path):
            item.add_marker(
                pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
            )
