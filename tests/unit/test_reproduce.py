"""Reproducing results without a lab: repeat agreement, the reference, compare, bundles."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from experiments import reproduce
from experiments.verdict import Verdict
from weblab import cli

SLUG = "primary-replica"  # figures: lag_p50_ms (rel 1.0 / abs 1 ms), missing_on_replica (abs 0), ...


def _run(results: Path, slug: str, name: str, verdict: str = "supported", **measured) -> Path:
    d = results / slug / name
    (d / "raw").mkdir(parents=True)
    (d / "raw" / "run.json").write_text(json.dumps({"slug": slug, "params": {}, "cases": []}))
    (d / "metadata.json").write_text(json.dumps({"started": "2026-12-01T10:00:00", "machine": "x86_64, 2 cpus",
                                                 "kernel": "6.1", "os": "Debian 12", "git": "abc123"}))
    base = {"lag_p50_ms": 0.6, "lag_p99_ms": 1.4, "lag_max_ms": 3.0, "missing_on_replica": 0}
    Verdict(verdict, "rule", {**base, **measured}, ["why " + verdict], slug=slug, claim="C7").save(d / "verdict.json")
    return d


@pytest.fixture
def reference(tmp_path):
    runs = tmp_path / "runs"
    for i, p50 in enumerate((0.5, 0.6, 0.7), start=1):
        _run(runs, SLUG, f"2026120{i}", lag_p50_ms=p50)
    out = tmp_path / "reference"
    assert [p.name for p in reproduce.build_reference(runs, out)] == [f"{SLUG}.json"]
    return out


def test_spread_and_agreement():
    s = reproduce.spread([1.0, 2.0, 3.0, 4.0])
    assert s["median"] == 2.5 and s["iqr"] == pytest.approx(1.5) and s["n"] == 4 and s["cv"] == pytest.approx(0.516, abs=1e-3)
    assert reproduce.spread([5.0])["cv"] == 0.0
    v = [Verdict("supported", "r", {}, ["a"]), Verdict("inconclusive", "r", {}, ["busy machine"]),
         Verdict("supported", "r", {}, ["b"])]
    a = reproduce.agreement(v)
    assert a["verdict"] == "supported" and a["count"] == "2/3" and not a["agreed"]
    assert a["differed"] == [{"run": 2, "verdict": "inconclusive", "why": "busy machine"}]
    assert reproduce.agreement(v[:1])["count"] == "1/1"


def test_reference_holds_verdicts_figures_and_metadata(reference):
    ref = json.loads((reference / f"{SLUG}.json").read_text())
    assert ref["agreement"]["count"] == "3/3" and ref["figures"]["lag_p50_ms"]["median"] == 0.6
    assert ref["figures"]["lag_p50_ms"]["name"] == "replication lag p50" and ref["metadata"]["git"] == "abc123"
    assert "weblab run all --repeat 3" in (reference / "README.md").read_text()


def test_a_run_within_tolerance_agrees_and_one_beyond_does_not(tmp_path, reference, capsys):
    fresh = _run(tmp_path / "fresh", SLUG, "20261210", lag_p50_ms=1.1)  # 1.1 vs 0.6: within 1 ms
    assert reproduce.compare(fresh, reference)[0].agrees
    assert cli.main(["compare", str(fresh), "--reference", str(reference)]) == 0
    altered = _run(tmp_path / "altered", SLUG, "20261210", missing_on_replica=3)  # abs tolerance 0
    rows = reproduce.compare(altered, reference)
    assert not rows[0].agrees
    assert cli.main(["compare", str(altered), "--reference", str(reference), "--html", str(tmp_path / "c.html")]) == 1
    out = capsys.readouterr().out
    assert "missing_on_replica" in out and "acknowledged writes missing on the replica" in out and "NO" in out
    assert "OFF" in (tmp_path / "c.html").read_text()
    flipped = _run(tmp_path / "flipped", SLUG, "20261210", verdict="refuted")
    assert reproduce.compare(flipped, reference)[0].disagreements()[0] == "verdict refuted (reference supported)"


def test_compare_reads_results_folders_and_bundles(tmp_path, reference):
    results = tmp_path / "results"
    _run(results, SLUG, "20261201", lag_p50_ms=9.0)   # an older run ...
    newest = _run(results, SLUG, "20261202")           # ... and the newest, which is the one compared
    assert [r.agrees for r in reproduce.compare(results, reference)] == [True]
    packed = reproduce.bundle(newest, tmp_path / "b.tar.gz")
    assert [r.agrees for r in reproduce.compare(packed, reference)] == [True]


@pytest.mark.parametrize("target, words", [
    ("missing-dir", "does not exist"), ("empty", "holds no finished runs")])
def test_compare_bad_input_is_exit_2(tmp_path, reference, target, words, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["compare", str(tmp_path / target), "--reference", str(reference)]) == 2
    assert words in capsys.readouterr().err
    assert cli.main(["compare", str(tmp_path / "empty"), "--reference", str(tmp_path / "none")]) == 2


def test_a_bundle_refuses_what_is_not_a_plain_run(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        (tmp_path / "x").write_text("x")
        tar.add(tmp_path / "x", arcname="../outside")
    with pytest.raises(reproduce.ReproduceError, match="refusing member"):
        reproduce.unpack(evil, tmp_path / "in")
    assert not (tmp_path / "outside").exists()
    (tmp_path / "junk.tar.gz").write_text("not gzip")
    with pytest.raises(reproduce.ReproduceError, match="is not a weblab bundle"):
        reproduce.unpack(tmp_path / "junk.tar.gz", tmp_path / "in")
    with pytest.raises(reproduce.ReproduceError, match="is not a finished run"):
        reproduce.bundle(tmp_path, tmp_path / "b.tar.gz")


def test_a_bundle_is_rejudged_elsewhere_without_the_labs_software(tmp_path, monkeypatch):
    """A real run (over the fake lab), bundled, unpacked elsewhere and re-analysed in a process that can
    import neither Mininet nor os-ken and finds no lab program on PATH: the same verdict."""
    from experiments import fidelity, runner
    from experiments.testing import LocalHttpServer, fake_lab_factory
    ticks = iter(range(1, 10**9))
    monkeypatch.setattr(fidelity, "read_proc_stat", lambda stat=None: (lambda n: (n, 10 * n))(next(ticks)))
    site = LocalHttpServer().start()
    try:
        fast = {"before_s": 1.0, "fault_s": 1.5, "after_s": 2.0, "settle_s": 0.05, "min_fault_requests": 20,
                "url": site.url, "cases": ["one-server"]}
        (res,) = runner.run(["spof"], out=tmp_path / "results", lab_factory=fake_lab_factory(site, tmp_path),
                            params={"spof": fast})
    finally:
        site.stop()
    packed = reproduce.bundle(res.run_dir, tmp_path / "spof.tar.gz")
    elsewhere = reproduce.unpack(packed, tmp_path / "elsewhere")
    (elsewhere / "verdict.json").unlink()
    code = ("import sys; sys.modules['mininet'] = sys.modules['os_ken'] = None; "  # importing either fails
            "from weblab import cli; sys.exit(cli.main(['run', '--analyse-only', sys.argv[1]]))")
    env = {"PATH": str(tmp_path / "no-programs"), "HOME": str(tmp_path), "PYTHONPATH": str(Path(cli.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code, str(elsewhere)], capture_output=True, text=True, env=env,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    again = Verdict.load(elsewhere / "verdict.json")
    assert again.verdict == res.verdict.verdict and again.measured == json.loads(
        (res.run_dir / "verdict.json").read_text())["measured"]
    assert os.path.exists(elsewhere / "BUNDLE.json")
