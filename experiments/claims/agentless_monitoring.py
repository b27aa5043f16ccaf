"""C25 agentless-monitoring: the same web servers watched with an agent and without one, each source against
what really happened.

Four sources, all scraped by the monitor's Prometheus: the agent (the Nginx exporter on every server, reading
stub_status), the load balancer's API (HAProxy's built-in Prometheus endpoint, nothing on the servers), log
analysis (each Nginx sends its access log as syslog over the back network to rsyslog on the monitor, where
mtail turns it into counters) and SNMP (snmpd on each server, polled by the SNMP exporter on the monitor for
the interface octet counters). An open-loop HTTPS load of a known count of requests for a published file runs
between two idle phases; one server's interface is captured. Each QPS source's count (less the traffic it saw
while idle: health checks, its own reads) is compared with the generator's, the SNMP octet rate of that
interface with the capture's byte rate, and each source's delay and CPU cost are reported.

The idle phases around the load make the counts independent of when a source read its counter: Net-SNMP
caches the interface table for a few seconds, so an SNMP figure may be that old (its delay, measured).
"""
from __future__ import annotations

import bisect
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from experiments import drive, plots
from experiments.base import Case, Experiment, say
from experiments.capture import Pcap
from experiments.fidelity import window
from experiments.registry import register
from experiments.stats import read_openloop, rounded
from experiments.verdict import PRESENT, SKIP, Check, Figure, P, Verdict, gate

PHASE = "phase.json"      # the timetable, the captured interface, tcpdump's counts, CPU readings
SERIES = "series.json"    # raw samples of every source's counters from Prometheus, with their times
LOAD = "openloop.csv"
CAPTURE = "server.pcap"
BLOB = "agentless-blob.bin"   # the file the load fetches, published on every web server

# source -> (PromQL selector of its counters, what it is); the series are kept raw and judged as counters
QPS_SOURCES = {
    "agent": ('nginx_http_requests_total{job="nginx"}', "Nginx exporter on each server (stub_status)"),
    "api": ('haproxy_frontend_http_requests_total{job="haproxy",proxy!="stats"}',
            "HAProxy's built-in Prometheus endpoint on lb1"),
    "logs": ('nginx_syslog_requests_total{job="mtail"}', "Nginx access log as syslog -> rsyslog -> mtail on monitor"),
}
SNMP_COUNTERS = ("ifHCInOctets", "ifHCOutOctets")
# source -> the services whose CPU it costs: (host or "web" for every web server, kind)
COST = {
    "agent": [("web", "nginx_exporter")],
    "api": [],  # HAProxy serves it itself: no process of its own
    "logs": [("monitor", "rsyslog"), ("monitor", "mtail")],  # Nginx's syslog send is inside Nginx
    "snmp": [("web", "snmpd"), ("monitor", "snmp_exporter")],
}
SOURCES = (*QPS_SOURCES, "snmp")


def cpu_ticks(pid: int | None) -> int | None:
    """utime + stime of a process (clock ticks), None if it is gone."""
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])


def samples(series: list[dict]) -> list[tuple[dict, list[tuple[float, float]]]]:
    """Prometheus range-vector results -> [(labels, [(t, value)] sorted)]."""
    return [(r["metric"], sorted((float(t), float(v)) for t, v in r["values"])) for r in series]


def value_at(points: list[tuple[float, float]], t: float) -> tuple[float, float] | None:
    """The last sample at or before t (time, value), None if there is none."""
    i = bisect.bisect_right([p[0] for p in points], t)
    return points[i - 1] if i else None


def resets(points: list[tuple[float, float]]) -> int:
    """How often a counter went down (a restarted source)."""
    return sum(b[1] < a[1] for a, b in zip(points, points[1:]))


def counted(points: list[tuple[float, float]], idle_start: float, load_start: float, end: float) -> dict[str, Any]:
    """One counter's increase from the last sample before the load to the last before end, less what it gained
    at its idle rate (measured from idle_start to load_start) over that span. A series that first appears
    during the load (mtail creates a label set at its first line) started from 0 and had no idle rate."""
    before, after = value_at(points, load_start), value_at(points, end)
    if after is None:
        return {"increase": 0.0, "idle_rate": 0.0, "count": 0.0, "t0": None, "v0": 0.0}
    first = next(((t, v) for t, v in points if t >= idle_start), None)
    if before is None:
        return {"increase": after[1], "idle_rate": 0.0, "count": after[1], "t0": None, "v0": 0.0}
    idle_rate = (before[1] - first[1]) / (before[0] - first[0]) if first and before[0] > first[0] else 0.0
    increase = after[1] - before[1]
    return {"increase": increase, "idle_rate": idle_rate, "count": increase - idle_rate * (after[0] - before[0]),
            "t0": before[0], "v0": before[1]}


