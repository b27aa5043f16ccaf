"""Unit tests of `weblab doctor`: line format, exit code, and the probes over fake filesystems."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from weblab import datapath, doctor
from weblab.datapath import DatapathFacts, decide_datapath
from weblab.doctor import Check


class FakeRunner:
    """Records commands and answers (rc, output) by the first rule whose words all appear."""

    def __init__(self, rules: dict[str, tuple[int, str]] | None = None) -> None:
        self.rules = rules or {}
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str]:
        self.calls.append(argv)
        line = " ".join(argv)
        for words, answer in self.rules.items():
            if all(w in line for w in words.split()):
                return answer
        return 0, ""


# -- format and exit code -----------------------------------------------------------------------

def test_line_formats():
    assert Check("root", True, "running as root", "unused").line() == "[ ok ] root: running as root"
    assert Check("root", False, "uid 1000", "run with sudo").line() == "[FAIL] root: uid 1000 -> run with sudo"
    assert Check("qdisc netem", False, "absent", "modprobe", required=False).line() == \
        "[warn] qdisc netem: absent -> modprobe"
    assert Check("x", False, "broken").line() == "[FAIL] x: broken"


def _main_with(monkeypatch, capsys, results: list[Check], argv: list[str] | None = None) -> tuple[int, list[str]]:
    monkeypatch.setattr(doctor, "checks", lambda design=None: results)
    rc = doctor.main(argv or [])
    return rc, capsys.readouterr().out.splitlines()


def test_main_all_ok_exits_0(monkeypatch, capsys):
    rc, lines = _main_with(monkeypatch, capsys, [Check("a", True, "fine"), Check("b", True, "fine")])
    assert rc == 0
    assert lines == ["[ ok ] a: fine", "[ ok ] b: fine", "ready: 2 checks, 0 failed, 0 warnings"]


def test_main_warnings_alone_exit_0(monkeypatch, capsys):
    rc, lines = _main_with(monkeypatch, capsys, [Check("a", True, "fine"),
                                                 Check("w", False, "meh", "fix it", required=False)])
    assert rc == 0 and "[warn] w: meh -> fix it" in lines


def test_main_any_failure_exits_1(monkeypatch, capsys):
    rc, lines = _main_with(monkeypatch, capsys, [Check("a", True, "fine"), Check("f", False, "bad", "do x"),
                                                 Check("w", False, "meh", "y", required=False)])
    assert rc == 1
    assert "[FAIL] f: bad -> do x" in lines and lines[-1] == "not ready: 3 checks, 1 failed, 1 warnings"


def test_main_quiet_hides_ok_lines(monkeypatch, capsys):
    rc, lines = _main_with(monkeypatch, capsys, [Check("a", True, "fine"), Check("f", False, "bad", "do x")],
                           ["--quiet"])
    assert rc == 1 and lines == ["[FAIL] f: bad -> do x", "not ready: 2 checks, 1 failed, 0 warnings"]


def test_checks_cover_the_list_in_order(monkeypatch):
    monkeypatch.setattr(doctor, "check_datapath", lambda: Check("switch datapath", True, "x"))
    monkeypatch.setattr(doctor, "check_qdiscs", lambda: [Check("qdisc netem", True, "x")])
    names = [c.name for c in doctor.checks()]
    assert names[:3] == ["root", "python", "distribution"]
    for module in ("mininet", "os_ken", "scapy", "matplotlib", "pymysql", "jinja2"):
        assert f"import {module}" in names
    for program in ("mnexec ovsdb-server ovs-vswitchd ovs-vsctl ovs-ofctl ovsdb-tool nginx haproxy mariadbd "
                    "mariadb-install-db mariadb mariadb-admin named named-checkconf named-checkzone dig curl wrk "
                    "tcpdump ethtool ip iperf3 keepalived prometheus promtool nsupdate openssl taskset").split():
        assert f"program {program}" in names
    # nothing weblab runs is checked "just in case" (they made doctor say ready for a lab that then failed)
    assert "program nsenter" not in names and "program cgcreate" not in names
    assert names[-4:] == ["switch datapath", "qdisc netem", "cgroup cpu", f"run directory {doctor.RUN_ROOT}"]


# -- individual checks --------------------------------------------------------------------------

def test_root_and_python():
    assert doctor.check_root(0).ok
    c = doctor.check_root(1000)
    assert not c.ok and c.required and "sudo" in c.fix
    assert doctor.check_python((3, 11, 0)).ok and doctor.check_python((3, 12, 1)).ok
    c = doctor.check_python((3, 10, 12))
    assert not c.ok and c.fix.endswith("sudo make install") and "3.10.12" in c.detail


def test_imports(tmp_path, monkeypatch):
    assert doctor.check_import("json").ok
    missing = doctor.check_import("weblab_no_such_module")
    assert not missing.ok and missing.fix == "sudo make install"
    (tmp_path / "weblab_broken_mod.py").write_text("raise RuntimeError('half installed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = doctor.check_import("weblab_broken_mod")
    assert not broken.ok and "half installed" in broken.detail


def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_binary_found_missing_and_off_path(tmp_path):
    bin_dir, sbin = tmp_path / "bin", tmp_path / "sbin"
    tool = _exe(bin_dir / "wrk")
    _exe(sbin / "nginx")
    assert doctor.check_binary("wrk", "wrk", path=str(bin_dir), sbin_dirs=(str(sbin),)) == \
        Check("program wrk", True, str(tool))
    off = doctor.check_binary("nginx", "nginx", path=str(bin_dir), sbin_dirs=(str(sbin),))
    assert not off.ok and "not on PATH" in off.detail and str(sbin) in off.fix
    gone = doctor.check_binary("haproxy", "haproxy", path=str(bin_dir), sbin_dirs=(str(sbin),))
    assert not gone.ok and gone.fix == "sudo make install (Debian package: haproxy)"


def test_cgroup_cpu_v1_v2_and_missing(tmp_path):
    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct").mkdir(parents=True)
    (v1 / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    assert doctor.check_cgroup_cpu(v1).ok
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert "v2" in doctor.check_cgroup_cpu(v2).detail
    (v2 / "cgroup.controllers").write_text("cpuset io memory pids\n")  # cpuset is not cpu
    missing = doctor.check_cgroup_cpu(v2)
    assert not missing.ok and missing.required and "mount" in missing.fix


def test_run_dir(tmp_path):
    assert doctor.check_run_dir(tmp_path).detail == "writable"
    assert list(tmp_path.iterdir()) == []  # the write probe is removed again
    created = doctor.check_run_dir(tmp_path / "a" / "weblab")
    assert created.ok and "will be created" in created.detail
    (tmp_path / "file").write_text("")
    assert not doctor.check_run_dir(tmp_path / "file").ok
    assert not doctor.check_run_dir(tmp_path / "file" / "weblab").ok


def test_run_dir_not_writable(tmp_path, monkeypatch):
    # Root writes anywhere, so the refusal is simulated where the probe file is made.
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(doctor.tempfile, "mkstemp", refuse)
    check = doctor.check_run_dir(tmp_path)
    assert not check.ok and "not writable (Permission denied)" in check.detail and "sudo" in check.fix


# -- the datapath choice -------------------------------------------------------------------------

@pytest.mark.parametrize("facts,choice,words", [
    (DatapathFacts(True, True, False), "kernel", "loaded"),
    (DatapathFacts(False, True, False), "kernel", "loadable"),
    (DatapathFacts(False, False, False), "user", "no openvswitch kernel module"),
    (DatapathFacts(True, True, True, 4242), "user", "system ovs-vswitchd (pid 4242)"),
    (DatapathFacts(True, True, True, None), "user", "leftover"),
])
def test_decide_datapath(facts, choice, words):
    got, why = decide_datapath(facts)
    assert got == choice and words in why


def _sys_tree(root: Path, module: bool = False, ovs_system: bool = False) -> Path:
    (root / "module").mkdir(parents=True)
    (root / "class" / "net").mkdir(parents=True)
    if module:
        (root / "module" / "openvswitch").mkdir()
    if ovs_system:
        (root / "class" / "net" / "ovs-system").mkdir()
    return root


def test_probe_datapath_reads_sysfs_and_modprobe(tmp_path):
    loadable = FakeRunner({"modprobe openvswitch": (0, "")})
    facts = datapath.probe_datapath(_sys_tree(tmp_path / "a"), loadable, pidfiles=())
    assert facts == DatapathFacts(False, True, False, None)
    assert loadable.calls == [["modprobe", "-n", "-q", "openvswitch"]]
    absent = FakeRunner({"modprobe openvswitch": (1, "")})
    assert decide_datapath(datapath.probe_datapath(_sys_tree(tmp_path / "b"), absent, pidfiles=()))[0] == "user"
    loaded = FakeRunner({"modprobe": (1, "")})
    facts = datapath.probe_datapath(_sys_tree(tmp_path / "c", module=True), loaded, pidfiles=())
    assert facts.module_loaded and loaded.calls == []


def test_probe_datapath_finds_a_running_system_vswitchd(tmp_path):
    pidfile, stale = tmp_path / "ovs-vswitchd.pid", tmp_path / "stale.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    stale.write_text("not a pid\n")
    facts = datapath.probe_datapath(_sys_tree(tmp_path / "sys", module=True, ovs_system=True),
                                  FakeRunner(), pidfiles=(stale, pidfile))
    assert facts.system_vswitchd_pid == os.getpid()
    assert decide_datapath(facts) == ("user", decide_datapath(facts)[1])
    assert str(os.getpid()) in decide_datapath(facts)[1]


def test_datapath_choice_uses_the_module_probes(tmp_path, monkeypatch):
    monkeypatch.setattr(datapath, "SYS", _sys_tree(tmp_path / "sys", module=True))
    monkeypatch.setattr(datapath, "SYSTEM_OVS_PIDFILES", ())
    monkeypatch.setattr(datapath, "run_quiet", FakeRunner())
    assert datapath.datapath_choice()[0] == "kernel"
    (tmp_path / "sys" / "class" / "net" / "ovs-system").mkdir()
    choice, why = datapath.datapath_choice()
    assert choice == "user" and "ovs-system" in why


def test_check_datapath_is_a_warning_when_userspace():
    kernel = doctor.check_datapath(DatapathFacts(True, True, False))
    assert kernel.ok and kernel.detail.startswith("datapath=kernel")
    no_module = doctor.check_datapath(DatapathFacts(False, False, False))
    assert no_module.status == "warn" and "modprobe openvswitch" in no_module.fix
    assert no_module.detail.startswith("datapath=user (host ports are OVS tap ports with userspace TSO): ")
    assert "veth pairs" in kernel.detail
    system = doctor.check_datapath(DatapathFacts(True, True, True, 99))
    assert system.status == "warn" and "openvswitch-switch" in system.fix


# -- traffic control ------------------------------------------------------------------------------

def test_qdiscs_tried_in_a_namespace_that_is_always_deleted():
    run = FakeRunner({"tc netem": (2, "Error: Specified qdisc kind is unknown.")})
    netem, htb, ifb = doctor.check_qdiscs(root=True, run=run)
    assert netem.status == "warn" and "delay" in netem.detail and "qdisc kind is unknown" in netem.detail
    assert htb.ok and ifb.ok and ifb.name == "device ifb"
    assert ["ip", "-n", f"weblab-doctor-{os.getpid()}", "link", "add", "weblab-ifb", "type", "ifb"] in run.calls
    support = doctor.shaping_support(run=FakeRunner({"tc netem": (2, "unknown qdisc")}), root=True)
    assert set(support) == {"netem", "htb", "ifb"}
    assert not support["netem"][0] and "unknown qdisc" in support["netem"][1]
    assert support["htb"][0] and support["ifb"][0]
    ns = f"weblab-doctor-{os.getpid()}"
    assert run.calls[0] == ["ip", "netns", "add", ns]
    assert run.calls[-1] == ["ip", "netns", "delete", ns]
    assert run.calls[1][:6] == ["ip", "netns", "exec", ns, "tc", "qdisc"]


def test_qdiscs_namespace_deleted_even_if_a_probe_raises():
    class Exploding(FakeRunner):
        def __call__(self, argv):
            super().__call__(argv)
            if "tc" in argv:
                raise KeyboardInterrupt
            return 0, ""
    run = Exploding()
    with pytest.raises(KeyboardInterrupt):
        doctor.check_qdiscs(root=True, run=run)
    assert run.calls[-1][:3] == ["ip", "netns", "delete"]


def test_qdiscs_fall_back_to_modules(tmp_path):
    sys_root = _sys_tree(tmp_path)
    (sys_root / "module" / "sch_htb").mkdir()
    run = FakeRunner({"modprobe sch_netem": (1, "")})
    netem, htb, _ifb = doctor.check_qdiscs(root=False, run=run, sys_root=sys_root)
    assert netem.status == "warn" and "needs root" in netem.detail
    assert htb.ok
    assert not any("netns" in c for call in run.calls for c in call)
    no_ns = FakeRunner({"netns add": (1, "mount failed"), "modprobe": (0, "")})
    assert all(c.ok and "mount failed" in c.detail for c in doctor.check_qdiscs(True, no_ns, sys_root))
    assert ["ip", "netns", "delete", f"weblab-doctor-{os.getpid()}"] not in no_ns.calls


def test_run_quiet_reports_missing_programs_and_timeouts():
    assert doctor.run_quiet(["weblab-no-such-program"])[0] == 127
    assert doctor.run_quiet(["sleep", "5"], timeout=0.2)[0] == 124
    assert doctor.run_quiet(["sh", "-c", "echo oops >&2; exit 3"]) == (3, "oops")


def test_runtime_and_doctor_agree_on_a_cpuset_only_mount(tmp_path):
    from weblab.core import cgroups
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpuset io memory pids\n")
    assert cgroups.controller(v2) is None and not doctor.check_cgroup_cpu(v2).ok
    v1 = tmp_path / "v1"
    (v1 / "cpuset").mkdir(parents=True)
    (v1 / "cpuset" / "cpuset.cpus").write_text("0-1\n")
    assert cgroups.controller(v1) is None and not doctor.check_cgroup_cpu(v1).ok
    (v1 / "cpu").mkdir()
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroups.controller(v1) == ("v1", v1 / "cpu") and doctor.check_cgroup_cpu(v1).ok
