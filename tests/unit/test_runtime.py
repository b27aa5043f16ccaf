"""Runtime pieces that need no root: process identity, state files, lock, CLI errors."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from weblab.core import paths
from weblab import cli, lock
from weblab.core.proc import ProcRef, start_time
from weblab.core.state import RunState, all_runs


@pytest.fixture
def run_root(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUN_ROOT", tmp_path / "run")
    monkeypatch.setattr(paths, "LOCK_FILE", tmp_path / "weblab.lock")
    return tmp_path / "run"


def test_procref_stops_a_group_and_never_hits_a_reused_pid():
    p = subprocess.Popen(["sleep", "30"], start_new_session=True)
    ref = ProcRef.of("sleep", p.pid)
    assert ref.alive() and ref.start == start_time(p.pid)
    impostor = ProcRef("sleep", p.pid, ref.start + 1)  # same pid, other start time: not ours
    impostor.signal(9)
    assert ref.alive()
    assert ref.stop(timeout=5) is True
    p.wait(timeout=5)
    assert not ref.alive()


def test_state_is_saved_atomically_and_reloads(run_root):
    st = RunState("r1")
    st.set(design="one-server")
    st.add("links", ["client", "client-eth0", "s1", "s1-eth1"])
    again = RunState.load("r1")
    assert again.data["design"] == "one-server" and again.data["links"][0][1] == "client-eth0"
    assert all_runs() == ["r1"]
    assert not list((run_root / "r1").glob(".state.*"))


def test_lock_refuses_a_second_lab_naming_the_first(run_root):
    first = lock.LabLock()
    first.acquire("run-a", "one-server")
    # A second process tries: flock is per open file, so use a child to be honest about it.
    code = ("import sys; from weblab import lock; from weblab.core import paths; from pathlib import Path;"
            f"paths.RUN_ROOT=Path({str(run_root)!r}); paths.LOCK_FILE=paths.RUN_ROOT.parent/'weblab.lock';"
            "l=lock.LabLock()\ntry:\n l.acquire('run-b','one-server')\nexcept Exception as e:\n print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30).stdout
    assert "a lab is already running: one-server (lab run-a" in out and "weblab down" in out
    assert lock.is_held()
    first.release()
    assert not lock.is_held()


@pytest.mark.parametrize("verb", [["up", "one-server"], ["exec", "client", "--", "true"], ["down"], ["clean"]])
def test_verbs_that_need_root_say_so(verb, monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(verb) == 2
    err = capsys.readouterr().err
    assert "needs root" in err and "sudo weblab" in err


def test_unknown_design_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cli.main(["up", "three-tier"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown design 'three-tier'" in err and "weblab list" in err


def test_bad_param_syntax_and_unknown_param(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cli.main(["up", "one-server", "--param", "novalue"]) == 2
    assert "is not KEY=VALUE" in capsys.readouterr().err
    assert cli.main(["up", "one-server", "--param", "servers=2"]) == 2
    assert "unknown parameter(s) servers" in capsys.readouterr().err


def test_exec_without_a_lab_says_how_to_start_one(run_root, monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cli.main(["exec", "client", "--", "true"]) == 2
    assert "no lab is running; start one with: sudo weblab up one-server --detach" in capsys.readouterr().err


def test_parse_kv_reads_json_values():
    assert cli.parse_kv(["servers=3", "algorithm=leastconn", "retries=true"], "--param") == {
        "servers": 3, "algorithm": "leastconn", "retries": True}


def test_list_names_every_design(capsys):
    assert cli.main(["list"]) == 0
    assert "one-server" in capsys.readouterr().out


def test_cpu_limits_are_checked_before_anything_starts(run_root, monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cli.main(["up", "one-server", "--cpu", "server9=0.2"]) == 2
    err = capsys.readouterr().err
    assert "--cpu for unknown host(s) server9" in err and "server1" in err
    assert cli.main(["up", "one-server", "--cpu", "server1=1.5"]) == 2
    assert "(0, 1]" in capsys.readouterr().err
    assert not any(run_root.iterdir()) if run_root.exists() else True


def test_run_checks_every_claims_parameters_before_anything_starts(run_root, monkeypatch, capsys, tmp_path):
    # not root: the check must come first, so a typo is reported even before "needs root"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    out = tmp_path / "results"
    assert cli.main(["run", "spof", "fault-isolation", "--param", "rat=5", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("weblab: spof: unknown parameter(s) ['rat']")
    assert cli.main(["run", "spof", "--param", 'cases=["three-tier"]', "--out", str(out)]) == 2
    assert "unknown case(s)" in capsys.readouterr().err
    assert not out.exists()


def test_cpu_lists_parse_like_the_kernels():
    from weblab.core.cores import parse_cpulist
    assert parse_cpulist("1") == [1] and parse_cpulist("0-2") == [0, 1, 2] and parse_cpulist("3,0-1") == [0, 1, 3]
    for bad in ("", "a", "1-", "2-1", "0;1"):
        with pytest.raises(ValueError):
            parse_cpulist(bad)


def test_cores_are_validated_against_hosts_and_this_machines_cpus():
    from weblab.core.cores import validate
    from weblab.core.errors import WeblabError
    assert validate({"db1": "1", "*": "0"}, ["db1", "web1"], {0, 1}) == {"db1": "1", "*": "0"}
    with pytest.raises(WeblabError, match=r"unknown host\(s\) db9.*db1, web1, or \*"):
        validate({"db9": "1"}, ["db1", "web1"], {0, 1})
    with pytest.raises(WeblabError, match=r"CPU\(s\) \[2\] are not available here; this process may use CPUs 0,1"):
        validate({"db1": "1-2"}, ["db1"], {0, 1})
    with pytest.raises(WeblabError, match=r"--cores db1=x: 'x' is not a CPU list"):
        validate({"db1": "x"}, ["db1"], {0, 1})


def test_a_wrapped_command_really_runs_on_its_cpus():
    from hostapps.base import HostHandle
    from weblab.core.cores import for_host, wrap
    cpu = min(os.sched_getaffinity(0))
    out = subprocess.run(wrap([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                              str(cpu)), capture_output=True, text=True, timeout=30).stdout
    assert out.strip() == f"[{cpu}]"
    assert wrap(["true"], None) == ["true"]
    cores = {"db1": "1", "*": "0"}
    assert (for_host(cores, "db1"), for_host(cores, "web1"), for_host({}, "web1")) == ("1", "0", None)
    h = HostHandle("db1", pid=4242, ips=[], cores="1")
    assert h.argv(["true"]) == ["taskset", "-c", "1", "mnexec", "-a", "4242", "true"]


def test_cores_are_checked_before_anything_starts(run_root, monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cli.main(["up", "one-server", "--cores", "server9=0"]) == 2
    assert "--cores for unknown host(s) server9" in capsys.readouterr().err
    assert cli.main(["up", "one-server", "--cores", "server1=4096"]) == 2
    assert "are not available here" in capsys.readouterr().err
    assert not any(run_root.iterdir()) if run_root.exists() else True


def test_status_shows_each_hosts_cpu_quota_and_cores():
    from weblab.core.state import RunState
    data = {"run_id": "r1", "design": "scaled", "status": "ready", "datapath": "user",
            "hosts": {"db1": {"pid": 1, "role": "db", "ips": ["10.0.2.31"]},
                      "web1": {"pid": 2, "role": "web", "ips": ["10.0.1.11"]},
                      "client": {"pid": 3, "role": "client", "ips": ["10.0.0.100"]}},
            "services": [{"host": "db1", "kind": "mariadb", "dir": "/x", "log": "/x/l"}],
            "cpu": {"db1": 0.1}, "cores": {"db1": "1", "*": "0"}}
    lines = cli.describe(RunState("r1", data)).splitlines()
    assert lines[1].endswith("mariadb  [cpu quota 0.1, on CPU 1]")
    assert lines[2].endswith("[on CPU 0]") and lines[3].endswith("[on CPU 0]")
    assert "[" not in cli.describe(RunState("r1", {**data, "cpu": {}, "cores": {}}))


def test_run_without_claims_or_with_a_wrong_run_dir_says_what_to_give(tmp_path, capsys):
    assert cli.main(["run"]) == 2
    assert "which claims? weblab run SLUG" in capsys.readouterr().err
    assert cli.main(["run", "--analyse-only", str(tmp_path)]) == 2
    assert "is not a finished run: it has no raw/ folder" in capsys.readouterr().err


def test_status_says_which_datapath_its_ports_and_why():
    data = {"run_id": "r1", "design": "one-server", "status": "ready", "datapath": "user",
            "datapath_reason": "no openvswitch kernel module", "hosts": {}, "services": []}
    first = cli.describe(RunState("r1", data)).splitlines()[0]
    assert first.endswith("datapath user (host ports are OVS tap ports with userspace TSO): "
                          "no openvswitch kernel module")
    kernel = cli.describe(RunState("r1", {**data, "datapath": "kernel", "datapath_reason": "module loaded"}))
    assert "datapath kernel (host ports are veth pairs): module loaded" in kernel
