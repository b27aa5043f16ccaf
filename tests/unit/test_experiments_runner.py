"""The runner with a fake lab_factory end to end, re-analysis, repeat summary, JUnit, report, metadata, plots."""
from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from experiments import fidelity, metadata, plots, report, runner
from experiments.capture import PacketEvent
from experiments.stats import Request
from experiments.testing import LocalHttpServer, fake_lab_factory
from experiments.verdict import Verdict, combine

FAST_SPOF = {"before_s": 1.0, "fault_s": 1.2, "after_s": 1.6, "min_fault_requests": 30, "ready_timeout": 5.0}
FAST_DEPLOY = {"before_s": 1.0, "after_s": 1.5, "load_rate": 40.0, "ready_timeout": 5.0}


@pytest.fixture
def site(monkeypatch):
    """The fake lab's one server; the machine's CPU reads as 10% busy, so the verdict of an end-to-end
    run over the fake lab does not depend on what else this machine is doing (the sampler itself is
    tested on the real /proc/stat below)."""
    ticks = iter(range(1, 10**9))

    def steady(stat=None):
        n = next(ticks)
        return n, 10 * n
    monkeypatch.setattr(fidelity, "read_proc_stat", steady)
    srv = LocalHttpServer().start()
    yield srv
    srv.stop()


def test_runner_spof_end_to_end_with_fake_lab(tmp_path: Path, site: LocalHttpServer) -> None:
    out = tmp_path / "results"
    res = runner.run(["spof"], out=out, junit=tmp_path / "junit.xml",
                     lab_factory=fake_lab_factory(site, tmp_path), params={"spof": {**FAST_SPOF, "url": site.url, "cases": ["one-server"]}})
    assert len(res) == 1
    r = res[0]
    assert r.verdict.verdict == "supported", r.verdict.reasons
    assert r.run_dir.parent == out / "spof"
    case = r.run_dir / "raw" / "one-server"
    for name in ("probe.csv", "faults.csv", "cpu.csv", "windows.csv", "lab.json"):
        assert (case / name).is_file(), name
    assert (r.run_dir / "raw" / "run.json").is_file()
    saved = Verdict.load(r.run_dir / "verdict.json")
    assert saved.verdict == "supported" and saved.claim == "C1" and saved.slug == "spof"
    assert saved.measured["fault_success"] == 0.0 and saved.measured["served_by"] == ["server1"]
    meta = json.loads((r.run_dir / "metadata.json").read_text())
    assert meta["finished"] and meta["params"]["url"] == site.url and meta["labs"][0]["design"] == "one-server"
    png = r.run_dir / saved.plots[0]
    first = png.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    # analysis alone, no lab: same verdict, same plot
    png.unlink()
    again = runner.analyse(r.run_dir)
    assert again.to_dict() == saved.to_dict()
    assert png.read_bytes() == first
    tree = ET.parse(tmp_path / "junit.xml")
    tc = tree.getroot().find("testsuite/testcase")
    assert tc.get("name") == "spof" and tc.find("failure") is None and tc.find("skipped") is None


def test_runner_deploy_end_to_end_with_fake_lab(tmp_path: Path, site: LocalHttpServer) -> None:
    res = runner.run(["maintenance-downtime"], out=tmp_path, lab_factory=fake_lab_factory(site, tmp_path),
                     params={"maintenance-downtime": {**FAST_DEPLOY, "url": site.url, "cases": ["one-server"]}})
    v = res[0].verdict
    assert v.verdict == "supported", v.reasons
    assert v.measured["failed_requests"] > 0 and 0.1 < v.measured["outage_s"] < 2


def test_lab_that_never_becomes_ready_is_inconclusive_and_skipped(tmp_path: Path, site: LocalHttpServer) -> None:
    res = runner.run(["spof", "http-exchange"], out=tmp_path / "r", junit=tmp_path / "j.xml",
                     lab_factory=fake_lab_factory(site, tmp_path, fail=True))
    assert [r.verdict.verdict for r in res] == ["inconclusive", "inconclusive"]
    assert "did not become ready" in res[0].verdict.reasons[0]
    assert runner.exit_code(res) == 2
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("skipped") == "2" and suite.get("failures") == "0"
    assert "did not become ready" in suite.find("testcase/skipped").get("message")
    assert "RuntimeError" in suite.find("testcase/system-err").text


def test_repeat_summary_and_report(tmp_path: Path, site: LocalHttpServer, capsys) -> None:
    out = tmp_path / "results"
    res = runner.run(["spof"], repeat=2, out=out, lab_factory=fake_lab_factory(site, tmp_path),
                     params={"spof": {**FAST_SPOF, "url": site.url, "cases": ["one-server"]}})
    assert len(res) == 2 and res[0].run_id < res[1].run_id
    summary = json.loads((res[1].run_dir / runner.SUMMARY_FILE).read_text())
    assert summary["agreed"] is True and summary["verdicts"] == ["supported", "supported"], \
        [r.verdict.reasons for r in res]
    key = next(k for k in summary["values"] if k.endswith("fault_success"))
    s = summary["values"][key]
    assert s["min"] <= s["median"] <= s["max"] and s["n"] == 2
    err = capsys.readouterr().err
    assert "[weblab" in err and "spof [1/1] run 2/2" in err and "SUPPORTED" in err
    html_path, md_path = report.build(out)
    html = html_path.read_text()
    assert "data:image/png;base64," in html and "supported" in html and res[1].run_id in html
    assert res[0].run_id not in html, "only the newest run of a claim is reported"
    md = md_path.read_text()
    assert "## C1 spof: supported" in md and "Repeat spread over 2 runs" in md
    assert f"spof/{res[1].run_id}/plots/one-server-availability.png" in md


