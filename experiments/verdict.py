"""The outcome of one claim run (verdict, the rule applied, the measured values, why), and the checks that decide it.

A claim declares its checks once (`Check`, `all_of`, `any_of`): each names a measured value, a comparison
with a limit (a number, a parameter `P(...)` or another measured value `M(...)`), plain words and a unit.
`decide()` judges measured values by them and `rule_text()` states the same declarations in words, so the
verdict and its stated rule cannot drift apart. A failing check refutes the claim; a failing gate (a
precondition: the site was healthy before the fault, the overload did bite) makes it inconclusive, as does
a value that was not measured.
"""
from __future__ import annotations

import fnmatch
import json
import math
import operator
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Sequence, Union

SUPPORTED, REFUTED, INCONCLUSIVE = "supported", "refuted", "inconclusive"
VERDICTS = (SUPPORTED, REFUTED, INCONCLUSIVE)
SKIP = "skip"                        # Check.missing: a value not measured is not judged (e.g. a case that did not run)
PRESENT = "present"                  # Check.op: the value was measured at all (a frame found, a p99 computed)
YES, NO, UNKNOWN = "yes", "no", "unknown"   # the outcome of one check


@dataclass
class Verdict:
    """A verdict with its evidence; serialised as verdict.json beside the raw data."""

    verdict: str
    rule: str
    measured: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    slug: str = ""
    claim: str = ""
    error: str | None = None
    summary: str = ""                # the finding in one sentence, filled from measured (Experiment.summary)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {self.verdict!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Verdict":
        """Inverse of to_dict; ignores keys it does not know (newer files), defaults those it lacks (older ones)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self, path: Path) -> Path:
        """Write as JSON (verdict.json)."""
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False, default=_jsonable) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> "Verdict":
        """Read a verdict.json."""
        return cls.from_dict(json.loads(path.read_text()))


def _jsonable(value: Any) -> Any:
    """JSON fallback: numpy scalars, paths and sets become plain values."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def inconclusive(rule: str, reason: str, measured: dict[str, Any] | None = None,
                 error: str | None = None) -> Verdict:
    """Shorthand for a run that cannot be judged."""
    return Verdict(INCONCLUSIVE, rule, dict(measured or {}), [reason], error=error)


def worst(*kinds: str) -> str:
    """inconclusive over refuted over supported: what a claim is when its parts are these."""
    return INCONCLUSIVE if INCONCLUSIVE in kinds else REFUTED if REFUTED in kinds else SUPPORTED


def combine(parts: list[tuple[str, Verdict]]) -> Verdict:
    """Merge the verdicts of a claim's cases (design halves): any inconclusive wins, then refuted."""
    if len(parts) == 1:
        return parts[0][1]
    measured: dict[str, Any] = {}
    reasons: list[str] = []
    plots: list[str] = []
    errors: list[str] = []
    for name, v in parts:
        measured.update({f"{name}.{k}": val for k, val in v.measured.items()})
        reasons += [f"{name}: {r}" for r in v.reasons]
        plots += [p for p in v.plots if p not in plots]
        if v.error:
            errors.append(f"{name}: {v.error}")
    rules = list(dict.fromkeys(v.rule for _, v in parts))
    # one rule text for the whole claim (it names each case's expectation) is stated once
    rule = rules[0] if len(rules) == 1 else "; ".join(f"{name}: {v.rule}" for name, v in parts)
    return Verdict(worst(*(v.verdict for _, v in parts)), rule, measured, reasons, plots,
                   error="\n".join(errors) or None)


# --- values and their units ----------------------------------------------------------------------------
def exact(value: Any) -> Any:
    """The value a check compares: a figure rounded for display (stats.rounded) keeps its exact value."""
    return getattr(value, "exact", value)


