"""Failover of council VMs to a federation peer, from the replica, and their return.

    backup(home)              vzdump of each `failover: true` VM through the home's API ->
                              restic backup of the archive into the home's local repository
                              (tags `failover`, `vm:NAME`, `sha256:HEX`) -> restic copy to
                              each replication peer (the peer's append-only repository)
    failover(home, vm, peer)  the newest such snapshot in the home's copy on the peer ->
                              restic restore into the peer's backup storage (sha256 checked)
                              -> `POST /nodes/{node}/qemu` with `archive=` in the peer's
                              guest VMID range and pool -> start. The home's API is only
                              probed (bounded): a home that answers with the VM running is
                              a refusal (two copies of one service), a silent one is the point.
    failback(home, vm)        stop and vzdump the guest on the peer -> restic backup of that
                              archive into the home's copy on the peer -> restic restore into
                              the home's backup storage -> restore over the old guest (force)
                              -> start -> destroy the peer's guest and its archives.

The API calls are the controller's, through the one client. The archive files move where
the storage's folder is, by `replication.archives`: here for a simulated cabinet (its
folder is on this machine), on the host by its replication agent over SSH for a cabinet
that `replication deploy` set up (`archive-backup`, `archive-stage`).

`failover` imports the engines it drives (`federation` for membership, `replication` for
restic and the layout, `proxmox` for the API); none of them imports it.
"""
