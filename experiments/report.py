"""`weblab report`: the newest run of every claim in one offline page (results/report.html) and Markdown."""
from __future__ import annotations

import base64
import html
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.verdict import Verdict

COLOURS = {"supported": "#1a7f37", "refuted": "#cf222e", "inconclusive": "#9a6700"}


@dataclass
class Entry:
    """The newest judged run of one claim."""

    slug: str
    run_dir: Path
    verdict: Verdict
    meta: dict[str, Any]
    summary: dict[str, Any] | None
    runs: int


def newest_runs(results: Path) -> list[Entry]:
    """For every results/<slug>/ the lexically newest run that has a verdict.json, in claim order."""
    entries = []
    for slug_dir in sorted(p for p in Path(results).iterdir() if p.is_dir()):
        runs = sorted(p for p in slug_dir.iterdir() if (p / "verdict.json").is_file())
        if not runs:
            continue
        newest = runs[-1]
        meta_path = newest / "metadata.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        summary_path = newest / "repeat-summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        entries.append(Entry(slug_dir.name, newest, Verdict.load(newest / "verdict.json"), meta, summary, len(runs)))
    return sorted(entries, key=lambda e: _claim_key(e.verdict.claim, e.slug))


def _claim_key(claim: str, slug: str) -> tuple[int, str]:
    m = re.fullmatch(r"C(\d+)", claim or "")
    return (int(m.group(1)) if m else 10**6, slug)


def _title(e: Entry) -> str:
    from experiments import registry
    try:
        exp = registry.get(e.slug)
        return exp.title or exp.statement
    except KeyError:
        return e.slug


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def plot_file(run_dir: Path, plot: str) -> Path:
    """Where a verdict's plot is: plots are stored relative to the run folder, but runs written with a relative
    --out kept the working-directory path (results/<slug>/<run>/plots/x.png): both resolve to the same file."""
    path = Path(plot)
    if path.is_absolute():
        return path
    direct = Path(run_dir) / path
    if direct.exists():
        return direct
    marker = (Path(run_dir).parent.name, Path(run_dir).name)
    for i in range(len(path.parts) - 1):
        if path.parts[i:i + 2] == marker:
            return Path(run_dir).joinpath(*path.parts[i + 2:])
    return path if path.exists() else direct


def plot_link(run_dir: Path, plot: str, results: Path) -> str:
    """The plot's path relative to results/ (what report.md links to)."""
    return Path(os.path.relpath(plot_file(run_dir, plot).resolve(), Path(results).resolve())).as_posix()


def markdown(entries: list[Entry], results: Path) -> str:
    """The report as Markdown, plots linked relative to results/."""
    lines = ["# weblab report", "", "| claim | slug | verdict | run |", "|---|---|---|---|"]
    for e in entries:
        lines.append(f"| {e.verdict.claim} | {e.slug} | **{e.verdict.verdict}** | {e.run_dir.relative_to(results)} |")
    for e in entries:
        v = e.verdict
        lines += ["", f"## {v.claim} {e.slug}: {v.verdict}", "", f"_{_title(e)}_", ""]
        lines += [v.summary, ""] if v.summary else []
        lines += [f"**Rule.** {v.rule}", ""]
        if v.reasons:
            lines += [f"- {r}" for r in v.reasons] + [""]
        if v.measured:
            lines += ["| case | measured | value |", "|---|---|---|"] + [
                f"| {x.case} | {'**' + x.name + '**' if x.figure else x.name} | {x.shown} |" for x in measured_values(e)] + [""]
        if e.summary:
            lines += [f"Repeat spread over {len(e.summary['runs'])} runs, verdicts "
                      f"{'agreed' if e.summary['agreed'] else 'DISAGREED'}: {', '.join(e.summary['verdicts'])}", "",
                      "| value | median | min | max |", "|---|---|---|---|"]
            lines += [f"| {k} | {_fmt(s['median'])} | {_fmt(s['min'])} | {_fmt(s['max'])} |"
                      for k, s in e.summary["values"].items()] + [""]
        for p in v.plots:
            lines += [f"![{Path(p).name}]({plot_link(e.run_dir, p, results)})", ""]
        lines += [f"Run {e.run_dir.name}, started {e.meta.get('started')}, git {(e.meta.get('git') or {}).get('revision')}", ""]
    return "\n".join(lines) + "\n"


