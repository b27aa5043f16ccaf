"""`weblab attack` and the ARP inspection display: plans from the design, records, stop, the tables (no root)."""
import subprocess
import sys

import pytest

from weblab import attack, firewall
from weblab.core import paths
from weblab.core.errors import WeblabError
from weblab.core.proc import ProcRef
from weblab.core.state import RunState


def state(design: str = "secured", **params) -> RunState:
    return RunState("test-run", {"run_id": "test-run", "design": design, "params": params, "hosts": {}})


def test_plan_finds_the_shared_link_and_the_victims_addresses_on_it():
    p = attack.plan(state(), "server2", ["lb1", "server1"])
    assert (p.iface, p.address) == ("server2-eth0", "10.0.1.12")
    assert p.victims == (("lb1", "10.0.1.10"), ("server1", "10.0.1.11"))
    assert p.lab_nets == ("10.0.0.0/24", "10.0.1.0/24")
    front = attack.plan(state("distributed", attacker="front"), "attacker", ["client", "lb1"])
    assert (front.iface, front.victims) == ("attacker-eth0", (("client", "10.0.0.100"), ("lb1", "10.0.0.10")))
    argv = attack.argv(p, "/venv/python", 30, grep="wonderland", proxy=None)
    assert argv[:3] == ["/venv/python", "-m", "experiments.attacks.mitm"]
    assert argv.count("--lab-net") == 2 and "lb1=10.0.1.10" in argv and "server1=10.0.1.11" in argv
    assert argv[argv.index("--grep") + 1] == "wonderland" and "--proxy" not in argv


@pytest.mark.parametrize("source,between,words", [
    ("client", ["lb1", "server1"], "shares no network"),
    ("server2", ["lb1", "mallory"], "unknown host 'mallory'"),
    ("server2", ["lb1"], "two other hosts"),
    ("server2", ["server2", "lb1"], "two other hosts")])
def test_bad_plans_say_what_to_do(source, between, words):
    with pytest.raises(WeblabError, match=words):
        attack.plan(state(), source, between)


def test_recorded_attacks_are_stopped_and_forgotten(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUN_ROOT", tmp_path)
    st = state()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        folder = attack.records_dir(st)
        folder.mkdir(parents=True)
        ref = ProcRef.of("attack:mitm@server2", proc.pid, group=False, host="server2")
        (folder / "mitm-1.json").write_text(__import__("json").dumps(ref.to_dict()))
        (folder / "mitm-2.json").write_text('{"name": "gone", "pid": 1, "start": 0}')  # pid reused: not ours
        assert [r.pid for _, r in attack.running(st)] == [proc.pid]
        assert attack.stop_all(st, timeout=5) == [f"attack:mitm@server2 (pid {proc.pid})"]
        assert not ref.alive() and list(folder.iterdir()) == []  # (stop reaped it: our child)
        assert attack.stop_all(st) == []
    finally:
        proc.kill()


def test_firewall_show_and_status_print_arp_inspection():
    report = {"on": True, "dropped": 12, "ports": [{"dpid": 2, "switch": "s2", "port": 4, "host": "server2",
                                                    "packets": 12, "first": 0.0, "last": 1.0}]}
    text = firewall.format_show({"firewall": True, "rules": [], "default_deny": {}, "arp_inspection": report})
    assert "ARP inspection: ON, 12 spoofed ARP dropped" in text
    assert "s2 port 4 (server2): 12 dropped since" in text
    assert firewall.arp_lines({"on": False, "dropped": 0, "ports": []}) == ["ARP inspection: OFF"]
    assert firewall.arp_lines({"on": True, "dropped": 0, "ports": []}) == ["ARP inspection: ON, no spoofed ARP seen"]
    assert firewall.arp_lines(None) == []
