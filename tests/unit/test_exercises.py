"""Exercises as data: the parser (a malformed file names its line and field), the shipped exercises
and their generated pages, the checker's verdicts, JUnit and CSV, and `weblab check`'s exit codes."""
from __future__ import annotations

import csv
import os
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from exercises import checker, model, pages
from exercises.checks import Outcome
from topologies import DESIGNS
from weblab import cli
from weblab.core import paths
from weblab.core.errors import WeblabError

GOOD = """\
title: one server does all the work
design: distributed
scenario: one-server-only
task: |
  Find why server2 gets no request.
checks:
  - name: both servers UP
    haproxy: {host: lb1, servers: {server1: UP, server2: UP}}
    hint: weblab lb show
  - name: both serve
    backends: {url: "http://www.foobar.com/", served_by: [server1, server2]}
    hint: X-Served-By
    within: 1
solution:
  - weblab edit lb1 haproxy
"""


def parse(text: str, name: str = "x") -> model.Exercise:
    return model.parse(textwrap.dedent(text), Path(f"exercises/{name}.yaml"))


def test_a_good_exercise_reads_into_its_parts():
    ex = parse(GOOD)
    assert (ex.name, ex.design, ex.scenario) == ("x", "distributed", "one-server-only")
    assert [c.kind for c in ex.checks] == ["haproxy", "backends"]
    first, second = ex.checks
    assert first.spec == {"host": "lb1", "servers": {"server1": "UP", "server2": "UP"}}
    assert first.within == 8.0 and second.within == 1.0 and second.spec["requests"] == 6
    assert first.line == 7 and second.line == 10
    assert ex.solution == ["weblab edit lb1 haproxy"]


@pytest.mark.parametrize("change, where", [
    (lambda t: t.replace("design: distributed", "design: cluster"), "x.yaml:2: design: unknown design 'cluster'"),
    (lambda t: t.replace("scenario: one-server-only", "scenario: nope"), "x.yaml:3: scenario: unknown scenario 'nope'"),
    (lambda t: t.replace("scenario: one-server-only", "scenario: no-failover"),
     "x.yaml:3: scenario: scenario no-failover is for scaled, not distributed"),
    (lambda t: t.replace("title: one server does all the work\n", ""), "x.yaml:1: title: is required"),
    (lambda t: t.replace("checks:", "chekcs:"), "x.yaml:6: chekcs: unknown field"),
    (lambda t: t.replace("    hint: weblab lb show\n", ""), "x.yaml:7: checks[0].hint: is required"),
    (lambda t: t.replace("server2: UP}}", "server2: SLEEPY}}"), "x.yaml:8: checks[0].haproxy.servers.server2: must be one of UP"),
    (lambda t: t.replace("{host: lb1,", "{hots: lb1,"), "x.yaml:8: checks[0].haproxy.hots: unknown field"),
    (lambda t: t.replace("{host: lb1,", "{on: lb1,"), "x.yaml:8: keys must be text, got True (YAML reads on/off"),
    (lambda t: t.replace("    within: 1", "    within: soon"), "x.yaml:13: checks[1].within: must be a number, got 'soon'"),
    (lambda t: t.replace("    within: 1", "    within: -1"), "x.yaml:13: checks[1].within: must be 0 or more"),
    (lambda t: t.replace("    hint: X-Served-By", "    hint: X-Served-By\n    dns: {from: client, name: x, answer: [A 1.2.3.4]}"),
     "x.yaml:10: checks[1]: needs exactly one kind of check"),
    (lambda t: t.replace("served_by: [server1, server2]", "served_by: []"), "x.yaml:11: checks[1].backends.served_by: must name servers"),
    (lambda t: t.replace("  - weblab edit lb1 haproxy", "  - [weblab, edit]"), "x.yaml:15: solution[0]: each step must be a command line"),
    (lambda t: t + "  - name: x\n  bad: [\n", "x.yaml:17: not valid YAML"),
    (lambda t: t.replace("title: one", "title: !!python/object:os.system one"), "x.yaml:1: not valid YAML"),
    (lambda t: t.replace("    hint: X-Served-By", "    hint: X-Served-By\n    name: again"), "x.yaml:13: name: given twice"),
])
def test_a_malformed_exercise_names_its_line_and_field(change, where):
    with pytest.raises(model.ExerciseError) as err:
        parse(change(GOOD))
    assert where in str(err.value)
    assert "\n" not in str(err.value)