def is_missing(value: Any) -> bool:
    """Not measured: absent, None or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _digits(x: float, significant: int = 3) -> str:
    """x in a few significant digits, without an exponent for large numbers or trailing zeros."""
    if isinstance(x, int):
        return str(x)
    if abs(x) >= 10 ** significant:
        return f"{x:.0f}"
    return f"{x:.{significant}g}"


def fmt(value: Any, unit: str = "") -> str:
    """A measured value or limit for people: '%' and 'points' show fractions x100, 'x' a ratio, 's'/'ms'/...
    a number with its unit; a list shows its length and first items ('names': its items, 'count': its length)."""
    if is_missing(value):
        return "not measured"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return ", ".join(f"{k} {fmt(v, unit)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [str(x) for x in value]
        if unit == "names":
            return ", ".join(items) or "none"
        if unit == "count":
            return str(len(items))
        shown = ", ".join(items[:6]) + (", ..." if len(items) > 6 else "")
        return f"{len(items)}" + (f" ({shown})" if items else "")
    if unit == "%":
        return _digits(value * 100, 4) + "%"
    if unit == "points":
        return _digits(value * 100) + " points"
    if unit == "x":
        return _digits(value) + "x"
    return _digits(value) + (f" {unit}" if unit and unit not in ("names", "count") else "")


# --- limits ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class P:
    """A limit that is one of the claim's parameters (so `--param healthy=0.95` moves it, and the rule says so),
    plus an offset where the rule is written that way (1 + plateau_growth)."""

    name: str
    plus: float = 0

    def value(self, measured: dict[str, Any], params: dict[str, Any]) -> Any:
        return params[self.name] + self.plus if self.plus else params[self.name]

    def text(self, params: dict[str, Any], unit: str) -> str:
        return fmt(self.value({}, params), unit)


@dataclass(frozen=True)
class M:
    """A limit that is another measured value: a bound the run itself determined (from its timers, say)."""

    key: str
    words: str

    def value(self, measured: dict[str, Any], params: dict[str, Any]) -> Any:
        return exact(measured.get(self.key))

    def text(self, params: dict[str, Any], unit: str) -> str:
        return self.words.format(**params)


OPS: dict[str, Callable[[Any, Any], bool]] = {"<": operator.lt, "<=": operator.le, "==": operator.eq,
                                              "!=": operator.ne, ">=": operator.ge, ">": operator.gt}
SHOWN_OP = {"==": "="}            # how the stated rule and the reasons write an op


def compare(value: Any, op: str, limit: Any) -> bool:
    """value op limit; a collection against a number compares its length, two collections compare as sets."""
    collections = (list, tuple, set, frozenset)
    if isinstance(value, collections):
        if isinstance(limit, collections):
            return OPS[op](set(value), set(limit))
        value = len(value)
    return bool(OPS[op](value, limit))


@dataclass(frozen=True)
class Outcome:
    """One check judged: YES, NO, UNKNOWN (not measured: inconclusive) or SKIP, and the reason line."""

    state: str
    reason: str


# --- checks -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Scope:
    """Where a check applies: every case, only `cases`, or (across) once all `cases` ran, on the merged values."""

    gate: bool = False                  # failing (or not measured) makes the verdict inconclusive, not refuted
    across: bool = False                # a cross-case check: judged in conclude() on "<case>.<key>" values
    cases: tuple[str, ...] = ()

    def applies(self, case: str | None, ran: Collection[str] = ()) -> bool:
        """Per-case checks to their cases (case given); cross-case ones when every case they name ran.
        A name may be a pattern ("distributed-*")."""
        if self.across:
            return case is None and all(fnmatch.filter(ran, c) for c in self.cases)
        return case is not None and (not self.cases or any(fnmatch.fnmatchcase(case, c) for c in self.cases))

    def label(self) -> str:
        """How the stated rule marks the scope: '(one-server) ', '(across distributed-1, distributed-2) '."""
        if self.across:
            return f"(across {', '.join(self.cases) or 'cases'}) "
        return f"({', '.join(self.cases)}) " if self.cases else ""


@dataclass(frozen=True)
class Check(Scope):
    """measured[key] op limit: e.g. Check("fault_success", "==", 0, "success while the web tier is down", "%")."""

    key: str
    op: str                             # one of OPS, or PRESENT
    limit: Any                          # a literal, P("param") or M("measured key", "words")
    what: str                           # plain words for the value ({param} placeholders are filled)
    unit: str = ""                      # "%", "points", "s", "ms", "x", "req/s", ... (see fmt)
    missing: str = INCONCLUSIVE         # what a value not measured makes of this check: INCONCLUSIVE, REFUTED or SKIP
    absent: str = "not measured"        # the words for that
    fail: Union[str, Callable[[dict[str, Any], dict[str, Any]], str]] = ""  # a gate's reason when it fails

    def __post_init__(self) -> None:
        if self.op not in OPS and self.op != PRESENT:
            raise ValueError(f"check {self.key}: op must be one of {sorted(OPS)} or {PRESENT!r}, not {self.op!r}")
        if self.missing not in (INCONCLUSIVE, REFUTED, SKIP):
            raise ValueError(f"check {self.key}: missing must be inconclusive, refuted or skip")

    def _limit_text(self, params: dict[str, Any]) -> str:
        return self.limit.text(params, self.unit) if isinstance(self.limit, (P, M)) else fmt(self.limit, self.unit)

    def describe(self, params: dict[str, Any]) -> str:
        """The check as the stated rule words it."""
        what = self.what.format(**params)
        if self.op == PRESENT:
            return f"{what} found"
        if self.limit is True:
            return what
        if self.limit is False:
            return f"not {what}"
        return f"{what} {SHOWN_OP.get(self.op, self.op)} {self._limit_text(params)}"

    def evaluate(self, measured: dict[str, Any], params: dict[str, Any]) -> Outcome:
        """Judge measured[key]; the reason names the value, the measurement and the limit."""
        what = self.what.format(**params)
        value = exact(measured.get(self.key))
        if is_missing(value):
            return {INCONCLUSIVE: Outcome(UNKNOWN, f"{what}: {self.absent}"),
                    REFUTED: Outcome(NO, f"{what}: NO ({self.absent})"), SKIP: Outcome(SKIP, "")}[self.missing]
        shown = fmt(measured.get(self.key), self.unit)
        if self.op == PRESENT:
            return Outcome(YES, f"{what}: yes ({shown})")
        limit = self.limit.value(measured, params) if isinstance(self.limit, (P, M)) else self.limit
        if is_missing(limit):
            return Outcome(UNKNOWN, f"{what}: its limit ({self._limit_text(params)}) was not measured")
        ok = compare(value, self.op, limit)
        evidence = "" if isinstance(limit, bool) else \
            f"{shown}, needs {SHOWN_OP.get(self.op, self.op)} {fmt(limit, self.unit)}"
        if not ok and self.gate and self.fail:
            text = self.fail(measured, params) if callable(self.fail) else self.fail.format(**params)
            return Outcome(NO, text + (f" ({what} {evidence})" if evidence else ""))
        return Outcome(YES if ok else NO, f"{what}: {'yes' if ok else 'NO'}" + (f" ({evidence})" if evidence else ""))


@dataclass(frozen=True)
class Joined(Scope):
    """Several checks as one: all of them (mode 'all') or at least one (mode 'any')."""

    what: str
    parts: tuple[Check, ...]
    mode: str = "all"

    def describe(self, params: dict[str, Any]) -> str:
        return f"{self.what.format(**params)} ({f' {self.mode_word} '.join(p.describe(params) for p in self.parts)})"

    @property
    def mode_word(self) -> str:
        return "and" if self.mode == "all" else "or"

    def evaluate(self, measured: dict[str, Any], params: dict[str, Any]) -> Outcome:
        outs = [o for o in (p.evaluate(measured, params) for p in self.parts) if o.state != SKIP]
        states = {o.state for o in outs}
        if not outs:
            return Outcome(SKIP, "")
        if self.mode == "all":
            state = UNKNOWN if UNKNOWN in states else NO if NO in states else YES
        else:
            state = YES if YES in states else UNKNOWN if UNKNOWN in states else NO
        word = {YES: "yes", NO: "NO", UNKNOWN: "not measured"}[state]
        return Outcome(state, f"{self.what.format(**params)}: {word} ({'; '.join(o.reason for o in outs)})")


Rule = Union[Check, Joined]


def gate(key: str, op: str, limit: Any, what: str, unit: str = "", **kw: Any) -> Check:
    """A precondition: when it fails (or is not measured) the verdict is inconclusive."""
    return Check(key, op, limit, what, unit, gate=True, **kw)


def unhealthy(text: str, key: str = "baseline_failures") -> Callable[[dict[str, Any], dict[str, Any]], str]:
    """A baseline gate's reason that says what failed and when (stats.failure_summary under `key`)."""
    return lambda m, p: f"{text}: {m[key]}" if m.get(key) else text


