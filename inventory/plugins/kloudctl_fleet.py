"""Ansible inventory plugin: the fleet's hosts and groups, computed from cabinets/*.yaml.

The logic lives in kloudctl (``kloudctl.ansible_inventory``), so Ansible and kloudctl read
the model the same way, and a broken cabinet file fails here with the same located error
(``cabinets/x.yaml:12:5 field: message``) before any host is touched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin

DOCUMENTATION = r"""
name: kloudctl_fleet
short_description: The kloudctl fleet (cabinets/*.yaml) as an inventory
description:
  - One host per cabinet, groups per commune and per role, host variables from the model.
options:
  plugin:
    description: The name of this plugin.
    required: true
    choices: ["kloudctl_fleet"]
  fleet:
    description: The fleet folder (holding cabinets/ and backups/), relative to this file.
    type: str
    default: ..
    env:
      - name: KLOUDCTL_FLEET
  testbed_state:
    description: A running testbed's state file; its hosts are reached in their containers.
    type: str
    default: ""
    env:
      - name: KLOUDCTL_TESTBED_STATE
"""


class InventoryModule(BaseInventoryPlugin):
    NAME = "kloudctl_fleet"

    def verify_file(self, path: str) -> bool:
        return super().verify_file(path) and path.endswith(
            ("kloudctl_fleet.yml", "kloudctl_fleet.yaml")
        )

    def parse(self, inventory, loader, path, cache=True):  # type: ignore[no-untyped-def]
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        try:
            from kloudctl.ansible_inventory import Template, load
            from kloudctl.errors import KloudError
        except ImportError as exc:  # Ansible outside kloudctl's virtualenv
            raise AnsibleParserError(
                f"kloudctl_fleet needs the kloudctl package in Ansible's Python: {exc}"
            ) from exc
        fleet = Path(os.path.dirname(path), self.get_option("fleet")).resolve()
        env_fleet = os.environ.get("KLOUDCTL_FLEET")
        if env_fleet:
            fleet = Path(env_fleet).resolve()
        testbed = None
        state = self.get_option("testbed_state")
        if state:
            try:
                testbed = json.loads(Path(state).read_text())
            except (OSError, ValueError) as exc:
                raise AnsibleParserError(f"testbed state {state}: {exc}") from exc
        try:
            data = load(fleet, testbed)
        except KloudError as exc:
            raise AnsibleParserError(f"kloudctl fleet {fleet}:\n{exc}") from exc
        for group, members in data["groups"].items():
            self.inventory.add_group(group)
            for host in members["hosts"]:
                self.inventory.add_host(host, group=group)
        for host, hostvars in data["hostvars"].items():
            for key, value in hostvars.items():
                self.inventory.set_variable(host, key, _trusting(value, Template))


def _trusting(value, template_type):  # type: ignore[no-untyped-def]
    """Mark kloudctl's deliberate templates as trusted (Ansible 2.19 templates nothing an
    inventory plugin sets otherwise); every other value stays inert data."""
    from ansible.template import trust_as_template

    if isinstance(value, template_type):
        return trust_as_template(str(value))
    if isinstance(value, dict):
        return {k: _trusting(v, template_type) for k, v in value.items()}
    if isinstance(value, list):
        return [_trusting(v, template_type) for v in value]
    return value
