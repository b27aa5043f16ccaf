"""Crashes at the other moments: a `weblab run` killed mid-claim, a teardown killed half-way, a
`weblab down` killed while it waits, the switch daemon or the controller dying under a running lab.
After each, `status` says what happened and `down`/`clean` leave nothing of the run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.integration.conftest import CLI, leftovers, running_state, weblab
from weblab import lock
from weblab.core import paths
from weblab.core.proc import ProcRef


@pytest.fixture(autouse=True)
def nothing_survives_a_failed_test():
    """These tests break labs on purpose: whatever happens to an assertion, the machine is left clean
    for the next lab (a stuck holder is stopped, by its run id)."""
    yield
    if any(paths.RUN_ROOT.glob("*/state.json")):
        weblab("clean", "--force", check=False, timeout=120)


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.05)


def _states() -> list[dict]:
    out = []
    for p in paths.RUN_ROOT.glob("*/state.json"):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError):  # being rewritten this instant
            pass
    return out


def _clean_leaves_nothing(state: dict) -> None:
    status = weblab("status", check=False)
    assert "weblab clean" in status.stdout, status.stdout
    out = weblab("clean")
    assert f"cleaned lab {state['run_id']}" in out.stdout
    assert leftovers(state) == []
    assert not lock.is_held(), "the lab lock outlived its holder"


def test_a_run_killed_mid_claim_is_cleaned(tmp_path):
    proc = subprocess.Popen([*CLI, "run", "dns-cname", "--out", str(tmp_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait(lambda: any(s.get("status") == "ready" for s in _states()), 120, "the claim's lab came up")
        state = next(s for s in _states() if s.get("status") == "ready")
        os.killpg(proc.pid, signal.SIGKILL)  # the run and everything in its process group, at once
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    state = json.loads((paths.run_dir(state["run_id"]) / "state.json").read_text())
    assert leftovers(state), "a killed run leaves its lab until cleaned"
    _clean_leaves_nothing(state)


def test_a_teardown_killed_half_way_is_cleaned():
    weblab("up", "one-server", "--detach")
    state = running_state()
    holder = ProcRef(**state["holder"])
    holder.signal(signal.SIGTERM)  # teardown starts ...
    _wait(lambda: any(s.get("status") == "stopping" for s in _states()) or not holder.alive(), 20,
          "the teardown started")
    os.kill(holder.pid, signal.SIGKILL)  # ... and dies in the middle
    _wait(lambda: not holder.alive(), 10, "the holder died")
    if paths.run_dir(state["run_id"]).exists():
        state = json.loads((paths.run_dir(state["run_id"]) / "state.json").read_text())
        _clean_leaves_nothing(state)
    assert leftovers(state) == []


def test_a_down_killed_while_it_waits_still_stops_the_lab():
    weblab("up", "one-server", "--detach")
    state = running_state()
    down = subprocess.Popen([*CLI, "down"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert "stopping" in down.stdout.readline()
    down.kill()  # the user gives up waiting; the lab's own holder carries on with the teardown
    down.wait(timeout=10)
    holder = ProcRef(**state["holder"])
    _wait(lambda: not holder.alive(), 60, "the lab stopped")
    assert leftovers(state) == []


@pytest.mark.parametrize("daemon", ["ovs-vswitchd", "controller"])
def test_a_dead_switch_daemon_or_controller_is_reported_and_down_removes_everything(daemon):
    weblab("up", "one-server", "--detach")
    state = running_state()
    ref = next(ProcRef(**p) for p in state["processes"] if p["name"] == daemon)
    ref.signal(signal.SIGKILL)
    _wait(lambda: not ref.alive(), 10, f"{daemon} died")
    status = weblab("status")
    assert f"{daemon}: DOWN" in status.stdout, status.stdout
    weblab("down", timeout=120)
    assert leftovers(state) == []
