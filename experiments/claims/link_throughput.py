"""C27 link-throughput: throughput measured from packets agrees with the endpoints' and the switch's
own counts; TLS costs bytes on the wire.

Both of lb1's links (lb-front to the client, lb-back to the servers) are captured at lb1's end while
traffic crosses the load balancer: a bulk transfer (iperf3 through HAProxy in TCP mode on lb1) and an
HTTP load (wrk, with kept-alive connections and with a connection per request). From each capture
(experiments.throughput, streamed), in the window between two readings of the switch ports' counters:

- goodput (TCP payload, each sequence byte once) vs iperf3's received bytes, and vs wrk's bytes read
  for plain HTTP;
- wire bytes per direction vs the OpenFlow counters of the switch port facing lb1;
- wire bytes per request for HTTP vs HTTPS, terminate vs reencrypt on the backend link, and the TLS
  record overhead seen without keys.

tcpdump's own loss count (dropped, or seen by the kernel but never written) makes a run inconclusive:
a capture that missed packets cannot be wrong about the design, only incomplete.
"""
from __future__ import annotations

import csv
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from experiments import plots, throughput
from experiments.background import Background
from experiments.base import Case, Experiment, say
from experiments.fidelity import window
from experiments.load import parse_wrk, run_wrk
from experiments.registry import register
from experiments.verdict import Check, Figure, P, Verdict, gate
from weblab.core.wait import wait_for

# link -> (the host whose end is captured, the switch, a host on that network)
LINKS = {"lb-front": ("lb1", "s1", "client"), "lb-back": ("lb1", "s2", "server1")}
SHORT = {"lb-front": "front", "lb-back": "back"}
# case -> (design, lab parameters, phases); a phase is (name, tool)
CASES = {
    "distributed": ("distributed", {}, (("bulk", "iperf3"), ("http", "wrk"), ("http-close", "wrk-close"))),
    "terminate": ("secured", {"params": {"tls": "terminate", "monitoring": False}},
                  (("https", "wrk"), ("https-close", "wrk-close"))),
    "reencrypt": ("secured", {"params": {"tls": "reencrypt", "monitoring": False}},
                  (("https", "wrk"), ("https-close", "wrk-close"))),
}
PHASE_FILE = "phase.json"
COUNTERS_FILE = "counters.csv"
CAPTURE_BUFFER_KIB = 32768
BULK_CFG = """# HAProxy in TCP mode for the bulk transfer of C27 (written by experiments/claims/link_throughput.py)
global
    maxconn 64
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
listen bulk
    bind {bind}:{port}
    server {server} {address}:{port}
"""


def sample(lab: Any) -> dict[str, dict[str, float]]:
    """The switch port counters facing lb1 on each link, with the time each was read (the midpoint)."""
    out = {}
    for name, (host, switch, _) in LINKS.items():
        t0 = time.time()
        c = lab.port_counters(host, switch)
        t1 = time.time()
        out[name] = {"t": (t0 + t1) / 2, "read_s": t1 - t0, **c}
    return out


class CounterSampler(Background):
    """Port counters every interval into counters.csv (the switch's view over time, for the plots)."""

    thread_name = "port-counters"

    def __init__(self, lab: Any, path: Path, interval: float):
        super().__init__()
        self.lab, self.path, self.interval = lab, path, interval

    def _loop(self) -> None:
        with open(self.path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["t", "link", "rx_bytes", "tx_bytes", "rx_packets", "tx_packets"])
            while True:
                try:
                    for name, c in sample(self.lab).items():
                        w.writerow([f"{c['t']:.6f}", name, c["rx_bytes"], c["tx_bytes"], c["rx_packets"],
                                    c["tx_packets"]])
                    f.flush()
                except Exception as exc:  # a failed read leaves a gap in the plot, not a failed run
                    w.writerow([f"{time.time():.6f}", f"error: {exc}", "", "", "", ""])
                if self._stop.wait(self.interval):
                    return


