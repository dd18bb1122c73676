"""`pulumi up` in this folder: the tenants of the cabinet named by the stack.

Set once per stack: `pulumi config set --secret kloudctl:tokenSecret` (the cabinet's
automation token); optionally kloudctl:endpoint / fingerprint / tokenId to override the
cabinet file (e.g. a simulator), and kloudctl:fleet.
"""

from pathlib import Path

from kloudctl.tenants.program import run

run(default_fleet=Path(__file__).resolve().parent.parent)
