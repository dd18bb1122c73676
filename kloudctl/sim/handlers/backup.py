"""Backup jobs (`/cluster/backup`: PVE's jobs.cfg `vzdump` sections), the volumes a job
would include, and the guests no job covers (`/cluster/backup-info/not-backed-up`).
Running a backup is `nodes/vzdump.py`."""

from __future__ import annotations

import uuid
from typing import Any

from kloudctl.sim.api import Call, Routes
from kloudctl.sim.handlers import common as c
from kloudctl.sim.handlers import sections

routes = Routes()


def _new_job_id() -> str:
    # PVE names unnamed jobs `backup-` and the start of a UUID
    return "backup-" + str(uuid.uuid4())[:13]


JOBS = sections.SectionStore(
    store="backup-jobs",
    key="id",
    what="job",
    kind="vzdump",
    defaults={"enabled": 1},
    new_id=_new_job_id,
)
sections.register(routes, "/cluster/backup", "/cluster/backup/{id}", JOBS)


def covered(call: Call, job: dict[str, Any], g: dict[str, Any]) -> bool:
    """Whether a job includes a guest: all (but the excluded), its VMID list, its pool."""
    if job.get("node") and job["node"] != g["node"]:
        return False
    if job.get("all"):
        return str(g["vmid"]) not in c.split_ids(job.get("exclude"))
    if job.get("pool"):
        pool = call.state["access"]["pools"].get(job["pool"], {})
        return g["vmid"] in pool.get("vms", [])
    return str(g["vmid"]) in c.split_ids(job.get("vmid"))


@routes("GET", "/cluster/backup/{id}/included_volumes")
def included_volumes(call: Call) -> dict[str, Any]:
    job = JOBS.get(call)
    children = []
    for g in sorted(call.state["guests"].values(), key=lambda g: g["vmid"]):
        if not covered(call, job, g):
            continue
        volumes = []
        for key, value in sorted(g["config"].items()):
            if not c.DISK_KEYS.match(key) or key.startswith("unused"):
                continue
            vol, opts = c.disk_volume(str(value))
            if opts.get("media") == "cdrom":
                continue
            included = opts.get("backup", "1") != "0"
            reason = "default" if key == "rootfs" or included else "disabled"
            if key.startswith("mp") and "backup" not in opts:
                included, reason = False, "disabled"  # mount points are not backed up unless asked
            volumes.append({"id": key, "name": vol, "included": included, "reason": reason})
        children.append(
            {
                "id": g["vmid"],
                "name": c.guest_name(g),
                "type": c.guest_type(g),
                "children": volumes,
            }
        )
    return {"children": children}


@routes("GET", "/cluster/backup-info/not-backed-up")
def not_backed_up(call: Call) -> list[dict[str, Any]]:
    jobs = [j for j in JOBS.objects(call).values() if j.get("enabled", 1)]
    out = []
    for g in sorted(call.state["guests"].values(), key=lambda g: g["vmid"]):
        if g["config"].get("template") or any(covered(call, j, g) for j in jobs):
            continue
        out.append({"vmid": g["vmid"], "name": c.guest_name(g), "type": c.guest_type(g)})
    return out
