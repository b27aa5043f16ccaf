"""Parallel, dependency-ordered bring-up: the declarations, and the scheduler over fake services."""
from __future__ import annotations

import threading
import time

import pytest

from topologies import DESIGNS
from topologies.base import LabTopo
from weblab.core.errors import NotReady
from weblab.lab import Lab


class Tiny(LabTopo):
    design = "tiny"

    def build(self, **_):
        s1 = self.addSwitch("s1")
        self.add_node("h1", "web", s1, "10.9.0.1")
        self.add_service("h1", "db")
        self.add_service("h1", "app", after=["db@h1"])
        self.add_service("h1", "web")
        self.add_service("h1", "lb", after=["app@h1", "web@h1"])


def test_waves_follow_the_declarations():
    assert [[s.name for s in w] for w in Tiny().start_waves()] == [["db@h1", "web@h1"], ["app@h1"], ["lb@h1"]]


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_every_design_declares_a_startable_graph(design):
    topo = DESIGNS[design]()
    waves = topo.start_waves()
    assert sum(len(w) for w in waves) == len(topo.services)
    names = {s.name: i for i, w in enumerate(waves) for s in w}
    for s in topo.services:
        if s.kind == "haproxy":  # backends before the load balancer's health checks
            assert all(names[a] < names[s.name] for a in s.after) and s.after


def test_unknown_and_circular_waits_are_errors():
    t = Tiny()
    t.add_service("h1", "cache", after=["redis@h1"])
    with pytest.raises(ValueError, match="cache@h1 waits for redis@h1, which the design does not declare"):
        t.check_services()
    t = Tiny()
    t.services[0] = type(t.services[0])("h1", "db", {}, ("lb@h1",))
    with pytest.raises(ValueError, match="in a circle"):
        t.check_services()


class FakeService:
    def __init__(self, name, log, fail=False, seconds=0.2):
        self.name, self.log_, self.fail, self.seconds = name, log, fail, seconds
        self.ref, self.dir, self.log = None, None, None

    def start(self):
        self.log_.append(("start", self.name, time.monotonic()))
        time.sleep(self.seconds)  # stands in for a daemon's start-up
        if self.fail:
            raise NotReady(f"{self.name} did not become ready")
        self.log_.append(("ready", self.name, time.monotonic()))


def _lab(fail: str = ""):
    lab = object.__new__(Lab)
    lab.topo, lab.timings = Tiny(), {}
    log: list = []
    lab._make_service = lambda spec: FakeService(spec.name, log, fail=spec.name == fail)
    return lab, log


def test_services_start_together_once_their_prerequisites_are_ready():
    lab, log = _lab()
    t0 = time.monotonic()
    lab._start_services()
    took = time.monotonic() - t0
    at = {(what, name): t for what, name, t in log}
    assert at[("start", "web@h1")] < at[("ready", "db@h1")]          # no wait between independent ones
    assert at[("start", "app@h1")] >= at[("ready", "db@h1")]         # a prerequisite is waited for
    assert at[("start", "lb@h1")] >= max(at[("ready", "app@h1")], at[("ready", "web@h1")])
    assert took < 4 * 0.2 and set(lab.timings) == {"db@h1", "app@h1", "web@h1", "lb@h1"}
    assert [s.name for s in lab.started_services] == ["db@h1", "app@h1", "web@h1", "lb@h1"]


def test_a_failure_stops_new_starts_and_is_raised():
    lab, log = _lab(fail="db@h1")
    with pytest.raises(NotReady, match="db@h1 did not become ready"):
        lab._start_services()
    started = [name for what, name, _ in log if what == "start"]
    assert "app@h1" not in started and "lb@h1" not in started   # they wait for what failed
    assert "web@h1" in started                                  # already under way: it finished
    assert threading.active_count() < 50
