"""`weblab doctor`: can this machine run labs? One line per check, and how to fix what fails."""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from weblab.core import cgroups, versions
from weblab.core.paths import RUN_ROOT
from weblab.core.proc import Runner, run_quiet
from weblab.datapath import DatapathFacts, decide_datapath, probe_datapath
from weblab.datapath import summary as datapath_summary

INSTALL = "sudo make install"
PYTHON_MIN = (3, 11)
MODULES = ("mininet", "os_ken", "scapy", "matplotlib", "pymysql", "jinja2")
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
SYS = Path("/sys")
CGROUP = Path("/sys/fs/cgroup")



@dataclass(frozen=True)
class Check:
    """The outcome of one check: a failed optional check is a warning, not a failure."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def status(self) -> str:
        """'ok', 'FAIL' or 'warn'."""
        return "ok" if self.ok else ("FAIL" if self.required else "warn")

    def line(self) -> str:
        """The one line the CLI prints for this check."""
        text = f"[{self.status:^4}] {self.name}: {self.detail}"
        return text if self.ok or not self.fix else f"{text} -> {self.fix}"


# -- the process and Python ----------------------------------------------------------------------

def check_root(euid: int | None = None) -> Check:
    """Labs create namespaces, links and switches: they need root."""
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return Check("root", True, "running as root")
    return Check("root", False, f"running as uid {euid}", "run with sudo: sudo weblab doctor")


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> Check:
    """The interpreter is recent enough."""
    shown = ".".join(map(str, version))
    ok = tuple(version[:2]) >= PYTHON_MIN
    return Check("python", ok, f"Python {shown} ({sys.executable})",
                 f"weblab needs Python >= {'.'.join(map(str, PYTHON_MIN))}: {INSTALL}")


def check_distribution(fields: dict[str, str] | None = None) -> Check:
    """Name the distribution; one this project was not tried on is a warning, not a failure."""
    fields = versions.distribution() if fields is None else fields
    name = fields.get("PRETTY_NAME") or " ".join(filter(None, (fields.get("ID"), fields.get("VERSION_ID"))))
    key = (fields.get("ID", ""), fields.get("VERSION_ID", ""))
    if key in versions.TRIED_DISTRIBUTIONS:
        return Check("distribution", True, f"{name} (tried)")
    if key == ("ubuntu", "24.04"):
        why = "not tried, expected to work (the same package generation as Debian 12 and 13)"
    else:
        why = f"not tried (weblab was tried on {versions.TRIED_ON})"
    return Check("distribution", False, f"{name or 'unknown (no /etc/os-release)'}: {why}",
                 "the README lists what was tried; versions below show what differs", required=False)


def check_import(module: str) -> Check:
    """module imports in this interpreter (the one labs run with)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mod = importlib.import_module(module)
    except Exception as e:  # any import-time failure means the lab cannot use it
        return Check(f"import {module}", False, f"{type(e).__name__}: {e}", INSTALL)
    return Check(f"import {module}", True, _version_of(module, mod) or "importable")


