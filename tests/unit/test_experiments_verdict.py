"""The declarative verdict checks: ops, gates, missing values, units, cross-case checks, the stated rule made
from the same declarations, the one-sentence summary and the key figures' tolerances."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from experiments import registry
from experiments.base import Case, Experiment, record_case
from experiments.stats import rounded
from experiments.verdict import (INCONCLUSIVE, PRESENT, REFUTED, SKIP, SUPPORTED, Check, Figure, M, P, Verdict,
                                 all_of, any_of, decide, fill, fmt, gate, rule_text, summary_of)

PARAMS = {"healthy": 0.99, "min_requests": 50, "growth": 0.1}


def judged(checks, measured, case="c", params=PARAMS):
    return decide(checks, measured, params, case=case)


# ---- one check --------------------------------------------------------------------------------------
@pytest.mark.parametrize("op,limit,value,ok", [
    ("<", 1, 0.5, True), ("<", 1, 1, False), ("<=", 1, 1, True), ("<=", 1, 1.01, False),
    ("==", 0, 0.0, True), ("==", 0, 0.001, False), ("!=", 0, 1, True), ("!=", 0, 0, False),
    (">=", 0.99, 0.99, True), (">=", 0.99, 0.9899, False), (">", 0, 1, True), (">", 0, 0, False),
    ("==", 0, [], True), (">=", 1, ["server2:3306"], True), ("==", ["a", "b"], ["b", "a"], True),
    ("==", ["a", "b"], ["a"], False), ("==", True, True, True), ("==", "200", "502", False),
])
def test_ops(op, limit, value, ok) -> None:
    verdict, reasons = judged([Check("x", op, limit, "x")], {"x": value})
    assert verdict == (SUPPORTED if ok else REFUTED), reasons
    assert reasons[0].startswith("x: " + ("yes" if ok else "NO"))


def test_unknown_op_or_missing_policy_is_refused() -> None:
    with pytest.raises(ValueError):
        Check("x", "=>", 1, "x")
    with pytest.raises(ValueError):
        Check("x", ">=", 1, "x", missing="maybe")


def test_the_reason_names_the_value_the_measurement_and_the_limit() -> None:
    check = Check("after_success", ">=", P("healthy"), "success after the restore", "%")
    _, reasons = judged([check], {"after_success": 0.987})
    assert reasons == ["success after the restore: NO (98.7%, needs >= 99%)"]
    assert check.describe(PARAMS) == "success after the restore >= 99%"


def test_a_check_compares_the_exact_value_not_its_rounded_display() -> None:
    # 0.98996 is shown as 99% (4 digits) but is below 99%: the check must fail, as the raw comparison did
    m = {"s": rounded(0.98996, 2)}
    assert m["s"] == 0.99 and json.dumps(m) == '{"s": 0.99}'
    assert judged([Check("s", ">=", 0.99, "success", "%")], m)[0] == REFUTED
    assert copy.deepcopy(m)["s"].exact == 0.98996  # Verdict.to_dict deep-copies measured values


def test_limits_from_parameters_and_measured_values() -> None:
    checks = [Check("ratio", "<=", P("growth", plus=1), "top / best", "%"),
              Check("detection_s", "<=", M("bound_s", "inter x fall + inter"), "detection", "s")]
    verdict, reasons = judged(checks, {"ratio": 1.1, "detection_s": 4.06, "bound_s": 4.0})
    assert verdict == REFUTED and reasons == ["top / best: yes (110%, needs <= 110%)",
                                             "detection: NO (4.06 s, needs <= 4 s)"]
    assert [c.describe(PARAMS) for c in checks] == ["top / best <= 110%", "detection <= inter x fall + inter"]
    verdict, reasons = judged(checks[1:], {"detection_s": 3.0})
    assert verdict == INCONCLUSIVE and "limit (inter x fall + inter) was not measured" in reasons[0]


# ---- gates and missing values -------------------------------------------------------------------------
def test_a_failing_gate_makes_it_inconclusive_and_hides_the_checks() -> None:
    checks = [gate("baseline_success", ">=", P("healthy"), "success before the fault", "%",
                   fail="the site was not healthy before the fault"),
              gate("requests", ">=", P("min_requests"), "requests in the fault window"),
              Check("fault_success", "==", 0, "success while down", "%")]
    verdict, reasons = judged(checks, {"baseline_success": 0.5, "requests": 10, "fault_success": 0.3})
    assert verdict == INCONCLUSIVE
    assert reasons == ["the site was not healthy before the fault (success before the fault 50%, needs >= 99%)",
                       "requests in the fault window: NO (10, needs >= 50)"]
    verdict, reasons = judged(checks, {"baseline_success": 1.0, "requests": 60, "fault_success": 0.3})
    assert verdict == REFUTED and reasons == ["success while down: NO (30%, needs = 0%)"]


def test_a_gate_fail_text_may_use_the_measured_values() -> None:
    g = gate("noise", "<=", 1.2, "calm windows' p99 ratio", "x", fail=lambda m, p: f"in each of {m['rounds']} round(s)")
    assert judged([g], {"noise": 1.5, "rounds": 2})[1] == ["in each of 2 round(s) (calm windows' p99 ratio 1.5x, needs <= 1.2x)"]
    assert judged([gate("ok", "==", True, "the fault succeeded", fail="the fault failed")], {"ok": False})[1] == \
        ["the fault failed"]


@pytest.mark.parametrize("value", [None, float("nan"), "absent"])
def test_a_value_not_measured_makes_it_inconclusive_with_a_clear_reason(value) -> None:
    m = {} if value == "absent" else {"p99_ratio": value}
    verdict, reasons = judged([Check("p99_ratio", "<=", 1.2, "p99 during / calm", "x"),
                               Check("other", "==", 0, "other")], {**m, "other": 1})
    # not measured wins over a failing check: a claim is refuted only on what was measured
    assert verdict == INCONCLUSIVE and reasons == ["p99 during / calm: not measured", "other: NO (1, needs = 0)"]
    verdict, reasons = judged([gate("p99_ratio", "<=", 1.2, "p99 during / calm", "x")], m)
    assert verdict == INCONCLUSIVE and reasons == ["p99 during / calm: not measured"]


def test_missing_may_refute_or_skip_where_the_rule_says_so() -> None:
    checks = [Check("detection_s", "<=", 4, "kill to DOWN", "s", missing=REFUTED, absent="never marked DOWN"),
              Check("routed", "==", 0, "requests routed after detection", missing=SKIP)]
    assert judged(checks, {}) == (REFUTED, ["kill to DOWN: NO (never marked DOWN)"])
    assert judged(checks, {"detection_s": 2.0}) == (SUPPORTED, ["kill to DOWN: yes (2 s, needs <= 4 s)"])
    frame = Check("frame_syn", PRESENT, None, "SYN frame", missing=REFUTED, absent="NOT FOUND in order")
    assert judged([frame], {"frame_syn": 1}) == (SUPPORTED, ["SYN frame: yes (1)"])
    assert judged([frame], {"frame_syn": None}) == (REFUTED, ["SYN frame: NO (NOT FOUND in order)"])
    assert frame.describe(PARAMS) == "SYN frame found"


def test_no_check_applies_is_supported() -> None:
    assert judged([Check("x", "==", 0, "x", cases=("other",))], {}) == (SUPPORTED, [])


# ---- joined checks ------------------------------------------------------------------------------------
def test_all_of_and_any_of() -> None:
    a, b = Check("a", "<", 0.8, "a", "%"), Check("b", "<=", 1.1, "b", "%")
    plateau = all_of("plateau", a, b)
    assert judged([plateau], {"a": 0.5, "b": 1.75})[1] == \
        ["plateau: NO (a: yes (50%, needs < 80%); b: NO (175%, needs <= 110%))"]
    assert plateau.describe(PARAMS) == "plateau (a < 80% and b <= 110%)"
    assert judged([plateau], {"a": 0.5})[0] == INCONCLUSIVE
    degrade = any_of("degrades", Check("r", ">", 1.2, "p99 ratio", "x"), Check("d", ">", 0.01, "success drop", "points"))
    assert judged([degrade], {"r": 1.0, "d": 0.05})[0] == SUPPORTED
    assert judged([degrade], {"r": 1.0, "d": 0.0})[0] == REFUTED
    assert judged([degrade], {"r": 2.0})[0] == SUPPORTED      # one holding part is enough
    assert judged([degrade], {"r": 1.0})[0] == INCONCLUSIVE   # the other could have held
    assert degrade.describe(PARAMS) == "degrades (p99 ratio > 1.2x or success drop > 1 points)"


# ---- units --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,unit,text", [
    (0.99, "%", "99%"), (0.98765, "%", "98.77%"), (1.0, "%", "100%"), (0, "%", "0%"), (0.005, "%", "0.5%"),
    (0.055, "points", "5.5 points"), (3.9123, "s", "3.91 s"), (0.021, "s", "0.021 s"), (12.5, "ms", "12.5 ms"),
    (1234.5, "ms", "1234 ms"), (1.8, "x", "1.8x"), (19.7234, "x", "19.7x"), (195, "", "195"), (45.91, "req/s", "45.9 req/s"),
    (True, "", "yes"), (None, "s", "not measured"), (float("nan"), "%", "not measured"), ("200", "", "200"),
    (["lb1:80", "lb1:443"], "", "2 (lb1:80, lb1:443)"), ([], "", "0"), (["a", "b"], "names", "a, b"),
    ([], "names", "none"), (["a", "b"], "count", "2"), (list(range(8)), "", "8 (0, 1, 2, 3, 4, 5, ...)"),
])
def test_fmt(value, unit, text) -> None:
    assert fmt(value, unit) == text


# ---- the stated rule ------------------------------------------------------------------------------------
def test_rule_text_states_every_declaration_with_its_scope() -> None:
    checks = [gate("baseline_success", ">=", P("healthy"), "success before the fault", "%"),
              Check("fault_success", "==", 0, "success while down", "%", cases=("one-server",)),
              Check("fault_success", ">=", P("healthy"), "success while down", "%", cases=("distributed",)),
              Check("after_success", ">=", P("healthy"), "success after the restore", "%"),
              Check("ratio", ">=", 1.8, "capacity(2) / capacity(1)", "x", across=True, cases=("d-1", "d-2"))]
    assert rule_text("a probe every {interval} ms", checks, PARAMS) == (
        "A probe every {interval} ms. Supported when: (one-server) success while down = 0%; (distributed) success "
        "while down >= 99%; success after the restore >= 99%; (across d-1, d-2) capacity(2) / capacity(1) >= 1.8x; "
        "else refuted. Inconclusive unless: success before the fault >= 99%.")


def test_every_claim_states_each_of_its_checks_in_its_rule() -> None:
    for slug in registry.all_slugs():
        exp = registry.get(slug)
        params = exp.params()
        checks = exp.rule_checks(params)
        assert checks, f"{slug} declares no check"
        rule = exp.rule_text(params)
        for c in checks:
            assert c.label() + c.describe(params) in rule, (slug, c)
        for key, fig in exp.figures.items():
            assert fig.name and (fig.rel_tol is not None or fig.abs_tol is not None), (slug, key)
        assert exp.summary, f"{slug} declares no summary"
        names = {c.name for c in exp.all_cases(params)}
        for key in [*exp.figures, *(k for t in exp.summary for k, _ in re.findall(r"\{([^{}:]+)(?::([^{}]*))?\}", t))]:
            case, dot, _ = key.partition(".")
            assert not dot or case in names, (slug, key)


# ---- a contrast claim end to end: per-case checks, a cross-case check, summary ----------------------------
class Toy(Experiment):
    """Two cases whose measured values are read from raw/<case>/m.json."""

    slug, claim, title, design, timing_sensitive = "toy", "C0", "A toy claim", "one-server", False
    defaults = {"ratio": 1.8, "healthy": 0.99}
    checks = (gate("healthy_before", ">=", P("healthy"), "success before", "%"),
              Check("capacity_rps", ">", 0, "capacity", "req/s"),
              Check("capacity_ratio", ">=", P("ratio"), "capacity of b / of a", "x", across=True, cases=("a", "b")))
    figures = {"a.capacity_rps": Figure("capacity of a", "req/s", rel_tol=0.3),
               "capacity_ratio": Figure("capacity of b / of a", "x", abs_tol=0.2)}
    summary = ("a served {a.capacity_rps}", "b had {capacity_ratio} the capacity of a")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case("a", "one-server"), Case("b", "distributed")]

    def procedure(self, p: dict[str, Any]) -> str:
        return "wrk against a and b"

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        return self.verdict(case, json.loads((raw / "m.json").read_text()), params)

    def across_measured(self, by_case: dict[str, Verdict], params: dict[str, Any]) -> dict[str, Any]:
        a, b = (by_case[n].measured["capacity_rps"] for n in "ab")
        return {"capacity_ratio": rounded(b / a, 3)}


def toy_run(tmp: Path, a: dict, b: dict | None) -> Verdict:
    exp = Toy()
    raw = tmp / "raw"
    for case, m in (("a", a), ("b", b)):
        if m is None:
            continue
        c = next(x for x in exp.all_cases(exp.params()) if x.name == case)
        record_case(raw, exp.slug, exp.params(), c)
        (raw / case).mkdir(parents=True, exist_ok=True)
        (raw / case / "m.json").write_text(json.dumps(m))
    return exp.analyse(raw)


def test_cross_case_check_judged_after_the_cases(tmp_path: Path) -> None:
    v = toy_run(tmp_path, {"healthy_before": 1.0, "capacity_rps": 40.0}, {"healthy_before": 1.0, "capacity_rps": 80.0})
    assert v.verdict == SUPPORTED and v.measured["capacity_ratio"] == 2.0
    assert v.reasons[-1] == "capacity of b / of a: yes (2x, needs >= 1.8x)"
    assert v.rule == ("Wrk against a and b. Supported when: capacity > 0 req/s; (across a, b) capacity of b / of a "
                      ">= 1.8x; else refuted. Inconclusive unless: success before >= 99%.")
    assert v.summary == "A served 40 req/s; b had 2x the capacity of a."
    v = toy_run(tmp_path / "2", {"healthy_before": 1.0, "capacity_rps": 40.0}, {"healthy_before": 1.0, "capacity_rps": 70.0})
    assert v.verdict == REFUTED and "NO (1.75x, needs >= 1.8x)" in v.reasons[-1]


def test_cross_case_check_waits_for_its_cases_and_for_judged_cases(tmp_path: Path) -> None:
    v = toy_run(tmp_path, {"healthy_before": 1.0, "capacity_rps": 40.0}, None)   # --param cases=[a]
    assert v.verdict == SUPPORTED and "capacity_ratio" not in v.measured
    assert v.summary == "A toy claim: supported (capacity: yes (40 req/s, needs > 0 req/s))."  # no a. keys alone
    v = toy_run(tmp_path / "2", {"healthy_before": 0.5, "capacity_rps": 40.0}, {"healthy_before": 1.0, "capacity_rps": 80.0})
    assert v.verdict == INCONCLUSIVE and "capacity_ratio" not in v.measured
    assert v.summary.startswith("A toy claim: inconclusive (a: success before: NO (50%")


# ---- summary, figures, verdict files ---------------------------------------------------------------------
def test_summary_fills_units_and_falls_back() -> None:
    figures = {"one-server.longest_outage_s": Figure("longest outage", "s", rel_tol=0.25)}
    m = {"one-server.fault_success": 0.0, "one-server.fault_requests": 195, "one-server.longest_outage_s": 3.912,
         "distributed.fault_served_by": ["server2"]}
    clauses = ("the site answered {one-server.fault_success:%} of {one-server.fault_requests} requests for "
               "{one-server.longest_outage_s}", "served by {distributed.fault_served_by:names}",
               "{distributed.fault_success:%} succeeded")
    assert fill(clauses[0], m, figures) == "the site answered 0% of 195 requests for 3.91 s"
    assert fill(clauses[2], m, figures) is None
    v = Verdict(SUPPORTED, "r", m, ["why"])
    assert summary_of(clauses, v, figures, "T") == "The site answered 0% of 195 requests for 3.91 s; served by server2."
    assert summary_of(clauses[2:], v, figures, "T") == "T: supported (why)."
    assert summary_of(clauses, Verdict(INCONCLUSIVE, "r", m, ["the machine was busy."]), figures, "T") == \
        "T: inconclusive (the machine was busy)."


def test_figure_tolerances() -> None:
    rel, absolute = Figure("capacity", "req/s", rel_tol=0.3), Figure("success", "%", abs_tol=0.01)
    assert rel.agrees(130.0, 100.0) and not rel.agrees(131.0, 100.0) and rel.agrees(70, 100)
    assert absolute.agrees(0.99, 1.0) and not absolute.agrees(0.98, 1.0)
    assert Figure("x").agrees(1, 2) is None and rel.agrees(None, 100.0) is None
    assert Figure("open ports", abs_tol=0).agrees(["lb1:80", "lb1:443"], ["lb1:443", "lb1:80"])
    assert not Figure("open ports", abs_tol=0).agrees(["lb1:80"], ["lb1:443", "lb1:80"])
    assert (rel.tolerance(), absolute.tolerance(), Figure("x").tolerance()) == \
        ("+-30% of the reference", "+-1%", "not compared")


def test_verdict_files_without_a_summary_still_load(tmp_path: Path) -> None:
    old = {"verdict": "supported", "rule": "r", "measured": {"x": 1}, "reasons": [], "plots": [], "slug": "spof",
           "claim": "C1", "error": None}
    (tmp_path / "verdict.json").write_text(json.dumps(old))
    v = Verdict.load(tmp_path / "verdict.json")
    assert v.summary == "" and v.measured == {"x": 1}
    v.summary = "One sentence."
    assert Verdict.load(v.save(tmp_path / "new.json")).summary == "One sentence."
