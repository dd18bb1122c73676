"""Continuous cross-cabinet replication: restic local repositories copied to the peer's
append-only rest-server, with status, monitoring checks and restore tests."""