def test_junit_counts_refuted_as_failure(tmp_path: Path) -> None:
    from experiments import junit
    mk = lambda slug, verdict: runner.RunResult(slug, "C1", "t", "id", tmp_path, Verdict(verdict, "rule", {"x": 1}, ["why"]), 1.5)
    junit.write([mk("a", "supported"), mk("b", "refuted"), mk("c", "inconclusive")], tmp_path / "j.xml")
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = suite.findall("testcase")
    assert cases[1].find("failure").get("message") == "why" and "rule: rule" in cases[1].find("failure").text
    assert cases[2].find("skipped").get("message") == "inconclusive: why"


def test_metadata_is_complete_and_hostname_free() -> None:
    meta = metadata.collect("spof", "C1", "20260101-000000-000", {"seed": 3, "x": 1}, metadata.now())
    for key in metadata.REQUIRED_KEYS:
        assert key in meta, key
    assert meta["seed"] == 3 and set(meta["tools"]) >= {"ovs", "nginx", "haproxy", "mariadb", "named"}
    assert meta["machine"]["cores"] >= 1 and meta["machine"]["memory_mib"] > 0
    assert meta["kernel"] and meta["python"]["version"].startswith("3.")
    assert set(meta["packages"]) >= {"scapy", "matplotlib", "os-ken", "pymysql"} and meta["packages"]["scapy"]
    assert set(meta["git"]) == {"revision", "dirty"}
    host = socket.gethostname()

    def values(x):
        if isinstance(x, dict):
            for k, v in x.items():
                assert k.lower() not in ("hostname", "node", "nodename")
                yield from values(v)
        elif isinstance(x, list):
            for v in x:
                yield from values(v)
        else:
            yield x
    assert host not in list(values(meta))
    assert metadata.tool_version(["/nonexistent/tool", "-v"]) is None


def test_plots_from_saved_raw_data(tmp_path: Path) -> None:
    rows = [Request(100 + i * 0.02, 100.003 + i * 0.02, not (50 <= i < 80), 200, "server1") for i in range(150)]
    p1 = plots.availability(rows, [(101.0, 101.6, "kill")], tmp_path / "a.png", "t", marks=[(101.0, "kill")])
    pts = [{"offered": r, "achieved": min(r, 40), "p50": 0.01 * (1 + r / 40), "p99": 0.02 * (1 + (r / 40) ** 4)} for r in (10, 20, 40, 80)]
    p2 = plots.load_curves(pts, tmp_path / "b.png", "t")
    ev = [PacketEvent(1, 0.0, "10.0.0.1", "10.0.0.10", 5, 80, "S", "SYN", "SYN"),
          PacketEvent(2, 0.001, "10.0.0.10", "10.0.0.1", 80, 5, "SA", "SYN-ACK", "SYN-ACK")]
    p3 = plots.sequence(ev, "10.0.0.1", "10.0.0.10", tmp_path / "c.png", "t")
    for p in (p1, p2, p3):
        assert p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 5000


def test_cpu_sampler_records_machine_busy_fraction(tmp_path: Path) -> None:
    path = tmp_path / "cpu.csv"
    with fidelity.CpuSampler(path, interval=0.05):
        with fidelity.window(tmp_path, "w"):
            deadline = __import__("time").monotonic() + 5
            while __import__("time").monotonic() < deadline and len(fidelity.read_samples(tmp_path)) < 5:
                sum(i * i for i in range(20000))
    samples = fidelity.read_samples(tmp_path)
    assert len(samples) >= 5 and all(0.0 <= b <= 1.0 for _, b in samples)
    assert fidelity.read_windows(tmp_path)[0][0] == "w"
    saturated, measured, _ = fidelity.assess(tmp_path)
    assert saturated in (True, False) and measured["machine_cpu_samples"] >= 1


def test_combine_halves() -> None:
    a = Verdict("supported", "r1", {"x": 1}, ["ok"])
    b = Verdict("refuted", "r2", {"x": 2}, ["no"])
    c = combine([("one-server", a), ("distributed", b)])
    assert c.verdict == "refuted" and c.measured == {"one-server.x": 1, "distributed.x": 2}
    assert c.rule == "one-server: r1; distributed: r2"
    assert combine([("one-server", a), ("distributed", Verdict("refuted", "r1", {}, []))]).rule == "r1"
    assert combine([("a", a), ("b", Verdict("inconclusive", "r", {}, []))]).verdict == "inconclusive"
    with pytest.raises(ValueError):
        Verdict("maybe", "r")
