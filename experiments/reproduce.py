"""Reproducing results: how repeated runs agree, the reference results, `weblab compare`, run bundles.

- repeat agreement: over `--repeat N` runs of a claim, whether the verdicts agree (which differed and
  why) and, per key figure, the median, the spread (IQR) and the coefficient of variation;
- the reference (results/reference/ in the repository): per claim, the verdicts and key figures of
  `weblab run all --repeat 3` on the project's machines, with the metadata of those runs;
- compare: a run (a run folder, a results folder, or a bundle) against the reference, figure by figure,
  with the tolerance each claim declares (experiments.verdict.Figure);
- bundles: one run packed as a .tar.gz (raw data, metadata, plots, verdict), which `weblab run
  --analyse-only` re-judges on another machine without root or a lab.
Pure analysis of files: nothing here needs a lab.
"""
from __future__ import annotations

import html
import io
import json
import statistics
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from experiments import registry
from experiments.verdict import Verdict, is_missing

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"
BUNDLE_MEMBERS = ("raw", "plots", "metadata.json", "verdict.json", "repeat-summary.json")


class ReproduceError(ValueError):
    """Input that cannot be compared or packed; the message says what is wrong."""


# --- repeat agreement --------------------------------------------------------------------------
def spread(xs: list[float]) -> dict[str, float]:
    """median, IQR (q1..q3), min, max and coefficient of variation of some values."""
    xs = sorted(xs)
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else (xs[0], xs[0], xs[0])
    mean = statistics.fmean(xs)
    cv = statistics.stdev(xs) / abs(mean) if len(xs) > 1 and mean else 0.0
    return {"median": statistics.median(xs), "q1": q1, "q3": q3, "iqr": q3 - q1, "min": xs[0], "max": xs[-1],
            "cv": cv, "n": len(xs)}


def agreement(verdicts: list[Verdict]) -> dict[str, Any]:
    """Do repeated runs' verdicts agree? N/N, or which runs differed from the most common verdict and why."""
    kinds = [v.verdict for v in verdicts]
    common = max(set(kinds), key=kinds.count)
    differed = [{"run": i + 1, "verdict": v.verdict, "why": (v.reasons or [""])[0]}
                for i, v in enumerate(verdicts) if v.verdict != common]
    return {"verdict": common, "agreed": not differed, "count": f"{kinds.count(common)}/{len(kinds)}",
            "differed": differed}


def figures_over(slug: str, verdicts: list[Verdict]) -> dict[str, dict[str, Any]]:
    """Per key figure of the claim (the measured numbers where it declares none): its spread over runs."""
    figures = registry.get(slug).figures
    numeric = sorted({k for v in verdicts for k, x in v.measured.items() if _is_number(x)})
    keys = [k for k in figures if k in numeric] or numeric
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        xs = [float(v.measured[key]) for v in verdicts if _is_number(v.measured.get(key))]
        if xs:
            out[key] = spread(xs)
            if key in figures:
                out[key].update(name=figures[key].name, unit=figures[key].unit)
    return out


# --- the reference ----------------------------------------------------------------------------
def reference_entry(slug: str, run_dirs: list[Path]) -> dict[str, Any]:
    """A claim's reference: the verdicts and key figures of its repeated runs, and their metadata."""
    verdicts = [Verdict.load(d / "verdict.json") for d in run_dirs]
    meta = [_json(d / "metadata.json") for d in run_dirs]
    figures = registry.get(slug).figures
    values = {k: [v.measured.get(k) for v in verdicts] for k in figures}
    return {"slug": slug, "claim": registry.get(slug).claim, "runs": [d.name for d in run_dirs],
            "agreement": agreement(verdicts), "figures": figures_over(slug, verdicts),
            "values": {k: xs for k, xs in values.items() if any(not is_missing(x) for x in xs)},
            "metadata": _machine(meta[-1]) if meta else {}}


def build_reference(results: Path, out: Path, runs: int = 3) -> list[Path]:
    """results/reference/<slug>.json for every claim in a results folder (its newest `runs` runs), and
    results/reference/README.md saying when and on what it was made."""
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for slug_dir in sorted(p for p in Path(results).iterdir() if p.is_dir() and p.name in registry.all_slugs()):
        run_dirs = sorted(d for d in slug_dir.iterdir() if (d / "verdict.json").is_file())[-runs:]
        if run_dirs:
            path = out / f"{slug_dir.name}.json"
            path.write_text(json.dumps(reference_entry(slug_dir.name, run_dirs), indent=2, default=str) + "\n")
            written.append(path)
    if not written:
        raise ReproduceError(f"{results} holds no claim runs (a results folder of `weblab run`)")
    meta = json.loads(written[-1].read_text())["metadata"]
    lines = ["# Reference results", "",
             f"The verdicts and key figures of `weblab run all --repeat {runs}`, made with `make reference` on "
             f"{meta.get('started', '?')[:10]}: {meta.get('machine', '?')}, kernel {meta.get('kernel', '?')}, "
             f"{meta.get('os', '?')}, weblab at git {meta.get('git', '?')}. One JSON file per claim; "
             "`weblab compare RUN` judges a run against them.", ""]
    (out / "README.md").write_text("\n".join(lines))
    return written


