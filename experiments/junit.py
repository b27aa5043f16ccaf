"""Verdicts as JUnit XML for CI and course graders: refuted -> failure, inconclusive -> skipped (with the reason)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from experiments.verdict import INCONCLUSIVE, REFUTED

if TYPE_CHECKING:
    from experiments.runner import RunResult


def _details(res: "RunResult") -> str:
    v = res.verdict
    lines = [f"verdict: {v.verdict}", f"rule: {v.rule}", f"run: {res.run_dir}"]
    lines += [f"{k} = {val}" for k, val in v.measured.items()]
    lines += [f"reason: {r}" for r in v.reasons]
    return "\n".join(lines)


def build(results: list["RunResult"], suite: str = "weblab") -> ET.ElementTree:
    """One <testcase> per claim run, in one <testsuite>."""
    failures = sum(r.verdict.verdict == REFUTED for r in results)
    skipped = sum(r.verdict.verdict == INCONCLUSIVE for r in results)
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)), failures=str(failures),
                       errors="0", skipped=str(skipped),
                       time=f"{sum(r.seconds for r in results):.3f}")
    for res in results:
        name = res.slug + (f" (run {res.repeat}/{res.of})" if res.of > 1 else "")
        tc = ET.SubElement(ts, "testcase", classname=f"weblab.{res.claim or 'claim'}", name=name,
                           time=f"{res.seconds:.3f}")
        v = res.verdict
        summary = "; ".join(v.reasons) or v.rule
        if v.verdict == REFUTED:
            ET.SubElement(tc, "failure", message=summary[:500], type="Refuted").text = _details(res)
        elif v.verdict == INCONCLUSIVE:
            ET.SubElement(tc, "skipped", message=f"inconclusive: {summary}"[:500])
        ET.SubElement(tc, "system-out").text = _details(res)
        if v.error:  # why a run could not be judged (a lab that never became ready, a crash)
            ET.SubElement(tc, "system-err").text = v.error
    return ET.ElementTree(root)


def write(results: list["RunResult"], path: Path) -> Path:
    """Write the JUnit XML file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = build(results)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path
