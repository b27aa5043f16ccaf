"""Benchmarks (`make bench`): lab bring-up and teardown, median of N, with a same-run baseline.

The baseline is the same Mininet graph on the same private Open vSwitch with no controller and
no services, measured in the same run, so the ratio says what weblab adds on top of Mininet
whatever the machine's speed today.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path


def bare_mininet(design: str) -> tuple[float, float]:
    """Seconds to build+start and to stop the design's graph with Mininet alone."""
    from mininet.log import setLogLevel
    from mininet.net import Mininet
    from mininet.node import OVSSwitch

    from topologies import get
    from weblab.core import paths
    from weblab.lab import new_run_id
    from weblab.ovs import PrivateOVS, choose_datapath
    import shutil

    setLogLevel("warning")
    run_dir = paths.RUN_ROOT / f"bench-{new_run_id()}"
    datapath, _ = choose_datapath()
    ovs = PrivateOVS(run_dir, datapath)
    ovs.start(lambda ref: None)
    saved = dict(os.environ)
    os.environ.update(ovs.env())
    try:
        t0 = time.monotonic()
        net = Mininet(topo=get(design)(), switch=partial(OVSSwitch, datapath=datapath, failMode="standalone"),
                      controller=None, autoSetMacs=False, waitConnected=False)
        net.start()
        up = time.monotonic() - t0
        t0 = time.monotonic()
        net.stop()
        down = time.monotonic() - t0
    finally:
        ovs.stop()
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(run_dir, ignore_errors=True)
    return up, down


def full_lab(design: str) -> tuple[float, float]:
    """Seconds from `Lab.start()` to every service answering, and for a complete teardown."""
    from weblab.lab import Lab
    t0 = time.monotonic()
    lab = Lab(design).start()
    up = time.monotonic() - t0
    t0 = time.monotonic()
    lab.stop()
    return up, time.monotonic() - t0


def iperf(lab, client: str, server_ip: str, seconds: int = 5) -> float:
    """Gbit/s of one TCP stream from client to server_ip:5201 (iperf3 -s runs on the server host)."""
    res = lab.exec(client, ["iperf3", "-c", server_ip, "-t", str(seconds), "-J"], timeout=seconds + 30)
    data = json.loads(res.stdout)
    if "error" in data:
        raise RuntimeError(f"iperf3: {data['error']}")
    return data["end"]["sum_received"]["bits_per_second"] / 1e9


def firewall_cost(seconds: int = 5) -> dict:
    """iperf3 across the stateful firewall vs the same lab with it off; packet-ins in steady state."""
    from controllers.client import request
    from weblab.lab import Lab
    from weblab.core.wait import wait_for
    with Lab("secured", {"monitoring": False}) as lab:
        sock = str(lab.state.controller.control)
        request(sock, {"op": "allow", "rule": {"id": "bench-iperf", "src": "client", "dst": "lb1",
                                               "proto": "tcp", "port": 5201}})
        server = lab.popen("lb1", ["iperf3", "-s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: ":5201" in lab.exec("lb1", ["ss", "-ltn"]).stdout, 5, "iperf3 -s on lb1")
        on = iperf(lab, "client", lab.ip("lb1"), seconds)

        def packet_ins() -> int:
            return sum(s["packet_ins"] for s in request(sock, {"op": "status"})["switches"])
        before, t0 = packet_ins(), time.monotonic()
        # Steady state: 100 page loads after the lab has warmed up (bounded count).
        lab.exec("client", ["sh", "-c", "for i in $(seq 100); do curl -s -o /dev/null "
                            "https://www.foobar.com/; done"], timeout=120)
        steady = (packet_ins() - before) / (time.monotonic() - t0)
        request(sock, {"op": "disable"})
        off = iperf(lab, "client", lab.ip("lb1"), seconds)
        server.terminate()
    return {"iperf3_gbps_firewall_on": round(on, 3), "iperf3_gbps_firewall_off": round(off, 3),
            "ratio_on_to_off": round(on / off, 3), "packet_ins_per_s_steady": round(steady, 3)}


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process (and its reaped children), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15])


def _rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, KiB."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


