"""Benchmarks (`make bench`): what a lab costs and how that grows, each beside a same-run baseline.

    python -m tests.bench updown   [--design D ...] [--repeat 5]   -> bench/results.json
    python -m tests.bench scale    [--design distributed] [--n 1,2,4,8,16] [--repeat 3]
                                                                    -> bench/scale.json, docs/bench-scale.png
    python -m tests.bench datapath [--seconds 5]                    -> bench/datapath.json
    python -m tests.bench all                                       (all three)

Baselines, measured in the same run so that ratios hold whatever the machine's speed today:
- bring-up/teardown: the same Mininet graph on the same private Open vSwitch (same datapath, same
  port kind), no controller and no services;
- the datapath: iperf3 between two namespaces joined by a Linux bridge.
The scale benchmark runs the command a user runs (`weblab up DESIGN --param servers=N --detach`,
then `weblab down`), end to end including Python's start-up, and reads the lab's memory as the
sum of PSS (/proc/PID/smaps_rollup) over the run's recorded processes and their descendants.
These are benchmarks: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "weblab"]
SCALE_PARAM = {"distributed": "servers", "secured": "servers", "scaled": "web"}


# ------------------------------------------------------------------------------ baselines
def bare_mininet(design: str, params: dict | None = None) -> tuple[float, float]:
    """Seconds to build+start and to stop the design's graph with Mininet alone (same port kind)."""
    from mininet.log import setLogLevel

    from topologies import get
    from weblab import netdev
    from weblab.core import paths
    from weblab.datapath import choose_datapath
    from weblab.lab import new_run_id
    from weblab.ovs import PrivateOVS

    setLogLevel("warning")
    run_dir = paths.RUN_ROOT / f"bench-{new_run_id()}"
    datapath, _ = choose_datapath()
    ovs = PrivateOVS(run_dir, datapath)
    saved = dict(os.environ)
    try:
        ovs.start(lambda ref: None)
        os.environ.update(ovs.env())
        t0 = time.monotonic()
        net = netdev.mininet(get(design)(**(params or {})), datapath, ovs.vsctl, fail_mode="standalone")
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