def wait_quiet(lab: Any, quiet: float = 0.1, timeout: float = 2.0) -> dict[str, dict[str, float]]:
    """Port counters once they stopped moving for `quiet` s (the transfer's tail is through), bounded."""
    deadline = time.monotonic() + timeout
    last = sample(lab)
    while time.monotonic() < deadline:
        time.sleep(quiet)  # bounded poll: the switch has no "idle" signal
        now = sample(lab)
        if all(now[n]["rx_bytes"] == last[n]["rx_bytes"] and now[n]["tx_bytes"] == last[n]["tx_bytes"] for n in now):
            return now
        last = now
    return last


def read_counters(path: Path) -> dict[str, list[tuple[float, int, int]]]:
    """counters.csv -> link -> [(t, rx_bytes, tx_bytes)]."""
    out: dict[str, list[tuple[float, int, int]]] = {}
    if not path.exists():
        return out
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["link"] in LINKS and r["rx_bytes"]:
                out.setdefault(r["link"], []).append((float(r["t"]), int(r["rx_bytes"]), int(r["tx_bytes"])))
    return out


CHECKS = (
    gate("phases_unread", "==", 0, "phases without a switch counter reading at both ends",
         fail="the switch counters were not read at both ends of a phase"),
    gate("tcpdump_lost", "==", 0, "packets tcpdump lost (dropped, or seen and not written) over every capture",
         fail="a capture is incomplete: tcpdump lost packets (a count that missed packets cannot be judged)"),
    gate("pcaps_truncated", "==", 0, "pcaps cut mid-record", fail="a pcap ends in a partly written record"),
    gate("tools_not_run", "==", 0, "phases whose tool (iperf3, wrk) did not run", "names",
         fail="the load did not run"),
    Check("goodput_iperf3_error_max", "<=", P("tolerance"),
          "largest deviation of the bulk goodput on lb-front and lb-back from iperf3's received bytes", "%",
          cases=("distributed",)),
    Check("goodput_wrk_error_max", "<=", P("tolerance"),
          "largest deviation of the goodput lb1 -> client from wrk's bytes read (plain HTTP)", "%",
          cases=("distributed",)),
    Check("wire_counter_error_max", "<=", P("tolerance"),
          "largest deviation of wire bytes from the switch port counters (every phase, link and direction of "
          ">= {min_bytes} bytes)", "%"),
)


def error(value: float | None, ref: float | None) -> float | None:
    """|value / ref - 1|: how far a count is from its reference (None without one)."""
    return round(abs(value / ref - 1), 6) if value is not None and ref else None


def ratio(value: float | None, ref: float | None) -> float | None:
    return round(value / ref, 5) if value is not None and ref else None


