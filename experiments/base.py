"""The Experiment contract: run() drives a Lab and writes raw data; analyse() judges from raw data alone."""
from __future__ import annotations

import json
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, ContextManager, Sequence

from experiments import fidelity, progress
from experiments import verdict as verdicts
from experiments.verdict import INCONCLUSIVE, Figure, Rule, Verdict, combine, decide, inconclusive, worst

RUN_INFO = "run.json"      # raw/run.json: slug, effective parameters, the cases that ran
ERROR_FILE = "error.txt"   # raw/<case>/error.txt: why a case produced no (complete) data


def _word(text: str) -> Any:
    """One item of a comma list: a number or true/false where it parses as one, else the text."""
    try:
        return json.loads(text.strip())
    except ValueError:
        return text.strip()


@dataclass(frozen=True)
class Case:
    """One lab an experiment measures: a design (half of a contrast claim) with its lab parameters."""

    name: str
    design: str
    lab_params: dict[str, Any] = field(default_factory=dict)


class Experiment:
    """Base of every claim: subclasses set the class attributes and write run_case() and judge()."""

    slug: ClassVar[str] = ""
    claim: ClassVar[str] = ""          # "C1"
    title: ClassVar[str] = ""
    statement: ClassVar[str] = ""      # the claim as docs/claims.md words it
    design: ClassVar[str] = "one-server"
    defaults: ClassVar[dict[str, Any]] = {}
    timing_sensitive: ClassVar[bool] = True     # False: a saturated machine cannot void the verdict
    # What the verdict rests on: verdict.Check / gate / all_of / any_of, per case or across cases. judge()
    # measures, verdict() applies these, and the stated rule (rule_text) is written from the same declarations.
    checks: ClassVar[tuple[Rule, ...]] = ()
    # Key figures: measured key -> plain name, unit and the tolerance a reproduction must meet (summarised
    # over --repeat; every number when empty). Keys of a contrast claim are "<case>.<key>".
    figures: ClassVar[dict[str, Figure]] = {}
    # The finding in one sentence: clauses with {key} placeholders filled from the verdict's measured values
    # (in the figure's unit, or {key:unit}); a clause whose values are missing is left out (verdict.summary_of).
    summary: ClassVar[tuple[str, ...]] = ()

    sampler_factory: Callable[[Path], ContextManager[Any]] = fidelity.CpuSampler

    # --- parameters and cases ---------------------------------------------------------------
    def params(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults (+ seed, cases) updated with overrides; unknown names are an error."""
        base = {"seed": 1, "cases": None, **self.defaults}
        unknown = set(overrides or {}) - set(base)
        if unknown:
            raise ValueError(f"{self.slug}: unknown parameter(s) {sorted(unknown)}; known: {sorted(base)}")
        return {**base, **{k: self._coerce(k, base[k], v) for k, v in (overrides or {}).items()}}

    def _coerce(self, name: str, default: Any, value: Any) -> Any:
        """A value given on the command line in the default's shape: `servers=1,2,4` for a list; a word
        where a number (or true/false) belongs is an error naming the parameter and an example."""
        if isinstance(default, list) and not isinstance(value, list):
            value = [_word(w) for w in value.split(",")] if isinstance(value, str) else [value]
        example = f"example: --param {name}={','.join(map(str, default)) if isinstance(default, list) else default}"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{self.slug}: parameter {name} takes true or false, not {value!r}")
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{self.slug}: parameter {name} takes a number, not {value!r} ({example})")
        elif isinstance(default, list) and default and all(isinstance(d, (int, float)) for d in default):
            if not value or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
                raise ValueError(f"{self.slug}: parameter {name} takes numbers, not {value!r} ({example})")
        return value

    def lab_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Lab parameters for the default case (e.g. CPU limits)."""
        return {}

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        """Every case this claim knows; contrast claims add a Case per design half."""
        return [Case(self.design, self.design, self.lab_params(params))]

    def cases(self, params: dict[str, Any]) -> list[Case]:
        """The cases to run: all of them, or those named in params['cases']."""
        every = self.all_cases(params)
        wanted = params.get("cases")
        if not wanted:
            return every
        chosen = [c for c in every if c.name in wanted]
        if len(chosen) != len(set(wanted)):
            raise ValueError(f"{self.slug}: unknown case(s) in {wanted}; known: {[c.name for c in every]}")
        return chosen

    # --- running (needs a lab) ----------------------------------------------------------------
    def run(self, lab: Any, raw_dir: Path, params: dict[str, Any], case: Case | None = None) -> Path:
        """Run one case in lab, writing raw data to raw_dir/<case>/; returns that folder."""
        if case is None:
            case = next((c for c in self.cases(params) if c.design == lab.design), None)
            if case is None:
                raise ValueError(f"{self.slug} has no case for design {lab.design!r}")
        out = Path(raw_dir) / case.name
        out.mkdir(parents=True, exist_ok=True)
        record_case(Path(raw_dir), self.slug, params, case)
        write_lab_info(lab, out, case)
        with self.sampler_factory(out / fidelity.CPU_FILE):
            self.run_case(lab, case, out, params)
        return out

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        """Drive the lab and write raw data (CSV, JSON, pcap, tool output) into out."""
        raise NotImplementedError

    # --- analysis (no lab) --------------------------------------------------------------------
    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots: Path) -> Verdict:
        """Metrics, verdict and plots for one case from its raw folder."""
        raise NotImplementedError

    def analyse(self, raw_dir: Path, plots_dir: Path | None = None) -> Verdict:
        """Judge every case that ran, apply the fidelity rule, and merge into one Verdict."""
        raw_dir = Path(raw_dir)
        plots_dir = Path(plots_dir) if plots_dir else raw_dir.parent / "plots"
        info = read_run_info(raw_dir)
        parts: list[tuple[str, Verdict]] = []
        if info is None:
            v = inconclusive(self.rule_text({}), f"no {RUN_INFO} in {raw_dir}: the run wrote no data")
        else:
            params = {**self.params(), **info["params"]}
            parts = [(c.name, self._judge_case(c, raw_dir / c.name, params, plots_dir))
                     for c in (Case(**c) for c in info["cases"])]
            v = self.conclude(parts, params) if parts else inconclusive(self.rule_text(params), "no case ran")
        v.slug, v.claim = self.slug, self.claim
        v.summary = self.summary_text(v, parts)
        base = plots_dir.parent
        v.plots = [str(Path(p).relative_to(base)) if Path(p).is_absolute() else p for p in v.plots]
        return v

    def conclude(self, parts: list[tuple[str, Verdict]], params: dict[str, Any]) -> Verdict:
        """Merge per-case verdicts, then judge the cross-case checks (capacity ratios) on the merged values
        plus those across_measured() adds; claims that also report aggregates extend this."""
        v = combine(parts)
        ran = [name for name, _ in parts]
        across = [c for c in self.rule_checks(params) if c.applies(None, ran)]
        if not across or v.verdict == INCONCLUSIVE:
            return v
        v.measured.update(self.across_measured(dict(parts), params))
        kind, reasons = decide(across, v.measured, params, ran=ran)
        v.verdict = worst(v.verdict, kind)
        v.reasons += reasons
        return v

    def across_measured(self, by_case: dict[str, Verdict], params: dict[str, Any]) -> dict[str, Any]:
        """Values the cross-case checks compare, computed from the cases' verdicts (e.g. a capacity ratio)."""
        return {}

    # --- the declarations: checks, rule, summary -----------------------------------------------------------
    def procedure(self, params: dict[str, Any]) -> str:
        """How the claim is measured, in words; the stated rule adds the checks to it."""
        return ""

    def rule_checks(self, params: dict[str, Any]) -> tuple[Rule, ...]:
        """The checks that judge this claim (claims whose checks depend on parameters override this)."""
        return self.checks

    def rule_text(self, params: dict[str, Any]) -> str:
        """The verdict rule in words, made from procedure() and the checks (also when nothing could be measured)."""
        p = {**self.params(), **params}
        return verdicts.rule_text(self.procedure(p), self.rule_checks(p), p) or self.statement

    def verdict(self, case: Case, measured: dict[str, Any], params: dict[str, Any], plots: list[Any] | None = None,
                notes: list[str] | None = None) -> Verdict:
        """Judge one case's measured values by the declared checks; notes are reported lines, not judged."""
        kind, reasons = decide(self.rule_checks(params), measured, params, case=case.name)
        return Verdict(kind, self.rule_text(params), measured, reasons + list(notes or []),
                       [str(p) for p in plots or []])

    def summary_text(self, v: Verdict, parts: Sequence[tuple[str, Verdict]] = ()) -> str:
        """The one-sentence finding of a verdict of this claim; when it is inconclusive, why: the first reason
        of the first inconclusive case, else the first reason conclude() added."""
        def named(case: str, reason: str) -> str:  # as combine() words a case's reason
            return f"{case}: {reason}" if len(parts) > 1 else reason
        why = next((named(n, p.reasons[0]) for n, p in parts if p.verdict == INCONCLUSIVE and p.reasons), None)
        if why is None:
            of_cases = {named(n, r) for n, p in parts for r in p.reasons}
            why = next((r for r in v.reasons if r not in of_cases), None)
        return verdicts.summary_of(self.summary, v, self.figures, self.title or self.statement, why)

    def _judge_case(self, case: Case, raw: Path, params: dict[str, Any], plots: Path) -> Verdict:
        """judge() guarded: missing data, failed runs and a saturated machine become inconclusive."""
        rule = self.rule_text(params)
        if (raw / ERROR_FILE).exists():
            text = (raw / ERROR_FILE).read_text()
            return inconclusive(rule, f"the run did not complete: {text.strip().splitlines()[0] if text.strip() else '?'}",
                                error=text)
        plots.mkdir(parents=True, exist_ok=True)
        try:
            v = self.judge(case, raw, params, plots)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            return inconclusive(rule, f"raw data unusable: {exc}", error=traceback.format_exc())
        return fidelity.apply(v, raw, self.timing_sensitive)


