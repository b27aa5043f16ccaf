"""`weblab attack` and the ARP inspection display: plans from the design, records, stop, the tables (no root)."""
import io
import subprocess
import sys
import threading

import pytest

from weblab import attack, firewall
from weblab.core import jsonline, paths
from weblab.core.errors import WeblabError
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


class FakeLabSocket:
    """The lab's control socket as the CLI sees it: spawn, status, stop-process, on a real Unix socket."""

    def __init__(self, path, child_log):
        self.requests, self.child, self.child_log = [], None, child_log
        self.sock = jsonline.bind(str(path))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=jsonline.serve_client, args=(conn, self.handle), daemon=True).start()

    def handle(self, req):
        self.requests.append(req)
        if req["op"] == "spawn":  # a stand-in tool: prints, then exits cleanly on SIGTERM
            out = open(self.child_log, "wb")
            self.child = subprocess.Popen([sys.executable, "-c", TOOL], stdout=out, stderr=subprocess.STDOUT)
            return {"ok": True, "pid": self.child.pid, "log": str(self.child_log)}
        if req["op"] == "status":
            alive = self.child is not None and self.child.poll() is None
            return {"ok": True, "spawned": [{"pid": self.child.pid, "name": "attack-mitm-server2-1", "host": "server2",
                                              "alive": alive, "log": str(self.child_log)}] if self.child else []}
        if req["op"] == "stop-process":
            self.child.terminate()
            self.child.wait(timeout=5)
            return {"ok": True, "pid": req["pid"], "alive": False}
        return {"ok": False, "error": "unknown op"}


TOOL = ("import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('stopped: caches restored', flush=True), sys.exit(0)))\n"
        "print('man in the middle of lb1 and server1', flush=True)\n"
        "time.sleep(30)\n")


def test_the_lab_spawns_the_attack_and_the_cli_follows_and_stops_it(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUN_ROOT", tmp_path)
    st = state()
    st.data["control"] = str(tmp_path / "control.sock")
    lab = FakeLabSocket(tmp_path / "control.sock", tmp_path / "attack.log")
    p = attack.plan(st, "server2", ["lb1", "server1"])
    pid, log = attack.spawn(st, p, attack.argv(p, "/venv/python", 30))
    assert lab.requests[0]["host"] == "server2" and lab.requests[0]["name"].startswith("attack-mitm-server2-")
    assert lab.requests[0]["argv"][1:3] == ["-m", "experiments.attacks.mitm"]
    assert [a["pid"] for a in attack.running(st)] == [pid]
    out = io.StringIO()
    threading.Timer(1.0, lambda: attack.stop_all(st)).start()  # what `weblab attack stop` does
    attack.follow(st, pid, log, limit=20, out=out)
    assert "man in the middle of lb1 and server1" in out.getvalue()
    assert "stopped: caches restored" in out.getvalue()
    assert attack.running(st) == [] and attack.stop_all(st) == []


def test_firewall_show_and_status_print_arp_inspection():
    report = {"on": True, "dropped": 12, "ports": [{"dpid": 2, "switch": "s2", "port": 4, "host": "server2",
                                                    "packets": 12, "first": 0.0, "last": 1.0}]}
    text = firewall.format_show({"firewall": True, "rules": [], "default_deny": {}, "arp_inspection": report})
    assert "ARP inspection: ON, 12 spoofed ARP dropped" in text
    assert "s2 port 4 (server2): 12 dropped since" in text
    assert firewall.arp_lines({"on": False, "dropped": 0, "ports": []}) == ["ARP inspection: OFF"]
    assert firewall.arp_lines({"on": True, "dropped": 0, "ports": []}) == ["ARP inspection: ON, no spoofed ARP seen"]
    assert firewall.arp_lines(None) == []
