"""`weblab run`: run claims (optionally repeated), each into results/<slug>/<run-id>/, then judge from raw data."""
from __future__ import annotations

import json
import time
import traceback
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from experiments import junit as junit_xml
from experiments import metadata, progress, registry, reproduce
from experiments.base import ERROR_FILE, Experiment, read_run_info, record_case
from experiments.verdict import INCONCLUSIVE, REFUTED, SUPPORTED, Verdict, inconclusive

LabFactory = Callable[[str, dict[str, Any]], AbstractContextManager[Any]]
SUMMARY_FILE = "repeat-summary.json"


@dataclass
class RunResult:
    """One finished run of one claim."""

    slug: str
    claim: str
    title: str
    run_id: str
    run_dir: Path
    verdict: Verdict
    seconds: float
    repeat: int = 1
    of: int = 1


def new_run_id(slug_dir: Path) -> str:
    """A sortable, unique run id: UTC time to the millisecond, suffixed if that folder exists."""
    now = datetime.now(timezone.utc)
    base = f"{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}"
    run_id, n = base, 1
    while (slug_dir / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def check(slugs: list[str], params: dict[str, dict[str, Any]] | None = None) -> None:
    """Raise ValueError naming what is wrong with a slug's parameters or cases, before any lab starts."""
    for slug in registry.expand(slugs):
        exp = registry.get(slug)
        exp.cases(exp.params((params or {}).get(slug)))


def run(slugs: list[str], repeat: int = 1, out: Path = Path("results"), junit: Path | None = None,
        lab_factory: LabFactory | None = None, params: dict[str, dict[str, Any]] | None = None,
        progress_file: Path | None = None) -> list[RunResult]:
    """Run each slug (or 'all') repeat times with a lab from lab_factory; write JUnit if asked; progress_file:
    where the progress lines also go (the live view reads them), removed when the run ends."""
    if lab_factory is None:
        raise ValueError("run() needs a lab_factory(design, lab_params) context manager")
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    slugs = registry.expand(slugs)
    check(slugs, params)  # a typo in the last claim's parameters must not surface after an hour of runs
    results: list[RunResult] = []
    t0 = time.monotonic()
    progress.record_to(progress_file)
    try:
        _run_all(slugs, repeat, Path(out), lab_factory, params, results)
    finally:
        progress.set_context("")
        progress.say(f"{len(results)} run(s) in {time.monotonic() - t0:.0f} s")
        if progress_file is not None:
            progress.record_to(None)
    if junit:
        junit_xml.write(results, Path(junit))
    return results


def _run_all(slugs: list[str], repeat: int, out: Path, lab_factory: LabFactory,
             params: dict[str, dict[str, Any]] | None, results: list[RunResult]) -> None:
    for i, slug in enumerate(slugs, 1):
        batch: list[RunResult] = []
        for r in range(1, repeat + 1):
            progress.set_context(f"{slug} [{i}/{len(slugs)}]" + (f" run {r}/{repeat}" if repeat > 1 else ""))
            res = run_one(slug, out, lab_factory, (params or {}).get(slug))
            res.repeat, res.of = r, repeat
            progress.say(f"{res.verdict.verdict.upper()} in {res.seconds:.0f} s -> {res.run_dir}",
                         slug=slug, claim=res.claim, verdict=res.verdict.verdict, summary=res.verdict.summary)
            batch.append(res)
        if repeat > 1:
            summary = summarise(batch)
            (batch[-1].run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
            progress.say(f"{repeat} runs: verdicts agree {summary['agreement']}" if summary["agreed"] else
                         f"{repeat} runs: verdicts DISAGREE ({summary['agreement']} {summary['verdicts'][0]}): " +
                         "; ".join(f"run {d['run']} {d['verdict']}: {d['why']}" for d in summary["differed"]))
        results += batch


def run_one(slug: str, out: Path, lab_factory: LabFactory, overrides: dict[str, Any] | None = None) -> RunResult:
    """One run of one claim: metadata, a lab per case, raw data, then the analysis."""
    exp = registry.get(slug)
    params = exp.params(overrides)
    slug_dir = out / slug
    slug_dir.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id(slug_dir)
    run_dir = slug_dir / run_id
    raw = run_dir / "raw"
    raw.mkdir(parents=True)
    meta_path = run_dir / "metadata.json"
    metadata.write(meta_path, metadata.collect(exp.slug, exp.claim, run_id, params, metadata.now()))
    t0 = time.monotonic()
    for case in exp.cases(params):
        progress.say(f"case {case.name}: starting lab {case.design} {case.lab_params or ''}".rstrip())
        try:
            with lab_factory(case.design, case.lab_params) as lab:
                progress.say(f"case {case.name}: lab ready, measuring")
                exp.run(lab, raw, params, case)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a lab that never became ready, a tool that failed: judged inconclusive
            record_case(raw, exp.slug, params, case)
            (raw / case.name).mkdir(exist_ok=True)
            (raw / case.name / ERROR_FILE).write_text(f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
            progress.say(f"case {case.name}: FAILED: {type(exc).__name__}: {exc}")
    verdict = analyse(run_dir, exp)
    labs = [_lab_record(raw / c["name"]) for c in (read_run_info(raw) or {"cases": []})["cases"]]
    metadata.finish(meta_path, labs=labs, seconds=round(time.monotonic() - t0, 1))
    return RunResult(exp.slug, exp.claim, exp.title, run_id, run_dir, verdict, time.monotonic() - t0)


def analyse(run_dir: Path, exp: Experiment | None = None) -> Verdict:
    """Re-run only the analysis of a finished run: redraw plots/, rewrite verdict.json, return it."""
    run_dir = Path(run_dir)
    raw = run_dir / "raw"
    if exp is None:
        info = read_run_info(raw)
        slug = info["slug"] if info else run_dir.parent.name
        exp = registry.get(slug)
    try:
        verdict = exp.analyse(raw, run_dir / "plots")
    except Exception as exc:  # a bug in an analysis must not lose the run
        verdict = inconclusive(exp.rule_text(exp.params()), f"analysis failed: {type(exc).__name__}: {exc}",
                               error=traceback.format_exc())
        verdict.slug, verdict.claim = exp.slug, exp.claim
    verdict.save(run_dir / "verdict.json")
    return verdict


def _lab_record(case_dir: Path) -> dict[str, Any]:
    """The lab facts of one case for metadata.json."""
    path = case_dir / "lab.json"
    if not path.exists():
        return {"case": case_dir.name, "lab": None}
    lab = json.loads(path.read_text())
    return {k: lab.get(k) for k in ("case", "design", "lab_run_id", "lab_params", "entry_ip")}


def summarise(batch: list[RunResult]) -> dict[str, Any]:
    """Repeat agreement of one claim's runs: do the verdicts agree (N/N, or which differed and why), and
    per key figure the median, spread (IQR) and coefficient of variation (experiments.reproduce)."""
    verdicts = [r.verdict for r in batch]
    agree = reproduce.agreement(verdicts)
    return {"slug": batch[0].slug, "runs": [r.run_id for r in batch], "verdicts": [v.verdict for v in verdicts],
            "agreed": agree["agreed"], "agreement": agree["count"], "differed": agree["differed"],
            "values": reproduce.figures_over(batch[0].slug, verdicts)}


def exit_code(results: list[RunResult]) -> int:
    """0 when every run is supported, 1 when any is refuted, 2 when only inconclusive ones spoil it."""
    kinds = {r.verdict.verdict for r in results}
    return 1 if REFUTED in kinds else 2 if INCONCLUSIVE in kinds else 0 if kinds <= {SUPPORTED} else 1