def bridge_gbps(seconds: int = 5) -> float:
    """iperf3 (one TCP stream) between two fresh namespaces joined by a Linux bridge; all removed after."""
    tag = f"wlb{os.getpid() % 100000}"
    ns, br = (f"{tag}a", f"{tag}b"), f"{tag}br"

    def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=check)
    server = None
    try:
        sh("ip", "link", "add", br, "type", "bridge")
        sh("ip", "link", "set", br, "up")
        for i, n in enumerate(ns, start=1):
            sh("ip", "netns", "add", n)
            sh("ip", "link", "add", f"{n}v", "type", "veth", "peer", "name", f"{n}e", "netns", n)
            sh("ip", "link", "set", f"{n}v", "master", br, "up")
            sh("ip", "-n", n, "addr", "add", f"10.254.0.{i}/24", "dev", f"{n}e")
            sh("ip", "-n", n, "link", "set", f"{n}e", "up")
            sh("ip", "-n", n, "link", "set", "lo", "up")
        server = subprocess.Popen(["ip", "netns", "exec", ns[1], "iperf3", "-s", "-1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_listening(lambda: sh("ip", "netns", "exec", ns[1], "ss", "-ltn", check=False).stdout)
        res = sh("ip", "netns", "exec", ns[0], "iperf3", "-c", "10.254.0.2", "-t", str(seconds), "-J")
        return _iperf_gbps(res.stdout)
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait(timeout=5)
        for n in ns:
            sh("ip", "netns", "delete", n, check=False)
        sh("ip", "link", "del", br, check=False)


def _wait_listening(listing, port: int = 5201, timeout: float = 10) -> None:
    from weblab.core.wait import wait_for
    wait_for(lambda: f":{port} " in listing(), timeout, f"iperf3 -s listening on {port}")


def _iperf_gbps(text: str) -> float:
    data = json.loads(text)
    if "error" in data:
        raise RuntimeError(f"iperf3: {data['error']}")
    return data["end"]["sum_received"]["bits_per_second"] / 1e9


# ------------------------------------------------------------------------------ the CLI, as a user runs it
def weblab(*args: str, timeout: float = 300) -> tuple[float, subprocess.CompletedProcess]:
    """(seconds, result) of one weblab command; a failure raises with its output."""
    t0 = time.monotonic()
    res = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    took = time.monotonic() - t0
    if res.returncode != 0:
        raise RuntimeError(f"weblab {' '.join(args)} exited {res.returncode}: {res.stderr.strip()[-800:]}")
    return took, res


def running_state() -> dict:
    from weblab.core import paths
    states = [json.loads(p.read_text()) for p in paths.RUN_ROOT.glob("*/state.json")]
    if len(states) != 1:
        raise RuntimeError(f"expected one running lab, found {len(states)}")
    return states[0]


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rpartition(")")[2].split()[1])
        kids.setdefault(ppid, []).append(int(stat.parent.name))
    return kids


def pss_kib(pid: int) -> int:
    """Proportional set size of one process, KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def lab_memory(state: dict) -> dict:
    """Sum of PSS over the run's recorded processes (holder included) and all their descendants."""
    roots = {d["pid"] for d in state.get("processes", [])}
    if state.get("holder"):
        roots.add(state["holder"]["pid"])
    kids, seen, todo = _children(), set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo += kids.get(pid, [])
    return {"pss_mib": round(sum(pss_kib(p) for p in seen) / 1024, 1), "processes": len(seen)}


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys over xs (None with fewer than two distinct xs)."""
    if len(set(xs)) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


# ------------------------------------------------------------------------------ the benchmarks
def lab_gbps(seconds: int = 5) -> dict:
    """iperf3 server1 -> server2 in `distributed` with the firewall on and a live allow rule."""
    weblab("up", "distributed", "--firewall", "on", "--detach")
    try:
        state = running_state()
        weblab("firewall", "allow", "server1", "server2", "tcp", "5201")
        server = subprocess.Popen([*CLI, "exec", "server2", "--", "iperf3", "-s", "-1"], cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_listening(lambda: weblab("exec", "server2", "--", "ss", "-ltn")[1].stdout)
            _, res = weblab("exec", "server1", "--", "iperf3", "-c", state["hosts"]["server2"]["ips"][0],
                            "-t", str(seconds), "-J", timeout=seconds + 60)
        finally:
            if server.poll() is None:
                server.terminate()
            server.wait(timeout=10)
        return {"gbps": round(_iperf_gbps(res.stdout), 3), "datapath": state.get("datapath"),
                "datapath_reason": state.get("datapath_reason")}
    finally:
        weblab("down")


def datapath_bench(seconds: int = 5) -> dict:
    """The lab's host-to-host throughput through the firewall vs a Linux bridge, same run."""
    bridge = bridge_gbps(seconds)
    lab = lab_gbps(seconds)
    out = {"when": _now(), "seconds": seconds, "linux_bridge_gbps": round(bridge, 3), "lab": lab,
           "ratio_to_bridge": round(lab["gbps"] / bridge, 3),
           "command": "weblab up distributed --firewall on --detach; weblab firewall allow server1 "
                      "server2 tcp 5201; iperf3 server1 -> server2 (one stream)"}
    print(f"datapath: lab {lab['gbps']:.2f} Gbit/s, bridge {bridge:.2f} Gbit/s, "
          f"ratio {out['ratio_to_bridge']:.1%}", file=sys.stderr, flush=True)
    return out


def scale_bench(design: str, ns: list[int], repeat: int) -> dict:
    """up --detach / down (median of repeat) and memory for N web servers, beside bare Mininet."""
    from topologies import get
    cls = get(design)
    pname = SCALE_PARAM.get(design)
    choices = cls.params[pname].choices if pname else None
    rows, skipped = [], []
    for n in ns:
        if pname is None or (choices and n not in choices):
            skipped.append(n)
            continue
        params = {pname: n}
        hosts = len(cls(**params).hosts())
        samples: dict[str, list[float]] = {"up": [], "down": [], "baseline_up": [], "baseline_down": []}
        memory = []
        for i in range(repeat):
            b_up, b_down = bare_mininet(design, params)
            up, _ = weblab("up", design, "--param", f"{pname}={n}", "--detach")
            try:
                memory.append(lab_memory(running_state()))
            finally:
                down, _ = weblab("down")
            for k, v in (("up", up), ("down", down), ("baseline_up", b_up), ("baseline_down", b_down)):
                samples[k].append(v)
            print(f"{design} {pname}={n} ({hosts} hosts) {i + 1}/{repeat}: up {up:.2f} s, down {down:.2f} s, "
                  f"{memory[-1]['pss_mib']:.0f} MiB (Mininet alone {b_up:.2f} / {b_down:.2f} s)",
                  file=sys.stderr, flush=True)
        med = {k: round(statistics.median(v), 3) for k, v in samples.items()}
        rows.append({"n": n, "hosts": hosts, "median_s": med,
                     "samples_s": {k: [round(x, 3) for x in v] for k, v in samples.items()},
                     "pss_mib": statistics.median(m["pss_mib"] for m in memory),
                     "processes": statistics.median(m["processes"] for m in memory)})
    per_host = {}
    if rows:
        xs = [r["hosts"] for r in rows]
        for key, ys in (("up_s", [r["median_s"]["up"] for r in rows]),
                        ("baseline_up_s", [r["median_s"]["baseline_up"] for r in rows]),
                        ("down_s", [r["median_s"]["down"] for r in rows]),
                        ("pss_mib", [r["pss_mib"] for r in rows])):
            s = slope(xs, ys)
            per_host[key] = None if s is None else round(s, 3)
    return {"when": _now(), "design": design, "param": pname, "repeat": repeat, "rows": rows,
            "per_host_slope": per_host,
            "skipped_n": skipped,
            "skipped_why": (f"{design} accepts {pname} in {choices} today" if skipped else ""),
            "command": f"weblab up {design} --param {pname}=N --detach; weblab down"}


def plot_scale(result: dict, out: Path) -> Path | None:
    """Up/down time and memory against the number of web servers."""
    rows = result["rows"]
    if not rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ns = [r["n"] for r in rows]
    fig, (ax, mx) = plt.subplots(1, 2, figsize=(9, 3.6))
    for key, label in (("up", "weblab up --detach"), ("down", "weblab down"),
                       ("baseline_up", "Mininet alone: up"), ("baseline_down", "Mininet alone: down")):
        ax.plot(ns, [r["median_s"][key] for r in rows], "o-" if "baseline" not in key else "s--", label=label)
    ax.set_xlabel(f"{result['param']} (web servers)")
    ax.set_ylabel(f"seconds (median of {result['repeat']})")
    ax.set_xticks(ns)
    ax.legend(fontsize=7)
    mx.plot(ns, [r["pss_mib"] for r in rows], "o-", color="tab:purple")
    mx.set_xlabel(f"{result['param']} (web servers)")
    mx.set_ylabel("lab memory, sum of PSS (MiB)")
    mx.set_xticks(ns)
    fig.suptitle(f"{result['design']}: cost against size", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


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


def updown_bench(designs: list[str], repeat: int, firewall: bool = True) -> dict:
    results = {"when": _now(), "machine": _machine(), "repeat": repeat, "designs": {}}
    for design in designs:
        rows = {"lab_up": [], "lab_down": [], "baseline_up": [], "baseline_down": []}
        for i in range(repeat):
            b_up, b_down = bare_mininet(design)
            up, down = full_lab(design)
            rows["baseline_up"].append(b_up)
            rows["baseline_down"].append(b_down)
            rows["lab_up"].append(up)
            rows["lab_down"].append(down)
            print(f"{design} {i + 1}/{repeat}: up {up:.2f} s, down {down:.2f} s "
                  f"(mininet alone {b_up:.2f} / {b_down:.2f} s)", file=sys.stderr, flush=True)
        med = {k: round(statistics.median(v), 3) for k, v in rows.items()}
        results["designs"][design] = {
            "median_s": med, "samples_s": {k: [round(x, 3) for x in v] for k, v in rows.items()},
            "ratio_up_to_baseline": round(med["lab_up"] / med["baseline_up"], 2),
            "ratio_down_to_baseline": round(med["lab_down"] / med["baseline_down"], 2)}
    if firewall:
        results["firewall"] = firewall_cost()
        print(f"firewall: {results['firewall']}", file=sys.stderr)
    return results


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _machine() -> dict:
    return {"cores": os.cpu_count(), "kernel": platform.release()}


def _write(path: str | Path, data: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**data, "machine": _machine()}, indent=2) + "\n")
    print(f"written to {out}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="?", default="updown", choices=("updown", "scale", "datapath", "ui", "all"))
    ap.add_argument("--design", action="append", help="design(s) (updown: default all; scale: distributed)")
    ap.add_argument("--repeat", type=int, default=None, help="samples per figure (updown 5, scale 3)")
    ap.add_argument("--n", default="1,2,4,8,16", help="scale: numbers of web servers")
    ap.add_argument("--seconds", type=int, default=5, help="datapath: iperf3 seconds")
    ap.add_argument("--out", default="bench/results.json", help="updown's output")
    ap.add_argument("--no-firewall", action="store_true", help="updown: skip the firewall throughput benchmark")
    ap.add_argument("--plot", default="docs/bench-scale.png", help="scale's plot")
    ap.add_argument("--ui-seconds", type=float, default=60, help="ui: measuring window")
    args = ap.parse_args(argv)
    from topologies import DESIGNS
    if args.what in ("updown", "all"):
        res = updown_bench(args.design or list(DESIGNS), args.repeat or 5, not args.no_firewall)
        _write(args.out, res)
        print(json.dumps({d: r["median_s"] | {"ratio_up": r["ratio_up_to_baseline"],
                                              "ratio_down": r["ratio_down_to_baseline"]}
                          for d, r in res["designs"].items()}, indent=2))
    if args.what in ("scale", "all"):
        for design in (args.design if args.what == "scale" and args.design else ["distributed"]):
            res = scale_bench(design, [int(x) for x in args.n.split(",")], args.repeat or 3)
            name = "scale.json" if design == "distributed" else f"scale-{design}.json"
            _write(Path("bench") / name, res)
            plot_scale(res, Path(args.plot) if design == "distributed" else Path(f"docs/bench-scale-{design}.png"))
            print(json.dumps({"per_host_slope": res["per_host_slope"],
                              "rows": [{"n": r["n"], **r["median_s"], "pss_mib": r["pss_mib"]}
                                       for r in res["rows"]]}, indent=2))
    if args.what in ("datapath", "all"):
        _write("bench/datapath.json", datapath_bench(args.seconds))
    if args.what in ("ui", "all"):
        res = {"when": _now(), "ui": [ui_cost("scaled", {}, args.ui_seconds),
                                      ui_cost("distributed", {"servers": 16}, args.ui_seconds)]}
        _write("bench/ui.json", res)
        print(json.dumps(res["ui"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