def load_reference(directory: Path = REFERENCE) -> dict[str, dict[str, Any]]:
    """slug -> its reference entry."""
    if not Path(directory).is_dir():
        raise ReproduceError(f"no reference results at {directory} (make them with: make reference)")
    out = {p.stem: _json(p) for p in sorted(Path(directory).glob("*.json"))}
    if not out:
        raise ReproduceError(f"{directory} holds no reference results (make them with: make reference)")
    return out


# --- compare ----------------------------------------------------------------------------------
@dataclass
class FigureRow:
    """One key figure of a run against the reference."""

    key: str
    name: str
    unit: str
    value: Any
    reference: Any
    tolerance: str
    agrees: bool | None      # None: not compared (no tolerance, or a value missing)


@dataclass
class ClaimRow:
    """One claim of a run against the reference."""

    slug: str
    claim: str
    verdict: str
    reference_verdict: str | None
    figures: list[FigureRow] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return (self.reference_verdict == self.verdict
                and all(f.agrees is not False for f in self.figures))

    def disagreements(self) -> list[str]:
        out = [] if self.reference_verdict == self.verdict else \
            [f"verdict {self.verdict} (reference {self.reference_verdict or 'none'})"]
        return out + [f"{f.name} ({f.key}) = {f.value} vs reference {f.reference} ({f.tolerance})"
                      for f in self.figures if f.agrees is False]


def compare_run(run_dir: Path, reference: dict[str, dict[str, Any]]) -> ClaimRow:
    """One run folder (results/<slug>/<run-id>) against its claim's reference."""
    verdict = Verdict.load(run_dir / "verdict.json")
    slug = verdict.slug or _json(run_dir / "raw" / "run.json").get("slug") or run_dir.parent.name
    try:
        exp = registry.get(slug)
    except KeyError:
        raise ReproduceError(f"{run_dir}: unknown claim {slug!r}") from None
    ref = reference.get(slug)
    row = ClaimRow(slug, exp.claim, verdict.verdict, ref["agreement"]["verdict"] if ref else None)
    for key, fig in exp.figures.items():
        if ref is None:
            break
        ref_value = _reference_value(ref, key)
        value = verdict.measured.get(key)
        if is_missing(value) and is_missing(ref_value):
            continue
        row.figures.append(FigureRow(key, fig.name, fig.unit, value, ref_value, fig.tolerance(),
                                     fig.agrees(value, ref_value)))
    return row


def compare(target: Path, reference_dir: Path = REFERENCE) -> list[ClaimRow]:
    """A run folder, a results folder (the newest run of each claim) or a bundle, against the reference."""
    reference = load_reference(reference_dir)
    with opened(target) as runs:
        return [compare_run(r, reference) for r in runs]


def _reference_value(ref: dict[str, Any], key: str) -> Any:
    """The reference's value of a figure: the median of its runs for numbers, else the first run's."""
    if key in ref.get("figures", {}):
        return ref["figures"][key]["median"]
    values = [v for v in ref.get("values", {}).get(key, []) if not is_missing(v)]
    return values[0] if values else None


def table(rows: list[ClaimRow]) -> str:
    """The comparison as a terminal table: one line per claim, one indented line per figure off."""
    lines = [f"{'claim':5} {'slug':22} {'verdict':13} {'reference':13} agrees"]
    for r in rows:
        lines.append(f"{r.claim:5} {r.slug:22} {r.verdict:13} {r.reference_verdict or '-':13} "
                     f"{'yes' if r.agrees else 'NO'}")
        for f in r.figures:
            mark = {True: "ok", False: "OFF", None: "-"}[f.agrees]
            lines.append(f"      {mark:3} {f.name}: {_show(f.value)} vs {_show(f.reference)} ({f.tolerance})")
    agree = sum(r.agrees for r in rows)
    lines.append(f"{agree} of {len(rows)} claims agree with the reference")
    return "\n".join(lines)


