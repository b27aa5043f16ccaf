"""C16 http-exchange: one page load is a TCP handshake, a GET, and a 200 with text/html, in that order."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments import plots
from experiments.base import Case, Experiment, say
from experiments.capture import PacketEvent, tcp_events, wait_capture_ready
from experiments.registry import register
from experiments.stats import rounded
from experiments.verdict import PRESENT, REFUTED, Check, Figure, Verdict, inconclusive

STEPS = ("SYN", "SYN-ACK", "ACK", "GET", "200 text/html")


def frame_key(step: str) -> str:
    """The measured key holding the frame number of a step: frame_syn, frame_syn_ack, ..., frame_200."""
    return f"frame_{step.split()[0].lower().replace('-', '_')}"


def first_connection(events: list[PacketEvent]) -> list[PacketEvent]:
    """The segments of the first connection a client opened (first SYN without ACK), in order."""
    syn = next((e for e in events if e.kind == "SYN"), None)
    if syn is None:
        return []
    key = {(syn.src, syn.sport, syn.dst, syn.dport), (syn.dst, syn.dport, syn.src, syn.sport)}
    return [e for e in events if (e.src, e.sport, e.dst, e.dport) in key]


def match_steps(conn: list[PacketEvent]) -> dict[str, int | None]:
    """Frame of each expected step, each searched after the previous one (None when absent in order)."""
    if not conn:
        return {s: None for s in STEPS}
    client, server = conn[0].src, conn[0].dst
    tests = {
        "SYN": lambda e: e.kind == "SYN" and e.src == client,
        "SYN-ACK": lambda e: e.kind == "SYN-ACK" and e.src == server,
        "ACK": lambda e: e.kind == "ACK" and e.src == client,
        "GET": lambda e: e.kind == "DATA" and e.src == client and e.label.startswith("GET "),
        "200 text/html": lambda e: e.kind == "DATA" and e.src == server and e.label.startswith("HTTP/1.")
        and " 200 " in e.label and "text/html" in e.label,
    }
    found: dict[str, int | None] = {}
    i = 0
    for step in STEPS:
        hit = next((j for j in range(i, len(conn)) if tests[step](conn[j])), None)
        found[step] = conn[hit].frame if hit is not None else None
        i = hit + 1 if hit is not None else len(conn)
    return found


@register
class HttpExchange(Experiment):
    """Capture one page load by curl on the client's link and check the packet order."""

    slug = "http-exchange"
    claim = "C16"
    title = "A page load is TCP handshake, GET, 200 text/html"
    statement = "The browser and the server talk HTTP over TCP: handshake, request, response with HTML."
    design = "one-server"
    defaults = {"url": "http://www.foobar.com/", "port": 80, "host": "client", "switch": "s1"}
    timing_sensitive = False
    checks = tuple(Check(frame_key(step), PRESENT, None, f"{step} frame", missing=REFUTED, absent="NOT FOUND in order")
                   for step in STEPS)
    figures = {"handshake_ms": Figure("TCP handshake (SYN -> ACK)", "ms", rel_tol=1.0, abs_tol=1.0),
               "response_ms": Figure("GET -> 200 response", "ms", rel_tol=1.0, abs_tol=2.0)}
    summary = ("one page load was a TCP handshake in {handshake_ms}, a GET (frame {frame_get}) and a 200 text/html "
               "response (frame {frame_200}) {response_ms} later",)

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"tcpdump on the client's link during one curl of {p['url']}; in the first TCP connection of the page "
                f"load each step is searched after the previous one")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        host = params["host"]
        intf = lab.link_intfs(host, params["switch"])[0]
        pcap = out / "page.pcap"
        cap = lab.capture(host, intf, pcap, bpf=f"tcp port {params['port']}")
        try:
            if not wait_capture_ready(pcap, 5):
                raise RuntimeError(f"tcpdump on {host}:{intf} did not start writing {pcap} within 5 s")
            argv = ["curl", "-s", "-o", str(out / "body.html"), "-D", str(out / "headers.txt"),
                    "-w", "%{http_code} %{content_type} %{remote_ip} %{time_total}", "--max-time", "10", params["url"]]
            say(f"curl {params['url']}")
            res = lab.exec(host, argv, timeout=20)
            (out / "curl.txt").write_text(res.stdout + res.stderr)
        finally:
            cap.stop()

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        events = tcp_events(raw / "page.pcap", params["port"])
        if not events:
            return inconclusive(rule, "page.pcap holds no TCP segment on port %d" % params["port"])
        conn = first_connection(events)
        found = match_steps(conn)
        t = {e.frame: e.time for e in conn}
        m: dict[str, Any] = {frame_key(k): v for k, v in found.items()}
        m["segments"] = len(conn)
        if conn:
            m["client"], m["server"] = conn[0].src, conn[0].dst
        if found["SYN"] and found["ACK"]:
            m["handshake_ms"] = rounded((t[found["ACK"]] - t[found["SYN"]]) * 1000, 3)
        if found["GET"] and found["200 text/html"]:
            m["response_ms"] = rounded((t[found["200 text/html"]] - t[found["GET"]]) * 1000, 3)
        curl = raw / "curl.txt"
        if curl.exists():
            m["curl"] = curl.read_text().strip()
        shown = conn[:24]
        png = plots.sequence(shown, conn[0].src if conn else "?", conn[0].dst if conn else "?",
                             plots_dir / f"{case.name}-sequence.png", f"C16 one page load ({case.name})")
        return self.verdict(case, m, params, [png])
