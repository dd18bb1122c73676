"""`kloudctl sim`: a Proxmox VE 9.1 API simulator, driven by the official API schema.

Layers, each importing only those before it: `schema`, `perms`, `validate`, `auth`,
`state`, `tasks`, `faults`, `persist`, `certs` (no HTTP, no handlers); `errors` and
`cabinet` (one simulated cabinet: its state, locks, tasks and faults, without aiohttp);
`api` (what a handler receives and returns, and the `Routes` its module records);
`handlers` (the simulated methods by API area, and `build_registry`); `dispatch`
(pveproxy's pipeline: routing, auth, validation, permissions, the handler); `server`
(aiohttp, TLS, request parsing, answer rendering); `serve` (the simulator's process, its
typed entry point `python -m kloudctl.sim.serve`), `runner` (starting, watching and
stopping that process) and `testing` (serving in a test's own process). See docs/sim.md.
"""