def test_kinds_check_their_own_fields():
    bad = GOOD.replace('backends: {url: "http://www.foobar.com/", served_by: [server1, server2]}',
                       'http: {url: "www.foobar.com", status: 200}')
    with pytest.raises(model.ExerciseError, match=r"x.yaml:11: checks\[1\].http.url: must start with http"):
        parse(bad)
    bad = GOOD.replace('backends: {url: "http://www.foobar.com/", served_by: [server1, server2]}',
                       'http: {url: "http://x/"}')
    with pytest.raises(model.ExerciseError, match="say what to expect"):
        parse(bad)
    bad = GOOD.replace('backends: {url: "http://www.foobar.com/", served_by: [server1, server2]}',
                       'dns: {from: client, name: www.foobar.com}')
    with pytest.raises(model.ExerciseError, match="exactly one of answer"):
        parse(bad)
    bad = GOOD.replace('backends: {url: "http://www.foobar.com/", served_by: [server1, server2]}',
                       'port: {from: client, to: lb1, port: 70000, state: open}')
    with pytest.raises(model.ExerciseError, match=r"checks\[1\].port.port: must be 1..65535"):
        parse(bad)


def test_an_exercise_without_checks_is_no_checks_not_malformed():
    text = GOOD[:GOOD.index("checks:")] + "solution:\n  - weblab lb show\n"
    with pytest.raises(model.NoChecks, match="has no checks"):
        parse(text)


def test_find_by_name_or_file_and_unknown_names_list_the_known(tmp_path):
    assert model.find("backend-port") == model.HERE / "backend-port.yaml"
    f = tmp_path / "mine.yaml"
    f.write_text(GOOD)
    assert model.find(str(f)) == f
    with pytest.raises(WeblabError, match="unknown exercise 'nope'; exercises: alert-threshold"):
        model.find("nope")
    with pytest.raises(WeblabError, match="no exercise file"):
        model.find(str(tmp_path / "absent.yaml"))


# --- what ships ------------------------------------------------------------------------------------
SHIPPED = model.all_exercises()


def test_at_least_four_exercises_per_design_each_with_a_solution():
    assert len(SHIPPED) >= 16
    for design in DESIGNS:
        assert sum(e.design == design for e in SHIPPED) >= 4, design
    assert all(e.solution and e.checks for e in SHIPPED)


def test_scenarios_used_by_exercises_cover_six_or_more():
    assert len({e.scenario for e in SHIPPED if e.scenario}) >= 6


def test_every_page_is_current_and_the_entry_page_links_them_all():
    for path, text in pages.current(SHIPPED).items():
        assert path.exists() and path.read_text() == text, f"{path} is stale: run python -m exercises.pages"
    entry = (paths.REPO / "docs" / "exercises.md").read_text()
    for ex in SHIPPED:
        assert f"(exercises/{ex.name}.md)" in entry
        page = (paths.REPO / "docs" / "exercises" / f"{ex.name}.md").read_text()
        assert f"weblab check {ex.name}" in page and all(step in page for step in ex.solution)
        design_page = (paths.REPO / "docs" / f"{ex.design}.md").read_text()
        assert f"(exercises/{ex.name}.md)" in design_page, f"docs/{ex.design}.md does not list {ex.name}"


# --- the checker -----------------------------------------------------------------------------------
class Live:
    """A lab double for the checker: design, scenario, and service actions recorded."""

    def __init__(self, design="distributed", scenario="one-server-only", params=None):
        self.design, self.scenario, self.params = design, scenario, params or {"servers": 2}
        self.actions: list[tuple[str, str, str]] = []

    def service_action(self, host, kind, action):
        self.actions.append((host, kind, action))


def test_refusal_names_the_lab_to_start():
    ex = parse(GOOD)
    assert checker.refusal(ex, Live()) is None
    why = checker.refusal(ex, Live(scenario=""))
    assert "is for distributed --scenario one-server-only" in why and "the running lab is distributed" in why
    assert "sudo weblab up distributed --scenario one-server-only --detach" in why
    assert "with scenario stale-replica" in checker.refusal(ex, Live(scenario="stale-replica"))
    ex2 = parse(GOOD.replace("task:", "params: {servers: 3}\ntask:"))
    assert "needs --param servers=3" in checker.refusal(ex2, Live())


