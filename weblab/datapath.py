"""Which switch datapath a lab uses, and why: kernel where the openvswitch module is free, else userspace.

One decision, read by the lab at start-up and explained by `weblab doctor`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from weblab.core.errors import WeblabError
from weblab.core.proc import Runner, run_quiet

SYS = Path("/sys")
SYSTEM_OVS_PIDFILES = (Path("/run/openvswitch/ovs-vswitchd.pid"), Path("/var/run/openvswitch/ovs-vswitchd.pid"))


@dataclass(frozen=True)
class DatapathFacts:
    """What decides between the kernel and the userspace datapath."""

    module_loaded: bool
    module_loadable: bool
    ovs_system_exists: bool
    system_vswitchd_pid: int | None = None


def probe_datapath(sys_root: Path | None = None, run: Runner | None = None,
                   pidfiles: tuple[Path, ...] | None = None) -> DatapathFacts:
    """Read the facts from sysfs, modprobe -n and the system Open vSwitch's pid file."""
    sys_root, run = sys_root or SYS, run or run_quiet
    pidfiles = SYSTEM_OVS_PIDFILES if pidfiles is None else pidfiles
    loaded = (sys_root / "module" / "openvswitch").exists()
    loadable = loaded or run(["modprobe", "-n", "-q", "openvswitch"])[0] == 0
    return DatapathFacts(loaded, loadable, (sys_root / "class" / "net" / "ovs-system").exists(),
                         _system_vswitchd(pidfiles))


def _system_vswitchd(pidfiles: tuple[Path, ...]) -> int | None:
    """The pid of a running system ovs-vswitchd, from its pid file, or None."""
    for pidfile in pidfiles:
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{pid}").exists():
            return pid
    return None


def decide_datapath(facts: DatapathFacts) -> tuple[str, str]:
    """('kernel' | 'user', why) for these facts."""
    if not facts.module_loadable:
        return "user", ("no openvswitch kernel module on this kernel (not loaded, modprobe cannot "
                        "load it): userspace datapath, more CPU per packet than the kernel one")
    if facts.ovs_system_exists:
        owner = (f"the system ovs-vswitchd (pid {facts.system_vswitchd_pid})" if facts.system_vswitchd_pid
                 else "another Open vSwitch (no system ovs-vswitchd runs: a leftover?)")
        return "user", (f"the kernel datapath ovs-system already exists, used by {owner}; a private "
                        "instance stays out of its way on the userspace datapath")
    if facts.module_loaded:
        return "kernel", "openvswitch kernel module loaded and the kernel datapath ovs-system is free"
    return "kernel", ("openvswitch kernel module loadable (loaded on first use) and the kernel "
                      "datapath ovs-system is free")


def ports_of(datapath: str) -> str:
    """What a host interface is on this datapath (weblab.netdev)."""
    return ("host ports are OVS tap ports with userspace TSO" if datapath == "user"
            else "host ports are veth pairs")


def summary(datapath: str, why: str) -> str:
    """One line for status and doctor: which datapath, its ports, and why it was chosen."""
    return f"{datapath} ({ports_of(datapath)}): {why}"


def datapath_choice() -> tuple[str, str]:
    """The datapath a lab will use on this machine and why: ('user' | 'kernel', reason)."""
    return decide_datapath(probe_datapath())


def choose_datapath(requested: str = "auto") -> tuple[str, str]:
    """Which datapath a private instance uses, and why (doctor prints the same)."""
    if requested in ("user", "kernel"):
        return requested, "asked for explicitly"
    if requested != "auto":
        raise WeblabError(f"unknown datapath {requested!r}: use auto, user or kernel")
    return datapath_choice()
