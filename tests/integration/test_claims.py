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
        assert failed and all(AT_THRESHOLD[slug] in r for r in failed), (res.stderr[-3000:], verdict["reasons"])
    else:
        assert verdict["verdict"] == "supported", (res.stderr[-3000:], verdict.get("reasons"))
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
