"""Remove exactly what one run created, as its state file records it; never anything by name pattern."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from weblab.core import cgroups, paths
from weblab.core.errors import WeblabError
from weblab.core.state import RunState, all_runs


def crashed_runs() -> list[str]:
    """Runs whose directory remains but whose holder is gone."""
    out = []
    for run_id in all_runs():
        try:
            st = RunState.load(run_id)
        except (FileNotFoundError, ValueError):
            out.append(run_id)
            continue
        if not st.holder_alive():
            out.append(run_id)
    return out


def sweep(state: RunState) -> list[str]:
    """Stop recorded processes, delete recorded root-namespace links and cgroups; returns leftovers."""
    leftovers = []
    for ref in reversed(state.processes):
        if ref.name == "holder":
            continue
        ref.stop(timeout=3)
        if ref.alive():
            leftovers.append(f"process {ref.name} ({ref.pid})")
    for link in state.links:
        # A tap port (its switch end recorded without an interface) went with ovs-vswitchd above, or
        # with its host's namespace; one still in the root namespace (a crash before it moved) goes here.
        for intf in (link.intf1, link.intf2):
            if intf and Path("/sys/class/net", intf).exists():
                subprocess.run(["ip", "link", "del", intf], capture_output=True, timeout=10)
                if Path("/sys/class/net", intf).exists():
                    leftovers.append(f"link {intf}")
    for sw in state.switches:
        # The userspace datapath's bridge port is a tap that dies with ovs-vswitchd; check anyway.
        if Path("/sys/class/net", sw).exists() and state.datapath == "user":
            subprocess.run(["ip", "link", "del", sw], capture_output=True, timeout=10)
    for cg in state.cgroups:
        cgroups.remove(cg)
        if cg.exists():
            leftovers.append(f"cgroup {cg}")
    return leftovers


def clean_run(run_id: str) -> tuple[list[str], Path | None]:
    """Clean one run that has no live holder; returns (leftovers, where its logs were kept)."""
    run_dir = paths.run_dir(run_id)
    if not run_dir.exists():
        raise WeblabError(f"no lab {run_id} under {paths.RUN_ROOT}")
    try:
        state = RunState.load(run_id)
    except (FileNotFoundError, ValueError):
        state = RunState(run_id, {"run_id": run_id})
    if state.holder_alive():
        raise WeblabError(f"lab {run_id} is still running (pid {state.holder.pid}); "
                          f"stop it with: sudo weblab down")
    leftovers = sweep(state)
    kept = keep_logs(run_dir, run_id)
    shutil.rmtree(run_dir, ignore_errors=True)
    return leftovers, kept


def keep_logs(run_dir: Path, run_id: str) -> Path | None:
    """Copy a failed run's logs and configs (not data) to the kept-logs directory."""
    if not run_dir.exists():
        return None
    dest = paths.KEPT_LOGS / run_id
    for src in run_dir.rglob("*"):
        if src.is_file() and src.suffix in (".log", ".out", ".err", ".conf", ".cnf", ".json", ".txt") \
                and "/data/" not in str(src):
            target = dest / src.relative_to(run_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copy2(src, target)
            except OSError:
                pass
    return dest


def clean(run_id: str | None = None, force: bool = False) -> list[tuple[str, list[str], Path | None]]:
    """Clean one run, or every crashed run; with force also runs whose holder is alive but stuck (it is
    stopped first). Returns (run id, what could not be removed, where its logs were kept) per run."""
    targets = [run_id] if run_id else crashed_runs()
    if force and not targets:
        targets = all_runs()
    done = []
    for target in targets:
        if force:
            try:
                holder = RunState.load(target).holder
            except (FileNotFoundError, ValueError):
                holder = None
            if holder:
                holder.stop(timeout=10)
        leftovers, kept = clean_run(target)
        done.append((target, leftovers, kept))
        # a supervisor that failed before its run directory existed leaves only its log
        (paths.RUN_ROOT / f"{target}.supervisor.log").unlink(missing_ok=True)
    return done
