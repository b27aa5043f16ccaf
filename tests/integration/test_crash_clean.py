"""A lab whose supervisor is killed leaves its pieces; `weblab clean` removes exactly those."""
from __future__ import annotations

import os
import re
import signal
import time

from tests.integration.conftest import interfaces_everywhere, leftovers, running_state, tap_ports, weblab
from weblab.core.proc import ProcRef


def test_killed_supervisor_then_clean_leaves_nothing():
    weblab("up", "one-server", "--detach")
    state = running_state()
    holder = ProcRef(**state["holder"])
    os.kill(holder.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while holder.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not holder.alive()
    assert leftovers(state), "a crashed lab must leave its processes until cleaned"
    # Tap ports (userspace datapath): a host whose namespace still holds a daemon keeps its tap
    # (ovs-vswitchd holds the other end) until cleaned.
    taps = tap_ports(state)
    if state["datapath"] == "user":
        assert "server1-eth0" in taps and "server1-eth0" in interfaces_everywhere()
    status = weblab("status", check=False)
    assert "weblab clean" in status.stdout
    refused = weblab("up", "one-server", "--detach", check=False)
    assert refused.returncode == 2 and "weblab clean" in refused.stderr
    out = weblab("clean")
    assert re.search(rf"cleaned lab {state['run_id']}", out.stdout)
    assert leftovers(state) == []
    assert not set(taps) & interfaces_everywhere()
