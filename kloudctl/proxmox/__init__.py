"""Reaching a cabinet's Proxmox VE API: pinned TLS, API tokens, task waiting, retries."""

from kloudctl.proxmox.client import ApiTarget, Client, ProxmoxError, RetryPolicy, TaskFailed

__all__ = ["ApiTarget", "Client", "ProxmoxError", "RetryPolicy", "TaskFailed"]
