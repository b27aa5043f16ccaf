"""The one-server claims end to end on real labs, as `weblab run` runs them, then the report."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import weblab

FAST = {  # shorter than the defaults, same rules: the suite stays well under its time budget
    "cannot-scale": ["--param", "point_s=3", "--param", "fractions=[0.5, 0.9, 1.6, 2.4]"],
}


def newest_verdict(out: Path, slug: str) -> tuple[Path, dict]:
    runs = sorted((out / slug).iterdir())
    return runs[-1], json.loads((runs[-1] / "verdict.json").read_text())


@pytest.mark.parametrize("slug", ["spof", "maintenance-downtime", "cannot-scale", "dns-cname", "http-exchange"])
def test_claim_is_supported_on_a_real_lab(slug, tmp_path):
    args = ["run", slug, "--out", str(tmp_path), *FAST.get(slug, [])]
    if slug in ("spof", "maintenance-downtime", "cannot-scale"):
        args += ["--param", 'cases=["one-server"]']
    res = weblab(*args, timeout=600, check=False)
    run_dir, verdict = newest_verdict(tmp_path, slug)
    assert verdict["verdict"] == "supported", (res.stderr[-2000:], verdict)
    assert res.returncode == 0
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["slug"] == slug and meta["machine"]["cores"] >= 1 and meta["git"]["revision"]
    assert {"nginx", "mariadb", "ovs", "named"} <= set(meta["tools"]) and meta["packages"]["os-ken"]
    assert list((run_dir / "plots").glob("*.png")), "no plot drawn"
    # The analysis alone, from raw data, gives the same verdict again.
    again = weblab("run", slug, "--analyse-only", str(run_dir))
    assert "supported" in again.stdout
    assert json.loads((run_dir / "verdict.json").read_text())["verdict"] == "supported"
    weblab("report", "--out", str(tmp_path))
    html = (tmp_path / "report.html").read_text()
    assert slug in html and "data:image/png;base64" in html and "supported" in html
