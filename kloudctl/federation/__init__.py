"""The federation of neighbouring communes: a signed, hash-chained registry of members,
single-use invites confirmed by a short fingerprint, and the join endpoint (HTTPS, pinned).

Each commune keeps its own Proxmox cluster; the federation runs above the clusters.
"""

#: The registry's file in a member's state folder.
REGISTRY_FILE = "registry.json"
#: The last second a date can show (9999-12-31T23:59:59Z): a time read from a file or a
#: request beyond it (or before 1970) is damaged, never handed to the date functions.
LAST_SECOND = 253402300799