def all_of(what: str, *parts: Check, **scope: Any) -> Joined:
    """One check that holds when every part holds (reported as one line: 'what: yes/NO (part; part)')."""
    return Joined(what, parts, "all", **scope)


def any_of(what: str, *parts: Check, **scope: Any) -> Joined:
    """One check that holds when any part holds."""
    return Joined(what, parts, "any", **scope)


def decide(checks: Iterable[Rule], measured: dict[str, Any], params: dict[str, Any], case: str | None = None,
           ran: Collection[str] = ()) -> tuple[str, list[str]]:
    """(verdict, reasons) by the checks that apply to case (case None: the cross-case ones, given the cases
    that ran). A gate that fails or was not measured: inconclusive, with its reason(s). Otherwise every check
    is reported; any not measured: inconclusive; else any failing: refuted; else supported."""
    rules = [c for c in checks if c.applies(case, ran)]
    blocked = [o for o in (g.evaluate(measured, params) for g in rules if g.gate) if o.state in (NO, UNKNOWN)]
    if blocked:
        return INCONCLUSIVE, [o.reason for o in blocked]
    outs = [o for o in (c.evaluate(measured, params) for c in rules if not c.gate) if o.state != SKIP]
    states = {o.state for o in outs}
    verdict = INCONCLUSIVE if UNKNOWN in states else REFUTED if NO in states else SUPPORTED
    return verdict, [o.reason for o in outs]