@register
class LinkThroughput(Experiment):
    """Capture both links of lb1 during a bulk transfer and HTTP loads; compare with iperf3, wrk and the switch."""

    slug = "link-throughput"
    claim = "C27"
    title = "Throughput from packets agrees with the endpoints and the switch"
    statement = ("Throughput measured from packets (Scapy, from a capture) agrees with the endpoints' own figures; "
                 "TLS costs bytes on the wire.")
    design = "distributed"
    defaults = {"bulk_s": 3, "bulk_port": 5201, "load_s": 2, "connections": 8, "threads": 2,
                "path": "/static/hello.txt", "bulk_snaplen": 128, "load_snaplen": 0, "tolerance": 0.03,
                "min_bytes": 65536, "sample_s": 0.25, "bin_s": 0.1}
    timing_sensitive = False  # the claim is about counting, not speed: a busy machine shows in tcpdump's loss
    checks = CHECKS
    figures = {
        "distributed.goodput_iperf3_error_max": Figure("largest deviation of goodput from iperf3's count", "%",
                                                       abs_tol=0.03),
        "distributed.wire_counter_error_max": Figure("largest deviation of wire bytes from the switch counters", "%",
                                                     abs_tol=0.03),
        "distributed.bulk.front.goodput_to_iperf3": Figure("goodput on lb-front / iperf3's received bytes", "x",
                                                           abs_tol=0.03),
        "distributed.bulk.back.goodput_to_iperf3": Figure("goodput on lb-back / iperf3's received bytes", "x",
                                                          abs_tol=0.03),
        "distributed.bulk.front.wire_in_to_counter": Figure("bulk wire bytes into lb1 on lb-front / the switch "
                                                            "port's count", "x", abs_tol=0.03),
        "distributed.bulk.back.wire_out_to_counter": Figure("bulk wire bytes out of lb1 on lb-back / the switch "
                                                            "port's count", "x", abs_tol=0.03),
        "distributed.http.front.goodput_to_wrk_read": Figure("HTTP goodput to the client / wrk's bytes read", "x",
                                                             abs_tol=0.03),
        "distributed.bulk.iperf3_gbps": Figure("iperf3 through HAProxy (TCP mode)", "Gbit/s", rel_tol=0.5),
        "https_to_http_bytes_per_request": Figure("wire bytes per request on lb-front, HTTPS / HTTP (kept alive)",
                                                  "x", abs_tol=0.15),
        "https_to_http_bytes_per_request_close": Figure("wire bytes per request on lb-front, HTTPS / HTTP (a "
                                                        "connection each)", "x", abs_tol=0.4),
        "reencrypt_to_terminate_back_bytes_per_request": Figure("wire bytes per request on lb-back, reencrypt / "
                                                                "terminate (kept alive)", "x", abs_tol=0.2),
    }
    summary = ("the goodput counted from the packets was within {distributed.goodput_iperf3_error_max} of iperf3's "
               "received bytes on both of lb1's links, and the wire bytes within {distributed.wire_counter_error_max} "
               "of the switch port counters",
               "HTTPS took {https_to_http_bytes_per_request} the wire bytes per request of HTTP with kept-alive "
               "connections and {https_to_http_bytes_per_request_close} with a connection per request")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case(name, design, lab) for name, (design, lab, _) in CASES.items()]

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"captures of lb-front and lb-back at lb1 (tcpdump, snaplen {p['bulk_snaplen']} for the bulk transfer, "
                f"{p['load_snaplen'] or 'whole frames'} for the HTTP loads) analysed with Scapy between two readings of "
                f"the OpenFlow counters of the switch ports facing lb1: a bulk transfer (iperf3 -J, {p['bulk_s']} s, "
                f"through HAProxy in TCP mode on lb1) and wrk ({p['load_s']} s, {p['connections']} connections, kept "
                f"alive and one per request) over HTTP (distributed) and HTTPS (secured, terminate and reencrypt). "
                f"Directions under {p['min_bytes']} bytes are reported, not judged; HTTPS vs HTTP wire bytes per "
                f"request, terminate vs reencrypt on lb-back and the TLS record overhead are reported")

    # --- running ------------------------------------------------------------------------------------
    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        local = {name: lab.address_on(host, peer) for name, (host, _, peer) in LINKS.items()}
        (out / "links.json").write_text(json.dumps({"local": local, "links": LINKS}, indent=2) + "\n")
        for phase, tool in CASES[case.name][2]:
            self.run_phase(lab, case, out / phase, phase, tool, params)

    def run_phase(self, lab: Any, case: Case, pdir: Path, phase: str, tool: str, params: dict[str, Any]) -> None:
        pdir.mkdir(parents=True, exist_ok=True)
        snaplen = params["bulk_snaplen"] if tool == "iperf3" else params["load_snaplen"]
        helpers = self.start_bulk(lab, pdir, params) if tool == "iperf3" else []
        caps: dict[str, Any] = {}
        info: dict[str, Any] = {"phase": phase, "tool": tool, "snaplen": snaplen}
        try:
            for name, (host, switch, _) in LINKS.items():
                caps[name] = lab.capture(host, lab.link_intfs(host, switch)[0], pdir / f"{name}.pcap",
                                         snaplen=snaplen, buffer_kib=CAPTURE_BUFFER_KIB)
            info["begin"] = wait_quiet(lab)
            with CounterSampler(lab, pdir / COUNTERS_FILE, params["sample_s"]), window(pdir.parent, phase):
                t0 = time.time()
                if tool == "iperf3":
                    self.run_iperf3(lab, pdir, params)
                else:
                    self.run_load(lab, case, pdir, tool, params)
                info["tool_window"] = [t0, time.time()]
            info["end"] = wait_quiet(lab)
        finally:
            for cap in caps.values():
                cap.stop()
            for p in helpers:
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        p.kill()
            info["captures"] = {name: {"pcap": f"{name}.pcap", "tcpdump": cap.stats()} for name, cap in caps.items()}
            (pdir / PHASE_FILE).write_text(json.dumps(info, indent=2) + "\n")

    def start_bulk(self, lab: Any, pdir: Path, params: dict[str, Any]) -> list[subprocess.Popen]:
        """iperf3 -s on server1 and HAProxy in TCP mode on lb1 in front of it; ready when both listen."""
        port, server = params["bulk_port"], LINKS["lb-back"][2]
        bind = lab.address_on("lb1", LINKS["lb-front"][2])
        cfg = pdir / "haproxy-bulk.cfg"
        cfg.write_text(BULK_CFG.format(bind=bind, port=port, server=server, address=lab.ip(server)))
        procs = []
        with open(pdir / "iperf3-server.log", "wb") as log:
            procs.append(lab.popen(server, ["iperf3", "-s", "-1", "-B", lab.ip(server), "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT))
        with open(pdir / "haproxy-bulk.log", "wb") as log:
            procs.append(lab.popen("lb1", ["haproxy", "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT))
        for host in (server, "lb1"):
            wait_for(lambda host=host: f":{port} " in lab.exec(host, ["ss", "-ltnH"], timeout=5).stdout, 5,
                     f"port {port} listening on {host} (the bulk transfer's {'iperf3' if host == server else 'HAProxy'})",
                     pdir / ("iperf3-server.log" if host == server else "haproxy-bulk.log"))
        return procs

    def run_iperf3(self, lab: Any, pdir: Path, params: dict[str, Any]) -> None:
        target = lab.address_on("lb1", LINKS["lb-front"][2])
        say(f"iperf3 {params['bulk_s']} s client -> lb1:{params['bulk_port']} (HAProxy, TCP) -> server1, "
            f"capturing lb-front and lb-back")
        res = lab.exec("client", ["iperf3", "-c", target, "-p", str(params["bulk_port"]), "-t", str(params["bulk_s"]),
                                  "-i", "0.5", "-J"], timeout=params["bulk_s"] + 30)
        (pdir / "iperf3.json").write_text(res.stdout or json.dumps({"error": res.stderr.strip() or "no output"}))

    def run_load(self, lab: Any, case: Case, pdir: Path, tool: str, params: dict[str, Any]) -> None:
        scheme = "http" if case.design == "distributed" else "https"
        url = f"{scheme}://www.foobar.com{params['path']}"
        close = tool == "wrk-close"
        say(f"wrk {params['load_s']} s {url}{' (a connection per request)' if close else ''} ({case.name})")
        try:
            run_wrk(lab, "client", url, params["load_s"], pdir / "wrk.txt", connections=params["connections"],
                    threads=params["threads"], headers=("Connection: close",) if close else ())
        except ValueError as exc:  # the raw output is kept; judge() says wrk did not run
            say(f"wrk: {exc}")

    # --- judging ------------------------------------------------------------------------------------
    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        local = json.loads((raw / "links.json").read_text())["local"]
        m: dict[str, Any] = {}
        pngs: list[str] = []
        unread: list[str] = []
        for phase, tool in CASES[case.name][2]:
            pdir = raw / phase
            info = json.loads((pdir / PHASE_FILE).read_text())
            if "begin" not in info or "end" not in info:
                unread.append(phase)
                continue
            m[f"{phase}.counter_window_s"] = round(min(info["end"][n]["t"] - info["begin"][n]["t"] for n in LINKS), 3)
            results = {link: self.link_figures(pdir, info, link, local[link], params, m, phase) for link in LINKS}
            self.tool_figures(case, pdir, phase, tool, results, params, m)
            pngs.append(str(self.timeline(case, pdir, phase, tool, info, results, params, plots_dir)))
        m.update(self.aggregates(case, m, unread))
        return self.verdict(case, m, params, pngs, self.report_lines(case, m))

    @staticmethod
    def aggregates(case: Case, m: dict[str, Any], unread: list[str]) -> dict[str, Any]:
        """What the checks judge: the worst deviation of each kind (and where), losses and gaps summed."""
        phases = CASES[case.name][2]
        lost = [m.get(f"{p}.{s}.tcpdump_lost") for p, _ in phases for s in SHORT.values() if p not in unread]
        out: dict[str, Any] = {
            "phases_unread": unread,
            "tcpdump_lost": None if any(x is None for x in lost) else sum(lost),
            "pcaps_truncated": sum(m.get(f"{p}.{s}.truncated", 0) for p, _ in phases for s in SHORT.values()),
            "tools_not_run": [p for p, tool in phases if p not in unread and
                              not m.get(f"{p}.iperf3_received_bytes" if tool == "iperf3" else f"{p}.wrk_requests")]}
        kinds = {"wire_counter_error": [f"{p}.{s}.wire_{d}_error" for p, _ in phases for s in SHORT.values()
                                        for d in ("out", "in")],
                 "goodput_iperf3_error": [f"{p}.{s}.goodput_error" for p, t in phases if t == "iperf3"
                                          for s in SHORT.values()],
                 "goodput_wrk_error": [f"{p}.front.goodput_wrk_error" for p, t in phases if t != "iperf3"
                                       and case.design == "distributed"]}
        for kind, keys in kinds.items():
            values = [(m[k], k) for k in keys if m.get(k) is not None]
            if values:  # none: not measured (the gates, or the check, say so)
                out[f"{kind}_max"], where = max(values)
                out[f"{kind}_worst"] = where.rsplit("_error", 1)[0]
        return out

    def link_figures(self, pdir: Path, info: dict, link: str, local: str, params: dict[str, Any],
                     m: dict[str, Any], phase: str) -> Any:
        """Analyse one link's capture of a phase, in the window between the counter readings."""
        key = f"{phase}.{SHORT[link]}"
        stats = info.get("captures", {}).get(link, {}).get("tcpdump", {})
        m[f"{key}.tcpdump_lost"] = stats.get("lost")  # None: tcpdump printed no counts (it did not finish)
        m[f"{key}.tcpdump_dropped"] = stats.get("dropped", 0) + stats.get("dropped_interface", 0)
        m[f"{key}.tcpdump_unwritten"] = stats.get("unwritten")
        b, e = info["begin"][link], info["end"][link]
        r = throughput.analyse(pdir / f"{link}.pcap", bin_s=params["bin_s"], start=b["t"], end=e["t"], local=local)
        m[f"{key}.truncated"] = int(r.truncated)
        m[f"{key}.packets"] = r.packets
        for d, counter in (("out", e["rx_bytes"] - b["rx_bytes"]), ("in", e["tx_bytes"] - b["tx_bytes"])):
            wire = r.directions[d]["wire_bytes"]
            m[f"{key}.wire_{d}_bytes"] = wire
            m[f"{key}.counter_{d}_bytes"] = counter
            m[f"{key}.wire_{d}_to_counter"] = ratio(wire, counter)
            # a direction too small to resolve the tolerance is reported, not judged
            m[f"{key}.wire_{d}_error"] = error(wire, counter) if counter >= params["min_bytes"] else None
        tcp = r.summary()["tcp"]
        for k in ("goodput_bytes", "retrans_segments", "retrans_bytes", "ooo_segments"):
            m[f"{key}.{k}"] = tcp[k]
        return r

    def tool_figures(self, case: Case, pdir: Path, phase: str, tool: str, results: dict, params: dict[str, Any],
                     m: dict[str, Any]) -> None:
        """The endpoint's own figures for a phase, and how the packets compare with them."""
        front, back = results["lb-front"], results["lb-back"]
        if tool == "iperf3":
            data = json.loads((pdir / "iperf3.json").read_text() or "{}")
            m[f"{phase}.iperf3_error"] = data.get("error")
            if data.get("error") or "end" not in data:
                return
            received = data["end"]["sum_received"]["bytes"]
            m[f"{phase}.iperf3_received_bytes"] = received
            m[f"{phase}.iperf3_sent_bytes"] = data["end"]["sum_sent"]["bytes"]
            m[f"{phase}.iperf3_gbps"] = round(data["end"]["sum_received"]["bits_per_second"] / 1e9, 4)
            m[f"{phase}.iperf3_retransmits"] = data["end"]["sum_sent"].get("retransmits")
            port = params["bulk_port"]
            for link, r, d in (("lb-front", front, "in"), ("lb-back", back, "out")):
                good = sum(f.goodput_bytes for f in r.select(direction=d, proto="tcp") if f.dport == port)
                key = f"{phase}.{SHORT[link]}"
                m[f"{key}.bulk_goodput_bytes"] = good
                m[f"{key}.goodput_to_iperf3"] = ratio(good, received)
                m[f"{key}.goodput_error"] = error(good, received)
                m[f"{key}.goodput_mbps"] = round(good * 8 / r.duration_s / 1e6, 2) if r.duration_s else None
            return
        try:
            w = parse_wrk((pdir / "wrk.txt").read_text())
        except (ValueError, FileNotFoundError):
            return  # wrk_requests not measured: its gate says wrk did not run
        m[f"{phase}.wrk_requests"] = w.requests
        if not w.requests:
            return
        m[f"{phase}.wrk_rps"] = round(w.requests_per_s, 1)
        m[f"{phase}.wrk_read_bytes"] = round(w.read_bytes)
        m[f"{phase}.wrk_failed"] = w.failed
        port = 443 if case.design == "secured" else 80
        served = [f for f in front.select(direction="out", proto="tcp") if f.sport == port]
        good = sum(f.goodput_bytes for f in served)
        for link, r in (("lb-front", front), ("lb-back", back)):
            key = f"{phase}.{SHORT[link]}"
            m[f"{key}.bytes_per_request"] = round(r.wire_bytes / w.requests, 1)
            m[f"{key}.goodput_per_request"] = round(sum(f.goodput_bytes for f in r.flows) / w.requests, 1)
        if port == 80:
            m[f"{phase}.front.served_goodput_bytes"] = good
            m[f"{phase}.front.goodput_to_wrk_read"] = ratio(good, w.read_bytes)
            m[f"{phase}.front.goodput_wrk_error"] = error(good, w.read_bytes)
        else:
            tls = front.tls()
            app = sum(f.tls.app_bytes_estimate for f in served if f.tls)
            m[f"{phase}.front.tls_records"] = sum(tls.records.values())
            m[f"{phase}.front.tls_version"] = tls.version
            m[f"{phase}.front.tls_record_bytes"] = tls.record_bytes
            m[f"{phase}.front.tls_header_bytes"] = tls.header_bytes
            m[f"{phase}.front.tls_handshake_bytes"] = tls.body_bytes.get("Handshake", 0) + \
                tls.body_bytes.get("ChangeCipherSpec", 0)
            m[f"{phase}.front.tls_unparsed_bytes"] = tls.unparsed_bytes
            m[f"{phase}.front.tls_app_estimate_to_wrk_read"] = ratio(app, w.read_bytes)
            m[f"{phase}.front.tls_overhead_per_request"] = round((tls.record_bytes - tls.app_bytes_estimate)
                                                                 / w.requests, 1)
            m[f"{phase}.back.tls_records"] = sum(back.tls().records.values())
        self.__dict__.setdefault("_bars", {}).setdefault(case.name, {})[phase] = self.bar(front, w.requests)

    @staticmethod
    def bar(r: Any, requests: int) -> dict[str, float]:
        """Wire bytes per request on a link, split into what carries them."""
        wire = r.wire_bytes / requests
        good = sum(f.goodput_bytes for f in r.flows) / requests
        tls = r.tls()
        app = tls.app_bytes_estimate / requests if tls.records else good
        return {"application bytes (TLS: ApplicationData less AEAD, incl. 1.3's encrypted handshake, tickets)": app,
                "TLS (handshake, record headers, AEAD)": max(0.0, good - app),
                "TCP/IP/Ethernet headers, retransmissions": max(0.0, wire - good)}

    def report_lines(self, case: Case, m: dict[str, Any]) -> list[str]:
        out = []
        for phase, tool in CASES[case.name][2]:
            if tool == "iperf3" and f"{phase}.iperf3_gbps" in m:
                out.append(f"{phase}: iperf3 {m[f'{phase}.iperf3_gbps']} Gbit/s, {m[f'{phase}.iperf3_retransmits']} "
                           f"retransmissions by its sender; Scapy saw lb1 send "
                           f"{m.get(f'{phase}.back.retrans_segments')} segments twice on lb-back and "
                           f"{m.get(f'{phase}.front.ooo_segments')} segments fill gaps on lb-front (lost upstream "
                           f"of lb1, resent), {m.get(f'{phase}.front.retrans_segments')} arrive twice")
            elif f"{phase}.wrk_requests" in m:
                line = (f"{phase}: {m[f'{phase}.front.bytes_per_request']} wire bytes per request on lb-front, "
                        f"{m[f'{phase}.back.bytes_per_request']} on lb-back ({m[f'{phase}.wrk_requests']} requests)")
                if f"{phase}.front.tls_records" in m:
                    line += (f"; TLS {m[f'{phase}.front.tls_version']}: {m[f'{phase}.front.tls_overhead_per_request']} "
                             f"bytes of TLS per request beyond the application's")
                out.append(line)
        return out

    def timeline(self, case: Case, pdir: Path, phase: str, tool: str, info: dict, results: dict,
                 params: dict[str, Any], plots_dir: Path) -> Path:
        """Bits/s over the phase on each link: Scapy's bins, the switch counters, and the tool's own figure."""
        counters = read_counters(pdir / COUNTERS_FILE)
        t0 = min(info["begin"][n]["t"] for n in LINKS)
        tool_series = self.tool_series(pdir, tool, info.get("tool_window"))
        panels = {}
        for link, r in results.items():
            base = (r.t_first or t0) - t0
            xs, wire = r.series(None, params["bin_s"])
            _, good = r.series(None, params["bin_s"], what="goodput")
            xs1, wire1 = r.series(None, 1.0)
            mid = params["bin_s"] / 2
            series = {f"Scapy: wire, {params['bin_s']:g} s bins": ([base + x + mid for x in xs], [y / 1e6 for y in wire], "-"),
                      "Scapy: TCP goodput": ([base + x + mid for x in xs], [y / 1e6 for y in good], "-"),
                      "Scapy: wire, 1 s bins": ([base + x for x in xs1] + [base + len(xs1)],
                                                [y / 1e6 for y in wire1] + [wire1[-1] / 1e6 if wire1 else 0], "step")}
            pts = counters.get(link, [])
            rates = [((a[0] + b[0]) / 2 - t0, ((b[1] - a[1]) + (b[2] - a[2])) * 8 / (b[0] - a[0]) / 1e6)
                     for a, b in zip(pts, pts[1:]) if b[0] > a[0]]
            if rates:
                series["switch port counters, both directions"] = ([x for x, _ in rates], [y for _, y in rates], "o--")
            if tool_series:
                series[tool_series[2]] = ([t - t0 for t in tool_series[0]], tool_series[1], "s:")
            panels[f"C27 {case.name} {phase}: {link}, both directions (captured at lb1)"] = series
        return plots.panels(panels, plots_dir / f"{case.name}-{phase}-throughput.png",
                            "time since the first counter reading (s)", "Mbit/s")

    @staticmethod
    def tool_series(pdir: Path, tool: str, when: list[float] | None) -> tuple[list[float], list[float], str] | None:
        """(times, Mbit/s, label) the tool reports: iperf3's intervals, or wrk's bytes read over its run."""
        if not when:
            return None
        if tool == "iperf3":
            try:
                ivs = [i["sum"] for i in json.loads((pdir / "iperf3.json").read_text())["intervals"]]
            except (ValueError, KeyError, FileNotFoundError):
                return None
            # iperf3's own start stamp is in whole seconds: its intervals are placed from the run's start
            return ([when[0] + (i["start"] + i["end"]) / 2 for i in ivs], [i["bits_per_second"] / 1e6 for i in ivs],
                    "iperf3 (sender's intervals, payload)")
        try:
            w = parse_wrk((pdir / "wrk.txt").read_text())
        except (ValueError, FileNotFoundError):
            return None
        rate = w.read_bytes * 8 / w.duration_s / 1e6 if w.duration_s else 0.0
        return [when[0], when[1]], [rate, rate], "wrk (bytes read, its run's mean)"

    # --- the contrast across cases --------------------------------------------------------------------
    def analyse(self, raw_dir: Path, plots_dir: Path | None = None) -> Verdict:
        self._bars: dict[str, dict[str, dict[str, float]]] = {}
        v = super().analyse(raw_dir, plots_dir)
        if self._bars:
            plots_dir = Path(plots_dir) if plots_dir else Path(raw_dir).parent / "plots"
            bars = {f"{c}\n{p}": b for c, phases in self._bars.items() for p, b in phases.items()}
            png = plots.stacked_bars(bars, plots_dir / "overhead.png",
                                     "C27 wire bytes per request on lb-front (wrk, static file)", "bytes per request")
            v.plots.append(str(png.relative_to(plots_dir.parent)))
        return v

    def conclude(self, parts: list[tuple[str, Verdict]], params: dict[str, Any]) -> Verdict:
        v = super().conclude(parts, params)
        by = dict(parts)

        def bpr(case: str, phase: str, link: str) -> float | None:
            return by[case].measured.get(f"{phase}.{link}.bytes_per_request") if case in by else None
        pairs = {"https_to_http_bytes_per_request": (("terminate", "https", "front"), ("distributed", "http", "front")),
                 "https_to_http_bytes_per_request_close": (("terminate", "https-close", "front"),
                                                           ("distributed", "http-close", "front")),
                 "reencrypt_to_terminate_back_bytes_per_request": (("reencrypt", "https", "back"),
                                                                   ("terminate", "https", "back")),
                 "reencrypt_to_terminate_back_bytes_per_request_close": (("reencrypt", "https-close", "back"),
                                                                         ("terminate", "https-close", "back"))}
        for name, (a, b) in pairs.items():
            x, y = bpr(*a), bpr(*b)
            if x and y:
                v.measured[name] = round(x / y, 3)
                v.reasons.append(f"{a[0]} {a[1]} on lb-{a[2]}: {x:g} wire bytes per request vs {b[0]} {b[1]}: "
                                 f"{y:g} (x{x / y:.2f})")
        return v