def lags(points: list[tuple[float, float]], c: dict[str, Any], ref: list[float], share: float,
         lo: float = 0.1, hi: float = 0.9) -> list[float]:
    """How old a counter's figures were when Prometheus stored them: for each sample inside the load (its count
    so far between lo and hi of its total), the sample time minus the time the reference (sorted event times,
    e.g. the generator's sends; this series carrying `share` of them) had reached the same count."""
    if not ref or share <= 0 or c["count"] <= 0 or c["t0"] is None:
        return []
    out = []
    for t, v in points:
        if t <= c["t0"]:
            continue
        so_far = v - c["v0"] - c["idle_rate"] * (t - c["t0"])
        if not lo * c["count"] <= so_far <= hi * c["count"]:
            continue
        k = min(len(ref) - 1, max(0, int(round(so_far / share)) - 1))
        out.append(t - ref[k])
    return out


def capture_bytes(pcap: Path) -> tuple[list[float], list[int]]:
    """Frame times and the cumulative wire bytes (original lengths) of a capture."""
    times, cum, total = [], [], 0
    for ts, wirelen, _data, _linktype in Pcap(pcap):
        total += wirelen
        times.append(ts)
        cum.append(total)
    return times, cum


def bytes_between(times: list[float], cum: list[int], a: float, b: float) -> int:
    """Wire bytes of the frames in (a, b]."""
    i, j = bisect.bisect_right(times, a), bisect.bisect_right(times, b)
    return (cum[j - 1] if j else 0) - (cum[i - 1] if i else 0)


