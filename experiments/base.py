"""The Experiment contract: run() drives a Lab and writes raw data; analyse() judges from raw data alone."""
from __future__ import annotations

import json
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, ContextManager

from experiments import fidelity, progress
from experiments.verdict import Verdict, combine, inconclusive

RUN_INFO = "run.json"      # raw/run.json: slug, effective parameters, the cases that ran
ERROR_FILE = "error.txt"   # raw/<case>/error.txt: why a case produced no (complete) data


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
    key_values: ClassVar[tuple[str, ...]] = ()  # measured keys summarised over --repeat (all numbers if empty)
    timing_sensitive: ClassVar[bool] = True     # False: a saturated machine cannot void the verdict

    sampler_factory: Callable[[Path], ContextManager[Any]] = fidelity.CpuSampler

    # --- parameters and cases ---------------------------------------------------------------
    def params(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults (+ seed, cases) updated with overrides; unknown names are an error."""
        base = {"seed": 1, "cases": None, **self.defaults}
        unknown = set(overrides or {}) - set(base)
        if unknown:
            raise ValueError(f"{self.slug}: unknown parameter(s) {sorted(unknown)}; known: {sorted(base)}")
        return {**base, **(overrides or {})}

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
        if info is None:
            v = inconclusive(self.rule_text({}), f"no {RUN_INFO} in {raw_dir}: the run wrote no data")
        else:
            params = {**self.params(), **info["params"]}
            parts = [(c.name, self._judge_case(c, raw_dir / c.name, params, plots_dir))
                     for c in (Case(**c) for c in info["cases"])]
            v = self.conclude(parts, params) if parts else inconclusive(self.rule_text(params), "no case ran")
        v.slug, v.claim = self.slug, self.claim
        base = plots_dir.parent
        v.plots = [str(Path(p).relative_to(base)) if Path(p).is_absolute() else p for p in v.plots]
        return v

    def conclude(self, parts: list[tuple[str, Verdict]], params: dict[str, Any]) -> Verdict:
        """Merge per-case verdicts; contrast claims with cross-case rules (capacity ratios) override this."""
        return combine(parts)

    def rule_text(self, params: dict[str, Any]) -> str:
        """The verdict rule in words (used when nothing could be measured)."""
        return self.statement

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