# --- measured values for people ---------------------------------------------------------------------------
UNIT_SUFFIXES = (("_ms", "ms"), ("_s", "s"), ("_rps", "req/s"), ("_qps", "queries/s"), ("_mbps", "Mbit/s"),
                 ("_gbps", "Gbit/s"), ("_bytes", "bytes"), ("_mib", "MiB"), ("_kib", "KiB"))


@dataclass
class Value:
    """One measured value as the report shows it: its case, plain name, unit, formatted value, raw key."""

    case: str
    name: str
    unit: str
    shown: str
    key: str
    figure: bool


def _checks_by_key(exp: Any) -> dict[str, Any]:
    """measured key -> the check that names it (Joined checks' parts included)."""
    out: dict[str, Any] = {}
    for c in getattr(exp, "checks", ()):
        for part in getattr(c, "parts", (c,)):
            if getattr(part, "key", None):
                out.setdefault(part.key, part)
    return out


def humanize(key: str) -> tuple[str, str]:
    """A measured key without a declaration -> (plain name, unit): 'longest_outage_s' -> ('longest outage', 's')."""
    for suffix, unit in UNIT_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)].replace("_", " "), unit
    return key.replace("_", " "), ""


def measured_values(e: Entry) -> list[Value]:
    """Every measured value of an entry with a plain name and unit: declared key figures first (their names and
    units), then the others named by the check that judges them, else by their key; grouped by case."""
    from experiments import registry
    from experiments.verdict import fmt
    try:
        exp = registry.get(e.slug)
    except KeyError:
        exp = None
    figures = dict(getattr(exp, "figures", {}) or {})
    checks = _checks_by_key(exp) if exp is not None else {}
    params = {**(exp.params() if exp is not None else {}), **(e.meta.get("params") or {})}
    cases = {c.name for c in exp.all_cases(exp.params())} if exp is not None else set()
    out = []
    for key, value in e.verdict.measured.items():
        case, _, base = key.partition(".") if "." in key and key.split(".", 1)[0] in cases else ("", "", key)
        if key in figures:
            name, unit, figure = figures[key].name, figures[key].unit, True
        elif base in checks:
            check = checks[base]
            try:
                name = check.what.format(**params)
            except (KeyError, IndexError, ValueError):
                name = check.what
            unit, figure = check.unit, False
        else:
            (name, unit), figure = humanize(base), False
        out.append(Value(case, name, unit, fmt(value, unit), key, figure))
    order = list(figures)
    return sorted(out, key=lambda v: (v.case, not v.figure, order.index(v.key) if v.key in order else 0))


def raw_files(run_dir: Path, limit: int = 60) -> list[Path]:
    """The run's files to link: metadata, verdict, then raw data (the first `limit`)."""
    run_dir = Path(run_dir)
    files = [run_dir / n for n in ("metadata.json", "verdict.json", "repeat-summary.json") if (run_dir / n).is_file()]
    raw = run_dir / "raw"
    if raw.is_dir():
        files += sorted(p for p in raw.rglob("*") if p.is_file())[:limit]
    return files


def _rel(path: Path, results: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(results).resolve())).as_posix()


def _img(path: Path) -> str:
    if not path.exists():
        return f"<p><em>missing plot {html.escape(path.name)}</em></p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(path.stem.replace("_", " "))}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(path.name)}</figcaption></figure>")


