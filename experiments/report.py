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
            lines += ["| measured | value |", "|---|---|"] + [f"| {k} | {_fmt(x)} |" for k, x in v.measured.items()] + [""]
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


def _img(path: Path) -> str:
    if not path.exists():
        return f"<p><em>missing plot {html.escape(path.name)}</em></p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}"></figure>'


def render_html(entries: list[Entry], results: Path) -> str:
    """The report as one self-contained HTML page (plots embedded)."""
    esc = html.escape
    rows = "".join(
        f'<tr><td>{esc(e.verdict.claim)}</td><td><a href="#{esc(e.slug)}">{esc(e.slug)}</a></td>'
        f'<td style="color:{COLOURS[e.verdict.verdict]}"><b>{esc(e.verdict.verdict)}</b></td>'
        f'<td>{esc(str(e.run_dir.relative_to(results)))}</td></tr>' for e in entries)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>weblab report</title><style>",
             "body{font-family:sans-serif;max-width:70em;margin:2em auto;line-height:1.4}",
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}",
             "img{max-width:100%}section{border-top:2px solid #eee;margin-top:2em}</style></head><body>",
             "<h1>weblab report</h1>", f"<table><tr><th>claim</th><th>slug</th><th>verdict</th><th>run</th></tr>{rows}</table>"]
    for e in entries:
        v = e.verdict
        parts.append(f'<section id="{esc(e.slug)}"><h2>{esc(v.claim)} {esc(e.slug)}: '
                     f'<span style="color:{COLOURS[v.verdict]}">{esc(v.verdict)}</span></h2>')
        parts.append(f"<p><em>{esc(_title(e))}</em></p>" + (f"<p>{esc(v.summary)}</p>" if v.summary else "")
                     + f"<p><b>Rule.</b> {esc(v.rule)}</p>")
        if v.reasons:
            parts.append("<ul>" + "".join(f"<li>{esc(r)}</li>" for r in v.reasons) + "</ul>")
        if v.measured:
            parts.append("<table><tr><th>measured</th><th>value</th></tr>" + "".join(
                f"<tr><td>{esc(k)}</td><td>{esc(_fmt(x))}</td></tr>" for k, x in v.measured.items()) + "</table>")
        if e.summary:
            s = e.summary
            parts.append(f"<p>Repeat spread over {len(s['runs'])} runs; verdicts "
                         f"<b>{'agreed' if s['agreed'] else 'disagreed'}</b>: {esc(', '.join(s['verdicts']))}</p>")
            parts.append("<table><tr><th>value</th><th>median</th><th>min</th><th>max</th></tr>" + "".join(
                f"<tr><td>{esc(k)}</td><td>{_fmt(x['median'])}</td><td>{_fmt(x['min'])}</td><td>{_fmt(x['max'])}</td></tr>"
                for k, x in s["values"].items()) + "</table>")
        parts += [_img(plot_file(e.run_dir, p)) for p in v.plots]
        if v.error:
            parts.append(f"<details><summary>error</summary><pre>{esc(v.error)}</pre></details>")
        git = e.meta.get("git") or {}
        parts.append(f"<p><small>run {esc(e.run_dir.name)} ({e.runs} run(s) of this claim stored), started "
                     f"{esc(str(e.meta.get('started')))}, git {esc(str(git.get('revision')))}"
                     f"{' (dirty)' if git.get('dirty') else ''}, kernel {esc(str(e.meta.get('kernel')))}</small></p></section>")
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