@register
class AgentlessMonitoring(Experiment):
    """An agent, the load balancer's API, log analysis and SNMP watching the same servers, against the truth."""

    slug = "agentless-monitoring"
    claim = "C25"
    title = "Monitoring with agents and agentless: API, SNMP, log analysis"
    statement = "Monitoring collects data with agents or agentless, through APIs, SNMP or log analysis."
    design = "secured"
    defaults = {"rate": 100, "load_s": 20.0, "idle_s": 6.0, "tail_s": 8.0, "body_kib": 32, "snmp_server": "server1",
                "tolerance": 0.05, "gen_accuracy": 0.98, "max_failed": 0.01, "timeout": 5.0, "snaplen": 96,
                "buffer_kib": 8192}
    timing_sensitive = True
    checks = (
        gate("generator_short", "==", False, "the generator sent < {gen_accuracy:.0%} of its schedule"),
        gate("failed_fraction", "<=", P("max_failed"), "requests that failed", "%"),
        gate("tcpdump_lost", "==", 0, "packets tcpdump lost (dropped, or seen and not written)",
             fail="the capture is incomplete: tcpdump lost packets"),
        gate("counter_resets", "==", 0, "counters that went down during the run (a source restarted)"),
        gate("snmp_samples", ">=", 3, "SNMP octet samples of the captured interface in Prometheus"),
        Check("agent_qps_deviation", "<=", P("tolerance"), "agent (Nginx exporter) request count vs the generator's",
              "%"),
        Check("api_qps_deviation", "<=", P("tolerance"), "load balancer API (HAProxy) request count vs the generator's",
              "%"),
        Check("logs_qps_deviation", "<=", P("tolerance"), "log analysis (syslog -> mtail) request count vs the "
              "generator's", "%"),
        Check("snmp_rate_deviation", "<=", P("tolerance"), "SNMP octet rate of the interface vs the capture's byte "
              "rate", "%"),
        Check("agent_delay_s", PRESENT, None, "the agent's delay (median age of its figures at scrape)", "s"),
        Check("api_delay_s", PRESENT, None, "the API's delay", "s"),
        Check("logs_delay_s", PRESENT, None, "log analysis' delay", "s"),
        Check("snmp_delay_s", PRESENT, None, "SNMP's delay", "s"),
        Check("costs_reported", "==", True, "the CPU of each source's processes read before and after", missing=SKIP),
    )
    figures = {
        "agent_qps_error": Figure("agent count error", "%", abs_tol=0.02),
        "api_qps_error": Figure("API count error", "%", abs_tol=0.02),
        "logs_qps_error": Figure("log analysis count error", "%", abs_tol=0.02),
        "snmp_rate_error": Figure("SNMP octet rate error", "%", abs_tol=0.02),
        "agent_delay_s": Figure("agent delay", "s", abs_tol=0.5),
        "api_delay_s": Figure("API delay", "s", abs_tol=0.5),
        "logs_delay_s": Figure("log analysis delay", "s", abs_tol=0.5),
        "snmp_delay_s": Figure("SNMP delay", "s", abs_tol=1.5),
        # costs: CPU seconds over the run, machine-dependent: compared loosely (0.1-0.5 s measured)
        **{f"{src}_cpu_s_{on}": Figure(f"{src} CPU on the {on}", "s", abs_tol=0.5)
           for src in SOURCES for on in ("servers", "monitor")},
    }
    summary = ("against the generator's count, the agent was off by {agent_qps_error}, the load balancer's API by "
               "{api_qps_error} and log analysis by {logs_qps_error}; SNMP's octet rate was off the capture's by "
               "{snmp_rate_error}",
               "their figures were {agent_delay_s}, {api_delay_s}, {logs_delay_s} and {snmp_delay_s} old when scraped",
               "the agent cost {agent_cpu_s_servers} of CPU on the servers, SNMP {snmp_cpu_s_servers} there and "
               "{snmp_cpu_s_monitor} on the monitor, log analysis {logs_cpu_s_monitor} on the monitor and none on "
               "the servers")

    def lab_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"params": {"monitoring": True, "agentless": True}}

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"{p['idle_s']:g} s idle, then open-loop HTTPS load at {p['rate']} req/s for {p['load_s']:g} s of a "
                f"{p['body_kib']} KiB file through lb1, then {p['tail_s']:g} s idle; {p['snmp_server']}'s interface "
                f"captured throughout. Each QPS source's count = its counters' increase from the last Prometheus "
                f"sample before the load to the last at the end, less its idle rate over that span (health checks, "
                f"its own reads), against the requests the generator sent; SNMP: (ifHCInOctets + ifHCOutOctets) "
                f"increase over the same kind of span, per second, against the capture's wire bytes per second "
                f"between the same sample times. Delay: the median, over samples taken during the load, of the "
                f"sample's time minus when the generator (the capture, for SNMP) had reached the count it shows. "
                f"Cost: CPU seconds of each source's processes over the run")

    # --- running -------------------------------------------------------------------------------------------------
    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        prom = lab.service("monitor", "prometheus")
        prom.wait_targets(prom.targets_timeout)  # every source scraped and up first
        web = [h for h in lab.hosts() if h.startswith("server")]
        server = params["snmp_server"]
        if server not in web:
            raise ValueError(f"snmp_server {server!r} is not a web server of this lab ({', '.join(web)})")
        blob = os.urandom(int(params["body_kib"]) * 1024)
        for h in web:  # published like any static content: into each Nginx's document root (its run directory)
            (lab.service(h, "nginx").dir / "static" / BLOB).write_bytes(blob)
        intf = lab.link_intfs(server, "s2")[0]
        procs = {f"{h}/{kind}": lab.service(h, kind).pid
                 for src in COST.values() for where, kind in src for h in (web if where == "web" else [where])}
        phase: dict[str, Any] = {"server": server, "interface": intf, "web": web, "clk_tck": os.sysconf("SC_CLK_TCK"),
                                 "rate": params["rate"], "url": f"https://www.foobar.com/static/{BLOB}"}
        phase["cpu_before"] = {k: cpu_ticks(pid) for k, pid in procs.items()}
        cap = lab.capture(server, intf, out / CAPTURE, snaplen=params["snaplen"], buffer_kib=params["buffer_kib"])
        try:
            phase["t_idle_start"] = time.time()
            say(f"idle {params['idle_s']:g} s (each source's baseline: health checks, its own reads)")
            drive.pause(params["idle_s"])
            phase["t_load_start"] = time.time()
            with window(out, "load"):
                say(f"open-loop {params['rate']} req/s for {params['load_s']:g} s of a {params['body_kib']} KiB file "
                    f"over HTTPS")
                proc = drive.start_tool(lab, "client", "openloop", [
                    "--url", phase["url"], "--rate", str(params["rate"]), "--duration", str(params["load_s"]),
                    "--out", str(out / LOAD), "--timeout", str(params["timeout"])], out / "openloop.json")
                drive.finish(proc, params["load_s"] + params["timeout"] + 15, f"openloop {params['rate']} req/s")
            phase["t_load_end"] = time.time()
            say(f"idle {params['tail_s']:g} s (every source catches up; SNMP's cache expires)")
            drive.pause(params["tail_s"])
            phase["t_end"] = time.time()
        finally:
            cap.stop()
            phase["tcpdump"] = cap.stats()
            phase["cpu_after"] = {k: cpu_ticks(pid) for k, pid in procs.items()}
            (out / PHASE).write_text(json.dumps(phase, indent=2) + "\n")
        span = int(time.time() - phase["t_idle_start"]) + 5
        series = {"queried_at": time.time(), "span_s": span,
                  **{src: prom.api("query", query=f"{sel}[{span}s]")["result"] for src, (sel, _) in QPS_SOURCES.items()},
                  "snmp": prom.api("query", query=f'{{__name__=~"{"|".join(SNMP_COUNTERS)}",job="snmp",'
                                                  f'server="{server}",ifName="{intf}"}}[{span}s]')["result"]}
        (out / SERIES).write_text(json.dumps(series) + "\n")

    # --- judging -------------------------------------------------------------------------------------------------
    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        phase = json.loads((raw / PHASE).read_text())
        series = json.loads((raw / SERIES).read_text())
        rows = read_openloop(raw / LOAD)
        sends = sorted(r.t_send for r in rows if r.error != "not_sent")
        failed = sum(not r.ok for r in rows)
        a, b, end = phase["t_idle_start"], phase["t_load_start"], phase["t_end"]
        m: dict[str, Any] = {"generated": len(sends), "scheduled": len(rows), "failed": failed,
                             "failed_fraction": rounded(failed / max(1, len(rows)), 4),
                             "generator_short": len(sends) < params["gen_accuracy"] * max(1, len(rows)),
                             "tcpdump_lost": phase.get("tcpdump", {}).get("lost")}
        notes, found_resets, shown = [], 0, {}
        for src, (sel, what) in QPS_SOURCES.items():
            parts = samples(series[src])
            found_resets += sum(resets(pts) for _, pts in parts)
            got = [(labels, pts, counted(pts, a, b, end)) for labels, pts in parts]
            total = sum(c["count"] for _, _, c in got)
            idle = sum(c["idle_rate"] for _, _, c in got)
            delays = [d for _, pts, c in got if c["count"] > 0.05 * total
                      for d in lags(pts, c, sends, c["count"] / total if total else 0)]
            err = total / len(sends) - 1 if sends else None
            m.update({f"{src}_count": rounded(total, 1), f"{src}_idle_rate": rounded(idle, 3),
                      f"{src}_qps_error": rounded(err, 4) if err is not None else None,
                      f"{src}_qps_deviation": rounded(abs(err), 4) if err is not None else None,
                      f"{src}_delay_s": rounded(statistics.median(delays), 3) if delays else None,
                      f"{src}_delay_samples": len(delays), f"{src}_series": len(parts)})
            shown[src] = [(t, sum(v for v in [value_at(p, t)[1] if value_at(p, t) else 0.0 for _, p in parts]))
                          for t in sorted({t for _, pts in parts for t, _ in pts})]
            if err is not None:
                notes.append(f"{src} ({what}): {total:.0f} requests beyond its idle {idle:.2f}/s vs {len(sends)} "
                             f"generated ({err:+.2%}), delay {m[f'{src}_delay_s']} s")
        self.judge_snmp(raw, phase, series, m, notes)
        found_resets += sum(resets(pts) for _, pts in samples(series["snmp"]))
        m["counter_resets"] = found_resets
        self.costs(phase, m)
        pngs = self.draw(case, sends, shown, m, phase, plots_dir)
        return self.verdict(case, m, params, pngs, notes=notes)

    def judge_snmp(self, raw: Path, phase: dict[str, Any], series: dict[str, Any], m: dict[str, Any],
                   notes: list[str]) -> None:
        """SNMP's (in + out) octet rate against the capture's byte rate, between the same two sample times."""
        parts = samples(series["snmp"])
        by_t: dict[float, float] = {}
        for labels, pts in parts:
            for t, v in pts:
                by_t[t] = by_t.get(t, 0.0) + v
        # a walk returns both counters at one timestamp: keep the times that have both
        times = sorted(t for t in by_t if sum(1 for _, pts in parts if any(x == t for x, _ in pts)) == len(parts))
        pts = [(t, by_t[t]) for t in times] if len(parts) == len(SNMP_COUNTERS) else []
        m["snmp_samples"] = len(pts)
        if len(pts) < 2:
            return
        c = counted(pts, phase["t_idle_start"], phase["t_load_start"], phase["t_end"])
        ct, cum = capture_bytes(raw / CAPTURE)
        before, after = value_at(pts, phase["t_load_start"]), value_at(pts, phase["t_end"])
        if before is None or after is None or after[0] <= before[0] or not ct or ct[0] > before[0]:
            notes.append("SNMP: no pair of samples inside the capture around the load")
            return
        dt = after[0] - before[0]
        snmp_rate = (after[1] - before[1]) / dt
        cap_rate = bytes_between(ct, cum, before[0], after[0]) / dt
        err = snmp_rate / cap_rate - 1 if cap_rate else None
        # the capture's running byte count from the first SNMP sample's time: the reference of SNMP's delay
        base = bytes_between(ct, cum, ct[0] - 1, before[0])
        ref_times = ct
        ref_counts = [x - base for x in cum]
        delays = []
        load = after[1] - before[1]
        for t, v in pts:
            so_far = v - before[1]
            if before[0] < t and 0.1 * load <= so_far <= 0.9 * load:
                k = bisect.bisect_left(ref_counts, so_far)
                if k < len(ref_times):
                    delays.append(t - ref_times[k])
        m.update({"snmp_rate_Bps": rounded(snmp_rate, 1), "capture_rate_Bps": rounded(cap_rate, 1),
                  "snmp_window_s": rounded(dt, 3), "snmp_idle_rate_Bps": rounded(c["idle_rate"], 1),
                  "snmp_rate_error": rounded(err, 4) if err is not None else None,
                  "snmp_rate_deviation": rounded(abs(err), 4) if err is not None else None,
                  "snmp_delay_s": rounded(statistics.median(delays), 3) if delays else None,
                  "snmp_delay_max_s": rounded(max(delays), 3) if delays else None, "snmp_delay_samples": len(delays)})
        if err is not None:
            notes.append(f"snmp ({phase['server']} {phase['interface']}): {snmp_rate / 1e6:.3f} MB/s vs the capture's "
                         f"{cap_rate / 1e6:.3f} MB/s over {dt:.1f} s ({err:+.2%}), delay {m['snmp_delay_s']} s "
                         f"(max {m['snmp_delay_max_s']} s)")

    def costs(self, phase: dict[str, Any], m: dict[str, Any]) -> None:
        """CPU seconds of each source's processes over the run, on the servers and on the monitor."""
        before, after, tck = phase["cpu_before"], phase["cpu_after"], phase["clk_tck"]
        complete = True
        for src, where in COST.items():
            on: dict[str, float] = {"servers": 0.0, "monitor": 0.0}
            for host, kind in where:
                for h in (phase["web"] if host == "web" else [host]):
                    k = f"{h}/{kind}"
                    if before.get(k) is None or after.get(k) is None:
                        complete = False
                        continue
                    on["servers" if host == "web" else "monitor"] += (after[k] - before[k]) / tck
            m[f"{src}_cpu_s_servers"] = rounded(on["servers"], 3)
            m[f"{src}_cpu_s_monitor"] = rounded(on["monitor"], 3)
        m["costs_reported"] = complete

    def draw(self, case: Case, sends: list[float], shown: dict[str, list[tuple[float, float]]], m: dict[str, Any],
             phase: dict[str, Any], plots_dir: Path) -> list[str]:
        """Each source's count over time against the generator's, and the errors side by side."""
        t0 = phase["t_idle_start"]
        lines = {"generator (requests sent)": ([t0, *sends, phase["t_end"]], [0, *range(1, len(sends) + 1), len(sends)])}
        for src, pts in shown.items():
            inside = [(t, v) for t, v in pts if t0 <= t <= phase["t_end"]]
            if inside:
                v0 = value_at(inside, phase["t_load_start"])
                start = v0[1] if v0 else inside[0][1]
                rate = m.get(f"{src}_idle_rate") or 0.0
                lines[f"{src} (less its idle rate)"] = ([t for t, _ in inside],
                                                       [v - start - rate * (t - phase["t_load_start"])
                                                        for t, v in inside])
        timeline = plots.series_timeline(lines, plots_dir / f"{case.name}-counts.png",
                                         "C25 requests counted by each source vs sent", "requests", t0,
                                         windows=[(phase["t_load_start"], phase["t_load_end"], "load")])
        bars = plots.grouped_bars({src: {"error %": 100 * (m.get(f"{src}_{'rate' if src == 'snmp' else 'qps'}_error")
                                                           or 0.0),
                                         "delay s": m.get(f"{src}_delay_s") or 0.0} for src in SOURCES},
                                  plots_dir / f"{case.name}-error-delay.png",
                                  "C25 each source: error against the truth (%) and delay (s)", "% / s")
        return [str(timeline), str(bars)]
