"""The launcher as the runtime uses it: a real process, no switch, no root."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controllers.client import ControlError, request
from tests.unit.test_controllers_policy import example

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp_path, policy: dict, port: int, control: bool = True) -> subprocess.Popen:
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    cmd = [sys.executable, "-m", "controllers.run", "--listen", "127.0.0.1", "--port", str(port),
           "--policy", str(tmp_path / "policy.json"), "--log", str(tmp_path / "ctl.log")]
    if control:
        cmd += ["--control", str(tmp_path / "ctl.sock")]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def wait_for_port(proc: subprocess.Popen, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"controller did not listen on {port} within {timeout} s")


def test_bad_policy_fails_fast_with_one_line(tmp_path):
    doc = example()
    doc["rules"][2]["port"] = 0
    proc = launch(tmp_path, doc, free_port())
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and out == b""
    assert err.decode().count("\n") == 1
    assert "rules[2].port: must be an integer 1-65535" in err.decode()
    assert not (tmp_path / "ctl.sock").exists()


def test_busy_port_fails_fast(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = launch(tmp_path, example(), busy.getsockname()[1])
        _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "Address already in use" in err.decode()


def test_listens_only_on_the_given_address_and_answers_control(tmp_path):
    port = free_port()
    proc = launch(tmp_path, example(), port)
    try:
        wait_for_port(proc, port)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=1).close()
        status = request(str(tmp_path / "ctl.sock"), {"op": "status"})
        assert status["ok"] and status["status"] == "starting" and status["switches"] == []
        assert status["firewall"] is True and status["expected"] == [1, 2]
        show = request(str(tmp_path / "ctl.sock"), {"op": "show"})
        assert [r["id"] for r in show["rules"]][:2] == ["arp", "icmp"]
        added = request(str(tmp_path / "ctl.sock"), {"op": "allow", "rule": {
            "src": "any", "dst": "role:web", "proto": "tcp", "port": 443}})
        assert added == {"id": "live-8", "cookie": "0x100000000000008", "flows": 0,
                         "firewall": True, "ok": True}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and out == b""
    assert not (tmp_path / "ctl.sock").exists()
    log = (tmp_path / "ctl.log").read_text()
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO controllers.run: listening",
                     log, re.M)


def test_client_reports_an_absent_controller(tmp_path):
    with pytest.raises(ControlError, match="ctl.sock"):
        request(str(tmp_path / "ctl.sock"), {"op": "status"}, timeout=0.5)
