"""`weblab throughput` on a running lab: a live capture of a link under load, analysed; and its bad input."""
from __future__ import annotations

import csv
import re
import subprocess
import time

from tests.integration.conftest import CLI, weblab
from weblab.core import paths

DESIGN = "distributed"


def test_live_throughput_of_the_front_link_under_load(detached_lab, tmp_path):
    load = subprocess.Popen([*CLI, "exec", "client", "--", "wrk", "-t1", "-c4", "-d4s",
                             "http://www.foobar.com/static/hello.txt"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # the load is running (wrk prints nothing until it ends)
        res = weblab("throughput", "lb-front", "--duration", "2", "-o", str(tmp_path / "t.csv"),
                     "-w", str(tmp_path / "front.pcap"), timeout=60)
    finally:
        load.communicate(timeout=30)
    out = res.stdout
    found = re.search(r"(\d+) packets captured, none dropped", out)
    assert found, out
    captured = int(found.group(1))
    analysed = int(re.search(r"front\.pcap: (\d+) packets", out).group(1))
    assert captured == analysed > 1000, out
    assert "sent by 02:00:0a:00:00:0a" in out and "bits/s per" in out  # lb1's own MAC: "out" is what lb1 sent
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    out_bytes = sum(int(r["goodput_bytes"]) for r in rows if r["scope"] == "direction" and r["key"] == "out"
                    and r["bin_s"] == "1")
    assert out_bytes > 100_000  # lb1 answered the client with pages
    # the kept pcap reads the same again, offline
    again = weblab("throughput", "--pcap", str(tmp_path / "front.pcap"), "--local", "10.0.0.10")
    assert f"{analysed} packets" in again.stdout
    # nothing of the live capture is left in the run's folder
    left = list((paths.run_dir(detached_lab["run_id"]) / "captures").glob("*.pcap"))
    assert left == []


def test_live_throughput_without_keeping_the_pcap_leaves_nothing(detached_lab):
    res = weblab("throughput", "lb-back", "--duration", "1", timeout=60)
    assert "lb-back on lb1:lb1-eth1" in res.stdout
    assert list((paths.run_dir(detached_lab["run_id"]) / "captures").glob("*")) == []


def test_unknown_link_is_one_line(detached_lab):
    res = weblab("throughput", "nowhere", "--duration", "1", check=False)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0
    assert "no link 'nowhere'" in res.stderr and "lb-back" in res.stderr


def test_bad_duration_is_one_line(detached_lab):
    res = weblab("throughput", "lb-back", "--duration", "0", check=False)
    assert res.returncode == 2 and "--duration" in res.stderr and res.stderr.strip().count("\n") == 0