CSS = """
:root{--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--muted:#57606a;--line:#d0d7de}
body{font:15px/1.5 "DejaVu Sans",system-ui,sans-serif;color:#1f2328;max-width:62em;margin:2em auto;padding:0 1em}
h1{margin-bottom:.2em}h2{margin:.2em 0}h3{font-size:1em;margin:1em 0 .3em}
table{border-collapse:collapse;margin:.4em 0}td,th{border-bottom:1px solid #eaeef2;padding:.2em .6em;text-align:left;vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:.9em}td.v{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.figure td{font-weight:600}.key{color:var(--muted);font-size:.8em;font-family:monospace}
.badge{display:inline-block;padding:0 .55em;border-radius:1em;color:#fff;font-weight:600;font-size:.85em;
  -webkit-print-color-adjust:exact;print-color-adjust:exact}
.supported{background:var(--ok)}.refuted{background:var(--bad)}.inconclusive{background:var(--warn)}
.finding{font-size:1.1em;border-left:4px solid var(--line);padding-left:.7em;margin:.6em 0}
section.claim{border-top:2px solid var(--line);margin-top:2.2em;padding-top:.6em}
.statement{color:var(--muted);font-style:italic;margin:.1em 0}
figure{margin:.6em 0}figure img{max-width:100%;border:1px solid #eaeef2}figcaption{color:var(--muted);font-size:.8em}
.rule{background:#f6f8fa;padding:.5em .8em;border-radius:4px}ul.checks{margin:.3em 0}
.files{columns:2;font-size:.85em;font-family:monospace}.files a{color:#0969da}
.meta{font-size:.9em}.meta td:first-child{color:var(--muted)}small{color:var(--muted)}
@media print{body{max-width:none;margin:0;font-size:11pt}a{color:inherit;text-decoration:none}
  section.claim{break-before:page;border:none}figure,table,.finding{break-inside:avoid}
  .files{columns:1}nav.index a::after{content:""}details{display:block}details>summary{display:none}}
"""


def _index_rows(entries: list[Entry], results: Path) -> str:
    esc = html.escape
    return "".join(
        f'<tr><td>{esc(e.verdict.claim)}</td><td><a href="#{esc(e.slug)}">{esc(_title(e))}</a><br><small>{esc(e.slug)}'
        f'</small></td><td><span class="badge {esc(e.verdict.verdict)}">{esc(e.verdict.verdict)}</span></td>'
        f'<td>{esc(e.verdict.summary or "")}</td><td><small>{esc(_when(e))}</small></td></tr>'
        for e in entries)


def _when(e: Entry) -> str:
    """When a run started, for people: '2026-01-01 00:00 UTC' (else its id)."""
    started = str(e.meta.get("started") or "")
    if len(started) >= 16 and started[10] == "T":
        return started[:10] + " " + started[11:16] + (" UTC" if started.endswith(("+00:00", "Z")) else "")
    return e.run_dir.name


