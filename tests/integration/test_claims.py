"""Every claim end to end on real labs, as `weblab run SLUG` runs it: a verdict with its evidence.

Some claims run shorter here than by default (fewer load points, fewer crashes); their rules are
the same. `make demo` (weblab run all) runs every claim with its defaults.
"""
from __future__ import annotations

import json

import pytest

from experiments import registry
from tests.integration.conftest import weblab

FAST = {
    # the top load (2x capacity) against points up to 2/3 of it that already saturate (1.1x)
    "cannot-scale": ["point_s=5", "fractions=[0.5, 1.1, 1.6, 2.0]", "calib_s=3", "confirm_s=3"],
    "lb-cluster": ["crashes=3"],
    "writer-failover": ["count=2"],
}
NO_PLOT = {"dns-cname"}  # its evidence is the DNS answer chain itself, a table in the report
# Claims whose verdict on this machine class sits on one check's threshold, so a sound run may come out
# either way: the test accepts `refuted` only when that check is the one that failed, and every other
# check held. C19: the cached page's p50 is mostly the lab's own ~2 ms path through HAProxy; p50 on/off
# measured 0.486x-0.574x over six runs against the rule's <= 0.5x (docs/measurements.md). C21: with the
# servers' CPU quota (0.1) the tail is the CFS throttling periods, so p99 falls little when a third server
# joins (890 -> 714, 795 -> 534, 717 -> 722 ms in three runs) while throughput rises 1.46x-1.51x.
AT_THRESHOLD = {"caching": "p50 latency at the same load", "scale-out": "p99 latency after the add"}
# C13 resolves a 20% change of a ~3 ms p99 with the tiers separated: supported 4 of 4 here (the calm
# windows within x1.03-x1.06 of each other, docs/measurements.md), but on a shared CI machine whose own
# scheduling noise is of that order the separated case came out refuted on that p99 once and, once,
# inconclusive after three rounds whose calm windows disagreed. The test then still wants the combined
# case's coupling supported in full, and the separated case to have failed on nothing but that p99 or
# the noise gate. (case, the failures allowed there, the prefix of the claim's note lines)
AT_RESOLUTION = {"fault-isolation": ("separated", ("p99 during the overloads / calm: NO (", "too noisy to resolve"),
                                     "database cgroups throttled in")}


def outcome(reason: str, case: str, note: str) -> str:
    """'yes', 'NO' or 'note' for one reason line of a case (a gate's failure text says neither: 'NO')."""
    body = reason[len(case) + 2:]
    if body.startswith(note):
        return "note"
    first = min((body.find(w), w) for w in (": yes", ": NO") if w in body) if (": yes" in body or ": NO" in body) else None
    return "yes" if first and first[1] == ": yes" else "NO"


@pytest.mark.parametrize("slug", registry.all_slugs())
def test_claim_yields_its_verdict_on_a_real_lab(slug, tmp_path):
    args = ["run", slug, "--out", str(tmp_path)]
    for p in FAST.get(slug, []):
        args += ["--param", p]
    res = weblab(*args, timeout=900, check=False)
    runs = sorted((tmp_path / slug).iterdir())
    assert len(runs) == 1, res.stderr[-3000:]
    run_dir = runs[0]
    verdict = json.loads((run_dir / "verdict.json").read_text())
    if slug in AT_THRESHOLD and verdict["verdict"] == "refuted":
        failed = [r for r in verdict["reasons"] if ": NO (" in r]
        assert failed and all(AT_THRESHOLD[slug] in r for r in failed), (verdict["reasons"], res.stderr[-3000:])
    elif slug in AT_RESOLUTION and verdict["verdict"] != "supported":
        case, allowed, note = AT_RESOLUTION[slug]
        judged = {}
        for r in verdict["reasons"]:
            name = r.split(": ", 1)[0]
            judged.setdefault(name, []).append((outcome(r, name, note), r))
        others = [o for name, lines in judged.items() if name != case for o, _ in lines if o != "note"]
        assert others and all(o == "yes" for o in others), (verdict["reasons"], res.stderr[-3000:])
        failed = [r for o, r in judged.get(case, []) if o == "NO"]
        assert failed and all(any(a in r for a in allowed) for r in failed), (verdict["reasons"], res.stderr[-3000:])
    else:
        assert verdict["verdict"] == "supported", (verdict.get("reasons"), res.stderr[-3000:])
    assert verdict["measured"], "a verdict without measured values"
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["slug"] == slug and meta["machine"]["cores"] >= 1 and meta["git"]["revision"]
    assert {"nginx", "mariadb", "ovs", "named"} <= set(meta["tools"]) and meta["packages"]["os-ken"]
    plots = list((run_dir / "plots").glob("*.png"))
    assert bool(plots) == (slug not in NO_PLOT), plots
    # The analysis alone, from raw data, gives the same verdict again.
    weblab("run", slug, "--analyse-only", str(run_dir))
    assert json.loads((run_dir / "verdict.json").read_text())["verdict"] == verdict["verdict"]
    weblab("report", "--out", str(tmp_path))
    html = (tmp_path / "report.html").read_text()
    assert slug in html and verdict["verdict"] in html
    assert ("data:image/png;base64" in html) == bool(plots)
