"""Per-host CPU limits in cgroups named by run id (v1 `cpu` controller, or v2 `cpu.max`)."""
from __future__ import annotations

import os
from pathlib import Path

from weblab.core.errors import WeblabError

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


V1_MOUNTS = ("cpu", "cpu,cpuacct")  # where distributions mount the v1 cpu controller


def controller(root: Path | None = None) -> tuple[str, Path] | None:
    """("v1" | "v2", directory) of the cpu controller per-host limits use, or None. A cpuset-only or
    cpuacct-only mount is not it: only a cpu.cfs_quota_us (v1) or a listed "cpu" (v2) is."""
    root = root or ROOT
    for name in V1_MOUNTS:
        if (root / name / "cpu.cfs_quota_us").exists():
            return "v1", root / name
    listed = root / "cgroup.controllers"
    if listed.exists() and "cpu" in listed.read_text().split():
        return "v2", root
    return None


def available() -> bool:
    """True if CPU limits can be applied on this machine."""
    return controller() is not None


def create(run_id: str, host: str, fraction: float) -> Path:
    """A cgroup limiting host to fraction of the machine's cores; returns its directory."""
    if not 0 < fraction <= 1:
        raise WeblabError(f"cpu limit for {host} must be in (0, 1], got {fraction}")
    quota = max(1000, int(PERIOD_US * fraction * (os.cpu_count() or 1)))
    found = controller()
    if found and found[0] == "v1":
        group = found[1] / f"weblab-{run_id}" / host
        group.mkdir(parents=True, exist_ok=True)
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
        return group
    if found and found[0] == "v2":
        parent = ROOT / f"weblab-{run_id}"
        parent.mkdir(exist_ok=True)
        (parent / "cgroup.subtree_control").write_text("+cpu")
        group = parent / host
        group.mkdir(exist_ok=True)
        (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        return group
    raise WeblabError("CPU limits need the cgroup cpu controller (v1 or v2); see: sudo weblab doctor")


def remove(path: str | Path) -> None:
    """Remove a cgroup made by create (children first); empty groups only."""
    path = Path(path)
    if not path.exists():
        return
    for child in sorted((p for p in path.iterdir() if p.is_dir()), reverse=True):
        remove(child)
    try:
        path.rmdir()
    except OSError:
        pass
    parent = path.parent
    if parent.name.startswith("weblab-") and parent.exists() and not any(p.is_dir() for p in parent.iterdir()):
        try:
            parent.rmdir()
        except OSError:
            pass
