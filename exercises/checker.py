"""`weblab check`: grade a running lab against an exercise's checks, and say so for people (one line
per check, its hint when it fails), for CI and course graders (JUnit XML, CSV)."""
from __future__ import annotations

import csv
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from exercises.checks import KINDS, RETRY, LiveLab, Outcome
from exercises.model import Check, Exercise
from weblab.core.errors import WeblabError

PASSED, FAILED = 0, 1


@dataclass(frozen=True)
class Result:
    """One check's verdict: passed or not, what was seen, how long it took."""

    check: Check
    ok: bool
    seen: str
    seconds: float


def refusal(ex: Exercise, live: LiveLab) -> str | None:
    """Why this lab cannot be graded for this exercise (another design, scenario or parameters)."""
    if live.design != ex.design or (live.scenario or "") != ex.scenario:
        want = ex.design + (f" --scenario {ex.scenario}" if ex.scenario else "")
        have = live.design + (f" with scenario {live.scenario}" if live.scenario else "")
        return (f"exercise {ex.name} is for {want}, but the running lab is {have}; start the right one: "
                f"sudo weblab down && sudo weblab up {want} --detach")
    wrong = {k: v for k, v in ex.params.items() if live.params.get(k) != v}
    if wrong:
        return (f"exercise {ex.name} needs --param {' --param '.join(f'{k}={v}' for k, v in wrong.items())}; "
                f"the running lab has {', '.join(f'{k}={live.params.get(k)}' for k in wrong)}")
    return None


def run_check(check: Check, live: LiveLab) -> Result:
    """One check: tried until it passes or its `within` runs out (at least once), with the service it
    names in while_stopped stopped for its duration and started again afterwards, always."""
    t0 = time.monotonic()
    deadline = t0 + check.within
    kind = KINDS[check.kind]
    stopped = None
    try:
        if check.while_stopped:
            service, _, host = check.while_stopped.partition("@")
            live.service_action(host, service, "stop")
            stopped = (host, service)
        if kind.self_timed:
            outcome = kind.run(live, check.spec, deadline)
        else:
            while True:
                outcome = kind.attempt(live, check.spec)
                if outcome.ok or time.monotonic() >= deadline:
                    break
                time.sleep(min(RETRY, max(0.0, deadline - time.monotonic())))
    except WeblabError as e:
        outcome = Outcome(False, f"could not check: {e}")
    finally:
        if stopped:
            try:
                live.service_action(stopped[0], stopped[1], "start")
            except WeblabError as e:
                outcome = Outcome(False, f"{outcome.seen}; and {stopped[1]} on {stopped[0]} did not start "
                                         f"again: {e}")
    return Result(check, outcome.ok, outcome.seen, round(time.monotonic() - t0, 3))


def run(ex: Exercise, live: LiveLab, say=None) -> list[Result]:
    """Every check of the exercise against the live lab, in order; `say` hears each result as it comes."""
    results = []
    for check in ex.checks:
        res = run_check(check, live)
        results.append(res)
        if say:
            say(format_result(res))
    return results


def format_result(res: Result) -> str:
    lines = [f"  {'PASS' if res.ok else 'FAIL'}  {res.check.name}: {res.seen}"]
    if not res.ok:
        lines.append(f"        hint: {res.check.hint}")
    return "\n".join(lines)


def summary(results: list[Result]) -> str:
    passed = sum(r.ok for r in results)
    return (f"{len(results)} checks: {passed} passed, {len(results) - passed} failed"
            + (" -- all passed" if passed == len(results) else ""))


def exit_code(results: list[Result]) -> int:
    return PASSED if all(r.ok for r in results) else FAILED


def write_junit(ex: Exercise, results: list[Result], path: Path) -> Path:
    """One <testcase> per check, a failure carrying what was seen and the hint."""
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=f"exercise {ex.name}", tests=str(len(results)),
                       failures=str(sum(not r.ok for r in results)), errors="0", skipped="0",
                       time=f"{sum(r.seconds for r in results):.3f}")
    for r in results:
        tc = ET.SubElement(ts, "testcase", classname=f"exercises.{ex.name}", name=r.check.name,
                           time=f"{r.seconds:.3f}")
        if not r.ok:
            ET.SubElement(tc, "failure", message=r.seen[:500], type=r.check.kind).text = \
                f"seen: {r.seen}\nhint: {r.check.hint}"
        ET.SubElement(tc, "system-out").text = r.seen
    tree = ET.ElementTree(root)
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path


CSV_COLUMNS = ("exercise", "design", "scenario", "check", "kind", "result", "seconds", "seen", "hint")


def write_csv(ex: Exercise, results: list[Result], path: Path) -> Path:
    """One row per check, for a course's spreadsheet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in results:
            w.writerow([ex.name, ex.design, ex.scenario, r.check.name, r.check.kind,
                        "pass" if r.ok else "fail", f"{r.seconds:.3f}", r.seen, r.check.hint])
    return path