def _metadata(entries: list[Entry]) -> str:
    """Where and with what the runs were made: machine, OS, kernel, versions, git revision(s)."""
    esc = html.escape
    if not entries:
        return ""
    meta = next((e.meta for e in reversed(entries) if e.meta), {})
    m = meta.get("machine") or {}
    revisions = sorted({f"{(e.meta.get('git') or {}).get('revision') or '?'}"
                        f"{' (dirty)' if (e.meta.get('git') or {}).get('dirty') else ''}" for e in entries})
    rows = [("machine", f"{m.get('cores')} cores, {m.get('memory_mib')} MiB, {m.get('arch')}"
                        + (f", {m.get('virtualization')}" if m.get("virtualization") else "")),
            ("system", f"{meta.get('os')}, kernel {meta.get('kernel')}"),
            ("python", str((meta.get("python") or {}).get("version"))),
            ("git revision", ", ".join(revisions)),
            ("tools", "; ".join(f"{k} {v}" for k, v in sorted((meta.get("tools") or {}).items()) if v)),
            ("packages", ", ".join(f"{k} {v}" for k, v in sorted((meta.get("packages") or {}).items()) if v))]
    return ('<h2>Where these runs were made</h2><table class="meta">'
            + "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows) + "</table>")


def _section(e: Entry, results: Path) -> str:
    esc = html.escape
    v = e.verdict
    out = [f'<section class="claim" id="{esc(e.slug)}"><h2>{esc(v.claim)} {esc(_title(e))} '
           f'<span class="badge {esc(v.verdict)}">{esc(v.verdict)}</span></h2>']
    statement = _statement(e)
    if statement:
        out.append(f'<p class="statement">Claim: {esc(statement)}</p>')
    out.append(f'<p class="finding">{esc(v.summary or _title(e) + ": " + v.verdict)}</p>')
    out += [_img(plot_file(e.run_dir, p)) for p in v.plots]
    out.append(f'<h3>How it was judged</h3><p class="rule">{esc(v.rule)}</p>')
    if v.reasons:
        out.append('<ul class="checks">' + "".join(f"<li>{esc(r)}</li>" for r in v.reasons) + "</ul>")
    values = measured_values(e)
    if values:
        out.append("<h3>Measured</h3>")
        for case in dict.fromkeys(x.case for x in values):
            rows = "".join(f'<tr class="{"figure" if x.figure else ""}"><td>{esc(x.name)} <span class="key">{esc(x.key)}'
                           f'</span></td><td class="v">{esc(x.shown)}</td></tr>' for x in values if x.case == case)
            out.append((f"<h4>case {esc(case)}</h4>" if case else "") + f"<table>{rows}</table>")
        out.append("<p><small>bold: the claim's key figures</small></p>")
    if e.summary:
        s = e.summary
        out.append(f"<h3>Over {len(s['runs'])} runs</h3><p>verdicts <b>{'agreed' if s['agreed'] else 'disagreed'}</b>: "
                   f"{esc(', '.join(s['verdicts']))}</p><table><tr><th>value</th><th>median</th><th>min</th><th>max</th></tr>"
                   + "".join(f"<tr><td>{esc(x.get('name') or humanize(k.split('.')[-1])[0])}</td><td class='v'>"
                             f"{esc(_fmt_unit(x['median'], x.get('unit')))}</td><td class='v'>{esc(_fmt_unit(x['min'], x.get('unit')))}"
                             f"</td><td class='v'>{esc(_fmt_unit(x['max'], x.get('unit')))}</td></tr>"
                             for k, x in s["values"].items()) + "</table>")
    if v.error:
        out.append(f"<details><summary>error</summary><pre>{esc(v.error)}</pre></details>")
    files = raw_files(e.run_dir)
    if files:
        out.append('<h3>Raw files</h3><div class="files">' + "".join(
            f'<div><a href="{esc(_rel(f, results))}">{esc(str(f.relative_to(e.run_dir)))}</a></div>' for f in files) + "</div>")
    git = e.meta.get("git") or {}
    out.append(f"<p><small>run {esc(e.run_dir.name)} ({e.runs} run(s) of this claim stored), started "
               f"{esc(str(e.meta.get('started')))}, git {esc(str(git.get('revision')))}"
               f"{' (dirty)' if git.get('dirty') else ''}, kernel {esc(str(e.meta.get('kernel')))}</small></p></section>")
    return "\n".join(out)


def _fmt_unit(value: Any, unit: str | None) -> str:
    from experiments.verdict import fmt
    return fmt(value, unit or "")


def _statement(e: Entry) -> str:
    from experiments import registry
    try:
        return registry.get(e.slug).statement
    except KeyError:
        return ""


def render_html(entries: list[Entry], results: Path) -> str:
    """The report as one self-contained HTML page (plots embedded, no script, no outside resource): an index with
    verdict badges and the runs' metadata, then one section per claim opening with its finding."""
    counts = {k: sum(e.verdict.verdict == k for e in entries) for k in COLOURS}
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
             "content='width=device-width, initial-scale=1'><title>weblab report</title>", f"<style>{CSS}</style></head><body>",
             "<h1>weblab report</h1>",
             f"<p>{len(entries)} claims: " + ", ".join(f'<span class="badge {k}">{n} {k}</span>' for k, n in counts.items())
             + "</p>",
             '<nav class="index"><table><tr><th>claim</th><th>title</th><th>verdict</th><th>finding</th><th>run</th></tr>'
             f"{_index_rows(entries, results)}</table></nav>", _metadata(entries)]
    parts += [_section(e, results) for e in entries]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def build(results: Path = Path("results")) -> tuple[Path, Path]:
    """Write results/report.html and results/report.md; returns their paths."""
    results = Path(results)
    if not results.is_dir():
        raise FileNotFoundError(f"no results folder at {results}: run `weblab run` first")
    entries = newest_runs(results)
    html_path, md_path = results / "report.html", results / "report.md"
    html_path.write_text(render_html(entries, results))
    md_path.write_text(markdown(entries, results))
    return html_path, md_path