def _fake_kind(monkeypatch, outcomes):
    seq = iter(outcomes)

    def attempt(live, spec):
        return next(seq)
    from exercises.checks import KINDS
    monkeypatch.setattr(KINDS["haproxy"], "attempt", attempt)


def test_a_check_is_retried_within_its_bound_and_passes_late(monkeypatch):
    monkeypatch.setattr("exercises.checker.RETRY", 0.01)
    _fake_kind(monkeypatch, [Outcome(False, "server2 DOWN"), Outcome(True, "server2 UP")])
    res = checker.run_check(parse(GOOD).checks[0], Live())
    assert res.ok and res.seen == "server2 UP"


def test_a_check_that_never_passes_fails_once_its_time_is_up(monkeypatch):
    monkeypatch.setattr("exercises.checker.RETRY", 0.01)
    _fake_kind(monkeypatch, [Outcome(False, "server2 DOWN")] * 1000)
    check = model.Check("haproxy", "n", "h", {}, 1, within=0.1)
    res = checker.run_check(check, Live())
    assert not res.ok and res.seen == "server2 DOWN" and 0.1 <= res.seconds < 2


def test_while_stopped_stops_the_service_and_always_starts_it_again(monkeypatch):
    _fake_kind(monkeypatch, [Outcome(True, "ok")])
    live = Live()
    check = model.Check("haproxy", "n", "h", {}, 1, within=0, while_stopped="haproxy@lb1")
    assert checker.run_check(check, live).ok
    assert live.actions == [("lb1", "haproxy", "stop"), ("lb1", "haproxy", "start")]

    def boom(live, spec):
        raise WeblabError("the lab did not answer")
    from exercises.checks import KINDS
    monkeypatch.setattr(KINDS["haproxy"], "attempt", boom)
    live = Live()
    res = checker.run_check(check, live)
    assert not res.ok and "could not check: the lab did not answer" in res.seen
    assert live.actions[-1] == ("lb1", "haproxy", "start")


def test_junit_and_csv_carry_every_check_with_what_was_seen_and_the_hint(tmp_path):
    ex = parse(GOOD)
    results = [checker.Result(ex.checks[0], True, "server1 UP, server2 UP", 0.5),
               checker.Result(ex.checks[1], False, "served by server1 x6", 1.25)]
    assert checker.exit_code(results) == 1 and checker.exit_code(results[:1]) == 0
    suite = ET.parse(checker.write_junit(ex, results, tmp_path / "j.xml")).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    failure = suite.findall("testcase")[1].find("failure")
    assert failure.get("message") == "served by server1 x6" and "hint: X-Served-By" in failure.text
    rows = list(csv.DictReader(open(checker.write_csv(ex, results, tmp_path / "c.csv"))))
    assert [r["result"] for r in rows] == ["pass", "fail"] and rows[1]["hint"] == "X-Served-By"
    assert rows[0]["scenario"] == "one-server-only" and rows[1]["kind"] == "backends"
    assert "2 checks: 1 passed, 1 failed" == checker.summary(results)


# --- weblab check's exit codes -----------------------------------------------------------------------
@pytest.fixture
def no_lab(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUN_ROOT", tmp_path / "run")
    monkeypatch.setattr(paths, "LOCK_FILE", tmp_path / "weblab.lock")
    monkeypatch.setattr(paths, "KEPT_LOGS", tmp_path / "logs")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return tmp_path


def test_check_exit_codes_for_bad_input(no_lab, capsys):
    assert cli.main(["check", "nope"]) == 2
    assert "unknown exercise 'nope'" in capsys.readouterr().err
    bad = no_lab / "bad.yaml"
    bad.write_text(GOOD.replace("design: distributed", "design: cluster"))
    assert cli.main(["check", str(bad)]) == 3
    err = capsys.readouterr().err
    assert "malformed exercise" in err and "bad.yaml:2: design" in err and err.count("\n") == 1
    empty = no_lab / "empty.yaml"
    empty.write_text(GOOD[:GOOD.index("checks:")] + "solution:\n  - weblab lb show\n")
    assert cli.main(["check", str(empty)]) == 2
    assert "has no checks" in capsys.readouterr().err
    assert cli.main(["check", "backend-port"]) == 2
    err = capsys.readouterr().err
    assert "no lab is running" in err and err.count("\n") == 1 and "Traceback" not in err
