"""metadata.json: everything needed to reproduce a run (versions, revision, parameters, machine), hostname-free."""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# tool -> argv printing its version (some print to stderr, wrk exits non-zero: both are fine)
TOOLS: dict[str, list[str]] = {
    "ovs": ["ovs-vswitchd", "--version"],
    "nginx": ["nginx", "-v"],
    "haproxy": ["haproxy", "-v"],
    "mariadb": ["mariadbd", "--version"],
    "named": ["named", "-v"],
    "tcpdump": ["tcpdump", "--version"],
    "wrk": ["wrk", "-v"],
    "curl": ["curl", "--version"],
    "dig": ["dig", "-v"],
    "mininet": ["mn", "--version"],
}
PACKAGES = ("mininet", "os-ken", "scapy", "matplotlib", "numpy", "pymysql", "jinja2", "gunicorn", "pytest")
REQUIRED_KEYS = ("schema", "slug", "claim", "run_id", "started", "finished", "params", "seed", "machine",
                 "kernel", "os", "python", "packages", "tools", "git")


def now() -> str:
    """UTC timestamp, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def tool_version(argv: list[str], timeout: float = 5) -> str | None:
    """First non-empty line a tool prints about its version, or None when it is not installed."""
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (res.stdout + "\n" + res.stderr).splitlines():
        if line.strip():
            return line.strip()
    return None


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of the key Python distributions (None when absent)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state(repo: Path = REPO) -> dict[str, Any]:
    """Revision and dirtiness of the checkout (revision None before the first commit or outside git)."""
    def git(*args: str) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
    rev = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"revision": rev.stdout.strip() if rev and rev.returncode == 0 else None,
            "dirty": bool(status.stdout.strip()) if status and status.returncode == 0 else None}


def machine() -> dict[str, Any]:
    """Cores, memory, architecture: never the hostname."""
    mem_kib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_mib": mem_kib // 1024 if mem_kib else None,
            "arch": platform.machine(), "virtualization": _virt()}


def _virt() -> str | None:
    """systemd-detect-virt's answer where available (a VM changes timing)."""
    v = tool_version(["systemd-detect-virt"])
    return v


def os_release() -> str | None:
    """PRETTY_NAME of /etc/os-release."""
    try:
        m = re.search(r'^PRETTY_NAME="?([^"\n]*)', Path("/etc/os-release").read_text(), re.M)
        return m.group(1) if m else None
    except OSError:
        return None


def collect(slug: str, claim: str, run_id: str, params: dict[str, Any], started: str,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metadata of one run; 'finished' is filled by finish()."""
    return {
        "schema": 1, "slug": slug, "claim": claim, "run_id": run_id,
        "started": started, "finished": None,
        "params": params, "seed": params.get("seed"),
        "argv": sys.argv,
        "machine": machine(), "kernel": platform.release(), "os": os_release(),
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "packages": package_versions(),
        "tools": {name: tool_version(argv) for name, argv in TOOLS.items()},
        "git": git_state(),
        **(extra or {}),
    }


def write(path: Path, meta: dict[str, Any]) -> Path:
    """Write metadata.json."""
    path.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return path


def finish(path: Path, **fields: Any) -> dict[str, Any]:
    """Set finished (and any extra fields, e.g. labs) in an existing metadata.json."""
    meta = json.loads(path.read_text())
    meta.update(fields)
    meta["finished"] = now()
    write(path, meta)
    return meta
