"""The federation of neighbouring communes: a signed, hash-chained registry of members,
single-use invites confirmed by a short fingerprint, and the join endpoint (HTTPS, pinned).

Each commune keeps its own Proxmox cluster; the federation runs above the clusters.
"""

#: The registry's file in a member's state folder.
REGISTRY_FILE = "registry.json"