def _version_of(module: str, mod: object) -> str:
    """The installed distribution's version of an imported module, or ''."""
    for dist in importlib.metadata.packages_distributions().get(module, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    version = getattr(mod, "__version__", None)
    return version if isinstance(version, str) else ""


# -- programs ---------------------------------------------------------------------------------------

def check_binary(name: str, package: str, path: str | None = None,
                 sbin_dirs: tuple[str, ...] = SBIN_DIRS) -> Check:
    """name is on PATH (or path); if it is only in an sbin directory, say that PATH is the problem."""
    found = shutil.which(name, path=path)
    if found:
        return Check(f"program {name}", True, found)
    for d in sbin_dirs:
        elsewhere = shutil.which(name, path=d)
        if elsewhere:
            return Check(f"program {name}", False, f"not on PATH (found {elsewhere})",
                         f"add {d} to PATH, or run with sudo")
    return Check(f"program {name}", False, "not found on PATH", f"{INSTALL} (Debian package: {package})")


def check_version(program: str, version: versions.Version | None) -> Check:
    """Show a daemon's version; older than the oldest tried, or unreadable, is a warning."""
    name = f"version {program}"
    oldest, newest = versions.TRIED[program]
    if version is None:
        probe = " ".join(versions.PROBES[program].argv)
        return Check(name, False, f"unknown (`{probe}` did not say)",
                     "weblab assumes the newest behaviour it knows", required=False)
    shown = versions.show(version)
    if version < versions.parse(oldest):
        return Check(name, False, f"{shown}, older than {oldest}, the oldest tried ({versions.TRIED_ON})",
                     "expect differences in its configuration or output; upgrade it if a lab fails",
                     required=False)
    if version in (versions.parse(oldest), versions.parse(newest)):
        note = "tried"
    elif version < versions.parse(newest):
        note = f"between the releases tried, {oldest} and {newest}"
    else:
        note = f"newer than {newest}, the newest tried"
    return Check(name, True, f"{shown} ({note})")


def check_datapath(facts: DatapathFacts | None = None) -> Check:
    """Report the datapath choice; the userspace datapath works, so it is a warning."""
    facts = probe_datapath() if facts is None else facts
    choice, why = decide_datapath(facts)
    if choice == "kernel":
        return Check("switch datapath", True, f"datapath={datapath_summary(choice, why)}")
    if not facts.module_loadable:
        fix = "for the kernel datapath: sudo modprobe openvswitch (needs this kernel's modules installed)"
    elif facts.system_vswitchd_pid:
        fix = "for the kernel datapath: stop the system Open vSwitch (sudo systemctl stop openvswitch-switch)"
    else:
        fix = "for the kernel datapath: remove the leftover with: sudo ovs-dpctl del-dp ovs-system"
    return Check("switch datapath", False, f"datapath={datapath_summary(choice, why)}", fix, required=False)


# -- traffic control --------------------------------------------------------------------------------

QDISC_TESTS = {  # check name -> (tc arguments, what is lost without it, module)
    "netem": (["netem", "delay", "0ms"], "link delay, jitter and loss cannot be emulated", "sch_netem"),
    "htb": (["handle", "1:", "htb", "default", "1"], "link bandwidth cannot be limited", "sch_htb"),
}


def check_qdiscs(root: bool | None = None, run: Runner | None = None,
                 sys_root: Path | None = None) -> list[Check]:
    """Try each qdisc in a throwaway namespace (as root), else ask modprobe; absent ones are warnings."""
    root = os.geteuid() == 0 if root is None else root
    run, sys_root = run or run_quiet, sys_root or SYS
    if not root:
        return [_qdisc_by_module(name, run, sys_root, "not tried: needs root") for name in QDISC_TESTS] + [
            _ifb_by_module(run, sys_root, "not tried: needs root")]
    ns = f"weblab-doctor-{os.getpid()}"
    rc, out = run(["ip", "netns", "add", ns])
    if rc != 0:
        return [_qdisc_by_module(name, run, sys_root, f"no test namespace ({out})") for name in QDISC_TESTS] + [
            _ifb_by_module(run, sys_root, f"no test namespace ({out})")]
    try:
        return [_qdisc_in_netns(ns, name, run) for name in QDISC_TESTS] + [_ifb_in_netns(ns, run)]
    finally:
        run(["ip", "netns", "delete", ns])


def _ifb_in_netns(ns: str, run: Runner) -> Check:
    """An ifb device (the switch -> host half of link shaping) inside namespace ns."""
    rc, out = run(["ip", "-n", ns, "link", "add", "weblab-ifb", "type", "ifb"])
    if rc == 0:
        return Check("device ifb", True, "works (tried in a throwaway network namespace)")
    return Check("device ifb", False, f"unavailable, link bandwidth can be limited host -> switch only "
                 f"(ip: {out or f'exit {rc}'})", "sudo modprobe ifb (needs this kernel's modules installed)",
                 required=False)


def _ifb_by_module(run: Runner, sys_root: Path, why: str) -> Check:
    """Fallback: is the ifb module loaded or loadable?"""
    if (sys_root / "module" / "ifb").exists() or run(["modprobe", "-n", "-q", "ifb"])[0] == 0:
        return Check("device ifb", True, f"module ifb available ({why})")
    return Check("device ifb", False, f"module ifb not available ({why}): link bandwidth can be limited "
                 "host -> switch only", "sudo modprobe ifb (needs this kernel's modules installed)",
                 required=False)


def shaping_support(run: Runner | None = None, root: bool | None = None) -> dict[str, tuple[bool, str]]:
    """{"htb" | "netem" | "ifb": (works, detail)} as check_qdiscs finds them, for weblab.shaping."""
    return {c.name.split()[-1]: (c.ok, c.detail) for c in check_qdiscs(root=root, run=run)}


def _qdisc_in_netns(ns: str, name: str, run: Runner) -> Check:
    """Add qdisc name on lo inside namespace ns."""
    args, loss, module = QDISC_TESTS[name]
    rc, out = run(["ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", "lo", "root", *args])
    if rc == 0:
        return Check(f"qdisc {name}", True, "works (tried in a throwaway network namespace)")
    return Check(f"qdisc {name}", False, f"unavailable, {loss} (tc: {out or f'exit {rc}'})",
                 f"sudo modprobe {module} (needs this kernel's modules installed)", required=False)


def _qdisc_by_module(name: str, run: Runner, sys_root: Path, why: str) -> Check:
    """Fallback: is the qdisc's module loaded or loadable?"""
    _, loss, module = QDISC_TESTS[name]
    if (sys_root / "module" / module).exists() or run(["modprobe", "-n", "-q", module])[0] == 0:
        return Check(f"qdisc {name}", True, f"module {module} available ({why})")
    return Check(f"qdisc {name}", False, f"module {module} not available ({why}): {loss}",
                 f"sudo modprobe {module} (needs this kernel's modules installed)", required=False)


# -- cgroups and the run directory ---------------------------------------------------------------------

def check_cgroup_cpu(cgroup_root: Path | None = None) -> Check:
    """CPU limits per host need the cpu controller: the same test the runtime applies (weblab.core.cgroups)."""
    cgroup_root = cgroup_root or CGROUP
    found = cgroups.controller(cgroup_root)
    if found and found[0] == "v1":
        return Check("cgroup cpu", True, f"cgroup v1 cpu controller at {found[1]}")
    if found:
        return Check("cgroup cpu", True, f"cgroup v2 with the cpu controller at {found[1]}")
    return Check("cgroup cpu", False, "no cpu cgroup controller: per-host CPU limits are impossible",
                 f"cgroup v1: sudo mkdir -p {cgroup_root}/cpu && sudo mount -t cgroup -o cpu cgroup "
                 f"{cgroup_root}/cpu; cgroup v2: boot with the cpu controller enabled")


def check_run_dir(path: Path | None = None) -> Check:
    """Runs keep their state under path: it must be writable (or creatable)."""
    path = path or RUN_ROOT
    name = f"run directory {path}"
    fix = "run with sudo, or point WEBLAB_RUN_ROOT at a writable directory"
    if path.exists():
        if not path.is_dir():
            return Check(name, False, "exists but is not a directory", f"remove it: sudo rm {path}")
        try:
            fd, probe = tempfile.mkstemp(prefix=".doctor-", dir=path)
        except OSError as e:
            return Check(name, False, f"not writable ({e.strerror})", fix)
        os.close(fd)
        os.unlink(probe)
        return Check(name, True, "writable")
    parent = next(p for p in path.parents if p.exists())
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return Check(name, True, f"absent; will be created ({parent} is writable)")
    return Check(name, False, f"absent and {parent} is not writable", fix)


# -- all together -------------------------------------------------------------------------------------

def checks(design: str | None = None) -> list[Check]:
    """Every check, in the order they are printed: for every design, or exactly what one design needs."""
    from weblab import programs
    if design is None:
        needed = programs.for_every_design()
    else:
        from topologies import get
        needed = programs.for_design(get(design))
    out = [check_root(), check_python(), check_distribution()]
    out += [check_import(m) for m in MODULES]
    out += [check_binary(name, pkg) for name, pkg in sorted(needed.items())]
    out += [check_version(p, versions.of(p)) for p in sorted(needed)
            if p in versions.PROBES and shutil.which(p)]
    out += [check_datapath(), *check_qdiscs(), check_cgroup_cpu(), check_run_dir()]
    return out


def summary(results: list[Check]) -> str:
    """The closing line: how many failed and warned."""
    failed = sum(c.status == "FAIL" for c in results)
    warned = sum(c.status == "warn" for c in results)
    verdict = "ready" if not failed else "not ready"
    return f"{verdict}: {len(results)} checks, {failed} failed, {warned} warnings"


def main(argv: list[str] | None = None) -> int:
    """Print one line per check; 1 if any required check failed."""
    parser = argparse.ArgumentParser(prog="weblab doctor", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="print only failures and warnings")
    parser.add_argument("--design", help="check exactly what this design needs (default: every design and "
                                         "the experiments' tools)")
    args = parser.parse_args(argv)
    if args.design:
        from topologies import get
        try:
            get(args.design)
        except ValueError as e:
            print(f"weblab doctor: {e}", file=sys.stderr)
            return 2
    results = checks(args.design)
    for check in results:
        if not (args.quiet and check.ok):
            print(check.line())
    print(summary(results))
    return 1 if any(c.status == "FAIL" for c in results) else 0