def record_case(raw_dir: Path, slug: str, params: dict[str, Any], case: Case) -> None:
    """Add case to raw/run.json (written before the case runs, so a crash still leaves it)."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    info = read_run_info(raw_dir) or {"slug": slug, "params": params, "cases": []}
    info["params"] = params
    if case.name not in [c["name"] for c in info["cases"]]:
        info["cases"].append(asdict(case))
    (raw_dir / RUN_INFO).write_text(json.dumps(info, indent=2, default=str) + "\n")


def read_run_info(raw_dir: Path) -> dict[str, Any] | None:
    """raw/run.json, or None when absent."""
    path = Path(raw_dir) / RUN_INFO
    return json.loads(path.read_text()) if path.exists() else None


def write_lab_info(lab: Any, out: Path, case: Case) -> None:
    """raw/<case>/lab.json: what the analysis needs to know about the lab (addresses, entry point)."""
    hosts = list(lab.hosts())
    info = {"design": lab.design, "lab_run_id": getattr(lab, "run_id", None), "case": case.name,
            "lab_params": case.lab_params, "hosts": hosts,
            "ips": {h: _safe(lambda h=h: lab.ip(h)) for h in hosts},
            "entry_ip": _safe(lambda: lab.entry_ip)}
    (out / "lab.json").write_text(json.dumps(info, indent=2, default=str) + "\n")


def read_lab_info(raw: Path) -> dict[str, Any]:
    """raw/<case>/lab.json."""
    return json.loads((Path(raw) / "lab.json").read_text())


def _safe(get: Callable[[], Any]) -> Any:
    try:
        return get()
    except Exception:  # a host without an address is recorded as null, not a crash
        return None


def say(message: str) -> None:
    """Progress line for experiments (re-exported for claim modules)."""
    progress.say(message)


__all__ = ["Case", "Experiment", "record_case", "read_run_info", "read_lab_info", "say"]
