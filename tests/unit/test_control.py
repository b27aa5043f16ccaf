"""The lab's control socket, served over a fake lab (no root): every operation, and bad requests."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from experiments.testing import FakeLab, LocalHttpServer
from weblab import control
from weblab.core import jsonline
from weblab.core.proc import ProcRef
from weblab.core.state import RunState
from weblab.core.wait import wait_for


@pytest.fixture
def served(tmp_path):
    server = LocalHttpServer().start()
    lab = FakeLab("one-server", {}, server, tmp_path)
    sock = Path(tempfile.mkdtemp(prefix="wl-ctl-")) / "control.sock"
    ctl = control.ControlServer(lab, sock).start()
    try:
        yield lab, ctl, RunState("fake", {"run_id": "fake", "control": str(sock)})
    finally:
        ctl.stop()
        lab.teardown()
        server.stop()
        sock.parent.rmdir()


def test_socket_is_root_only(served):
    _, ctl, _ = served
    assert ctl.path.stat().st_mode & 0o777 == 0o600


def test_service_actions_call_the_labs_own_methods(served):
    lab, _, state = served
    assert control.request(state, {"op": "service", "host": "server1", "kind": "nginx", "action": "kill"})["ok"]
    assert control.request(state, {"op": "service", "host": "server1", "kind": "nginx", "action": "start"})["ok"]
    assert lab.events == ["kill", "start"]
    status = control.request(state, {"op": "status"})
    assert {"host": "server1", "kind": "nginx", "alive": True} in status["services"]


def test_spawned_processes_are_recorded_and_stopped(served):
    lab, _, state = served
    reply = control.request(state, {"op": "spawn", "host": "client", "argv": ["sh", "-c", "echo hi; sleep 30"],
                                    "name": "demo"})
    ref = ProcRef.of("demo", reply["pid"])
    assert ref.alive() and reply["log"].endswith("spawned/demo.log")
    assert [p["name"] for p in control.request(state, {"op": "status"})["spawned"]] == ["demo"]
    wait_for(lambda: "hi" in Path(reply["log"]).read_text(), 5, "the spawned process's output")
    stopped = control.request(state, {"op": "stop-process", "pid": reply["pid"]})
    assert stopped["alive"] is False and not ref.alive()


def test_links_go_down_and_up(served):
    lab, _, state = served
    control.request(state, {"op": "link", "a": "server1", "b": "s1", "state": "down"})
    control.request(state, {"op": "link", "a": "server1", "b": "s1", "state": "up"})
    assert lab.events == ["link_down", "link_up"]


@pytest.mark.parametrize("req, words", [
    ({"op": "explode"}, "unknown op 'explode'"),
    ({"op": "service", "host": "server1", "kind": "nginx", "action": "explode"}, "use one of start"),
    ({"op": "service", "host": "server1"}, "bad request"),
    ({"op": "spawn", "host": "client", "argv": "rm -rf /"}, "argv must be a non-empty list"),
    ({"op": "spawn", "host": "client", "argv": ["true"], "name": "../../etc"}, "letters, digits"),
    ({"op": "stop-process", "pid": 1}, "was not started through this lab's control socket"),
    ({"op": "link", "a": "x", "b": "y", "state": "sideways"}, "use up or down"),
])
def test_bad_requests_are_refused_with_a_reason(served, req, words):
    _, ctl, state = served
    with pytest.raises(Exception) as err:
        control.request(state, req)
    assert words in str(err.value)


def test_garbage_on_the_socket_gets_an_answer_not_a_crash(served):
    _, ctl, state = served
    assert jsonline.answer(b"not json\n", ctl.handle)["ok"] is False
    assert jsonline.answer(b"[1, 2]\n", ctl.handle)["error"] == "request must be a JSON object"
    assert control.request(state, {"op": "status"})["ok"]  # still serving


def test_a_lab_without_a_socket_says_so(tmp_path):
    with pytest.raises(Exception, match="has no control socket"):
        control.request(RunState("r", {"run_id": "r"}), {"op": "status"})