def html_page(rows: list[ClaimRow], title: str) -> str:
    """The comparison as one offline HTML page."""
    body = []
    for r in rows:
        cells = "".join(f"<tr class='{ {True: 'ok', False: 'off', None: 'na'}[f.agrees] }'><td>{html.escape(f.name)}"
                        f"</td><td>{html.escape(_show(f.value))}</td><td>{html.escape(_show(f.reference))}</td>"
                        f"<td>{html.escape(f.tolerance)}</td><td>{ {True: 'agrees', False: 'OFF', None: '-'}[f.agrees] }"
                        f"</td></tr>" for f in r.figures)
        body.append(f"<h2 class='{'ok' if r.agrees else 'off'}'>{html.escape(r.claim)} {html.escape(r.slug)}: "
                    f"{html.escape(r.verdict)} (reference {html.escape(r.reference_verdict or 'none')})</h2>"
                    f"<table><tr><th>figure</th><th>this run</th><th>reference</th><th>tolerance</th><th></th></tr>"
                    f"{cells}</table>")
    agree = sum(r.agrees for r in rows)
    return ("<!doctype html><meta charset='utf-8'><title>weblab compare</title><style>"
            "body{font-family:sans-serif;max-width:60em;margin:2em auto} table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.2em .5em} .ok{color:#1a7f37} .off{color:#cf222e}"
            "tr.off td{background:#ffebe9}</style>"
            f"<h1>{html.escape(title)}</h1><p>{agree} of {len(rows)} claims agree with the reference.</p>"
            + "".join(body))


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if is_missing(v) else str(v)


# --- bundles ----------------------------------------------------------------------------------
def bundle(run_dir: Path, out: Path) -> Path:
    """Pack one run (raw data, metadata, plots, verdict, the design's parameters) as out (.tar.gz)."""
    run_dir = Path(run_dir)
    if not (run_dir / "raw" / "run.json").is_file() or not (run_dir / "verdict.json").is_file():
        raise ReproduceError(f"{run_dir} is not a finished run (no raw/run.json or verdict.json): give a "
                             f"folder results/SLUG/RUN-ID as `weblab run` prints it")
    if not str(out).endswith(".tar.gz"):
        raise ReproduceError(f"{out}: a bundle is a .tar.gz file")
    if not Path(out).parent.is_dir():
        raise ReproduceError(f"cannot write {out}: {Path(out).parent} is not a folder")
    top = f"{run_dir.parent.name}-{run_dir.name}"
    with tarfile.open(out, "w:gz") as tar:
        for name in BUNDLE_MEMBERS:
            if (run_dir / name).exists():
                tar.add(run_dir / name, arcname=f"{top}/{name}")
        info = tarfile.TarInfo(f"{top}/BUNDLE.json")
        data = json.dumps({"slug": run_dir.parent.name, "run": run_dir.name, "format": 1}).encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return Path(out)


def unpack(path: Path, into: Path) -> Path:
    """Unpack a bundle safely (regular files and folders under one top folder only); its run folder."""
    try:
        tar = tarfile.open(path, "r:gz")
    except (OSError, tarfile.TarError) as e:
        raise ReproduceError(f"{path} is not a weblab bundle (.tar.gz): {e}") from None
    with tar:
        members = tar.getmembers()
        tops = {m.name.split("/", 1)[0] for m in members}
        for m in members:
            parts = Path(m.name).parts
            if (m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir()) or len(tops) != 1):
                raise ReproduceError(f"{path}: refusing member {m.name!r} (not a plain file of one run folder)")
        for m in members:
            target = into / m.name
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as src, open(target, "wb") as dst:
                dst.write(src.read())
    run = into / tops.pop()
    if not (run / "BUNDLE.json").is_file():
        raise ReproduceError(f"{path} is not a weblab bundle (no BUNDLE.json)")
    return run


@contextmanager
def opened(target: Path) -> Iterator[list[Path]]:
    """The run folders a compare target stands for: a run, a results folder's newest runs, or a bundle."""
    target = Path(target)
    if target.is_file():
        with tempfile.TemporaryDirectory(prefix="weblab-bundle-") as tmp:
            yield [unpack(target, Path(tmp))]
        return
    if not target.is_dir():
        raise ReproduceError(f"{target} does not exist: give a run folder, a results folder or a bundle")
    if (target / "verdict.json").is_file():
        yield [target]
        return
    newest = []
    for slug_dir in sorted(p for p in target.iterdir() if p.is_dir()):
        runs = sorted(d for d in slug_dir.iterdir() if (d / "verdict.json").is_file())
        if runs:
            newest.append(runs[-1])
    if not newest:
        raise ReproduceError(f"{target} holds no finished runs (run folders with a verdict.json)")
    yield newest


# --- helpers ----------------------------------------------------------------------------------
def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _machine(meta: dict[str, Any]) -> dict[str, Any]:
    """What a reference records of the machine and software its runs had (no host names)."""
    return {k: meta.get(k) for k in ("started", "machine", "kernel", "os", "python", "packages", "tools", "git")}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def main(argv: list[str] | None = None) -> int:
    """python -m experiments.reproduce RESULTS OUT: build the reference from a results folder."""
    import argparse
    ap = argparse.ArgumentParser(prog="python -m experiments.reproduce", description=main.__doc__)
    ap.add_argument("results", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--runs", type=int, default=3, help="the newest runs of each claim to take")
    args = ap.parse_args(argv)
    try:
        written = build_reference(args.results, args.out, args.runs)
    except ReproduceError as e:
        print(f"reference: {e}")
        return 2
    print(f"reference: {len(written)} claims in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