def ui_cost(design: str, params: dict, seconds: float = 60) -> dict:
    """CPU and memory of `weblab ui` on a running lab while one client asks for its state once a second
    (what an open page does), measured over `seconds` after a warm-up."""
    import re
    import urllib.request
    from weblab.lab import Lab
    with Lab(design, params):
        p = subprocess.Popen([sys.executable, "-m", "weblab", "ui", "--port", "0"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, bufsize=0, start_new_session=True)
        try:
            seen, deadline = b"", time.monotonic() + 30
            while b"token=" not in seen and time.monotonic() < deadline and p.poll() is None:
                seen += os.read(p.stdout.fileno(), 4096)
            url = re.search(rb"http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]+", seen)
            if url is None:
                raise RuntimeError(f"weblab ui printed no URL: {seen!r}")
            base, token = url.group().decode().split("/?token=")

            def poll() -> int:
                req = urllib.request.Request(base + "/api/state", headers={"X-Weblab-Token": token})
                with urllib.request.urlopen(req, timeout=5) as r:
                    return len(r.read())
            for _ in range(5):  # warm-up: every source has read at least once
                poll()
                time.sleep(1)
            ticks0, t0, sizes, rss = _cpu_ticks(p.pid), time.monotonic(), [], []
            for i in range(int(seconds)):
                sizes.append(poll())
                rss.append(_rss_kib(p.pid)[0])
                time.sleep(max(0.0, t0 + i + 1 - time.monotonic()))
            cpu = (_cpu_ticks(p.pid) - ticks0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0)
            hwm = _rss_kib(p.pid)[1]
        finally:
            p.send_signal(2)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
    return {"design": design, "params": params, "seconds": seconds, "cpu_fraction_of_one_core": round(cpu, 4),
            "rss_mib_median": round(statistics.median(rss) / 1024, 1), "rss_mib_peak": round(hwm / 1024, 1),
            "state_bytes_median": int(statistics.median(sizes)), "limits": {"cpu_fraction": 0.05, "rss_mib": 150}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench")
    ap.add_argument("--design", action="append", help="design(s) to measure (default: all)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default="bench/results.json")
    ap.add_argument("--no-firewall", action="store_true", help="skip the firewall throughput benchmark")
    ap.add_argument("--only", choices=("ui",), help="only this benchmark: ui = the live view's CPU and memory")
    ap.add_argument("--seconds", type=float, default=60, help="measuring window of the ui benchmark")
    args = ap.parse_args(argv)
    if args.only == "ui":
        res = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": {"cores": os.cpu_count(), "kernel": platform.release()},
               "ui": [ui_cost("scaled", {}, args.seconds), ui_cost("distributed", {"servers": 16}, args.seconds)]}
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")
        print(json.dumps(res["ui"], indent=2))
        print(f"written to {out}", file=sys.stderr)
        return 0
    from topologies import DESIGNS
    designs = args.design or list(DESIGNS)
    results = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": {"cores": os.cpu_count(), "kernel": platform.release()},
               "repeat": args.repeat, "designs": {}}
    for design in designs:
        rows = {"lab_up": [], "lab_down": [], "baseline_up": [], "baseline_down": []}
        for i in range(args.repeat):
            b_up, b_down = bare_mininet(design)
            up, down = full_lab(design)
            rows["baseline_up"].append(b_up)
            rows["baseline_down"].append(b_down)
            rows["lab_up"].append(up)
            rows["lab_down"].append(down)
            print(f"{design} {i + 1}/{args.repeat}: up {up:.2f} s, down {down:.2f} s "
                  f"(mininet alone {b_up:.2f} / {b_down:.2f} s)", file=sys.stderr, flush=True)
        med = {k: round(statistics.median(v), 3) for k, v in rows.items()}
        results["designs"][design] = {
            "median_s": med, "samples_s": {k: [round(x, 3) for x in v] for k, v in rows.items()},
            "ratio_up_to_baseline": round(med["lab_up"] / med["baseline_up"], 2),
            "ratio_down_to_baseline": round(med["lab_down"] / med["baseline_down"], 2)}
    if not args.no_firewall:
        results["firewall"] = firewall_cost()
        print(f"firewall: {results['firewall']}", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({d: r["median_s"] | {"ratio_up": r["ratio_up_to_baseline"],
                                          "ratio_down": r["ratio_down_to_baseline"]}
                      for d, r in results["designs"].items()}, indent=2))
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