def rule_text(procedure: str, checks: Sequence[Rule], params: dict[str, Any]) -> str:
    """The stated rule: how it is measured (procedure), then the declared checks and gates in words."""
    def listed(rules: list[Rule]) -> str:
        return "; ".join(r.label() + r.describe(params) for r in rules)
    tests = [c for c in checks if not c.gate]
    gates = [c for c in checks if c.gate]
    parts = [procedure.strip().rstrip(".")] if procedure.strip() else []
    if tests:
        parts.append(f"Supported when: {listed(tests)}; else refuted")
    if gates:
        parts.append(f"Inconclusive unless: {listed(gates)}")
    text = ". ".join(parts)
    return text[:1].upper() + text[1:] + "." if text else ""


# --- key figures and the one-sentence finding --------------------------------------------------------------
@dataclass(frozen=True)
class Figure:
    """A key figure of a claim: its plain name, unit, and how close a reproduction must come to a reference
    run. Absolute figures that depend on the machine (req/s, ms) get a relative tolerance (rel_tol), or none;
    fractions, counts and the claim's own ratios an absolute one (abs_tol). Either tolerance suffices."""

    name: str
    unit: str = ""
    rel_tol: float | None = None       # agrees when |value / reference - 1| <= rel_tol
    abs_tol: float | None = None       # agrees when |value - reference| <= abs_tol

    def agrees(self, value: Any, reference: Any) -> bool | None:
        """Does value reproduce reference? None when not compared (no tolerance declared, or a value missing).
        Figures that are not numbers (the ports found open) must be equal (lists as sets)."""
        if (self.rel_tol is None and self.abs_tol is None) or is_missing(value) or is_missing(reference):
            return None
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (value, reference)):
            return compare(value, "==", reference) if isinstance(value, (list, tuple, set)) else value == reference
        if self.abs_tol is not None and abs(value - reference) <= self.abs_tol + 1e-12:
            return True
        return self.rel_tol is not None and reference != 0 and abs(value / reference - 1) <= self.rel_tol + 1e-12

    def tolerance(self) -> str:
        """The tolerance in words ('+-1 points', '+-20%', 'not compared')."""
        words = ([f"+-{fmt(self.abs_tol, self.unit)}"] if self.abs_tol is not None else []) + \
                ([f"+-{_digits(self.rel_tol * 100)}% of the reference"] if self.rel_tol is not None else [])
        return " or ".join(words) or "not compared"


PLACEHOLDER = re.compile(r"\{([^{}:]+)(?::([^{}]*))?\}")


def fill(template: str, measured: dict[str, Any], figures: dict[str, Figure]) -> str | None:
    """template with each {key} (or {key:unit}) replaced by measured[key] in its figure's unit; None when a
    value is missing."""
    missing = False

    def one(m: re.Match[str]) -> str:
        nonlocal missing
        key, unit = m.group(1), m.group(2)
        value = measured.get(key)
        if is_missing(value):
            missing = True
            return ""
        return fmt(value, unit if unit is not None else figures[key].unit if key in figures else "")
    text = PLACEHOLDER.sub(one, template)
    return None if missing else text


def summary_of(clauses: Sequence[str], v: Verdict, figures: dict[str, Figure], title: str,
               why: str | None = None) -> str:
    """One sentence stating the finding: the clauses whose values were all measured, joined; when none is
    (or the verdict is inconclusive: its numbers cannot be trusted), the title, the verdict and why (default:
    its first reason)."""
    if v.verdict != INCONCLUSIVE:
        filled = [c for c in (fill(t, v.measured, figures) for t in clauses) if c]
        if filled:
            text = "; ".join(filled)
            return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
    why = why or (v.reasons[0] if v.reasons else "")
    return f"{title}: {v.verdict}" + (f" ({why.rstrip('.')})" if why else "") + "."
