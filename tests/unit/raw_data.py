"""Synthetic raw data for judging claims without a lab: what run_case() would have written."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from experiments import registry
from experiments.base import record_case

T0 = 1_700_000_000.0


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_cpu(case_dir: Path, t0: float, t1: float, busy: float) -> None:
    """The machine's CPU samples (every 0.25 s) at a constant busy fraction."""
    n = int((t1 - t0) / 0.25) + 1
    write_csv(case_dir / "cpu.csv", ["t", "busy"], [[f"{t0 + i * 0.25:.3f}", busy] for i in range(n)])


def new_case(tmp: Path, slug: str, case: str, overrides: dict | None = None, **lab: Any):
    """A run directory with one recorded case of slug: (experiment, raw dir, case dir)."""
    exp = registry.get(slug)
    params = exp.params(overrides)
    raw = tmp / "run" / "raw"
    c = next(c for c in exp.all_cases(params) if c.name == case)
    record_case(raw, slug, params, c)
    (raw / case).mkdir(parents=True, exist_ok=True)
    (raw / case / "lab.json").write_text(json.dumps({"design": c.design, **lab}))
    return exp, raw, raw / case
