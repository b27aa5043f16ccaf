"""A login on the wire: capture links while the client posts credentials, then look for them with Scapy.

Shared by C10 (https) and C11 (ssl-termination). The search is byte-exact on TCP payloads, also
across segment boundaries (experiments.capture.find_bytes); TLS records are counted by their
header, which is all a sniffer can read of HTTPS.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from experiments.base import say
from hostapps.accounts import WEB_PASSWORD, WEB_USER
from experiments.capture import context_of, find_bytes, payload_summary, tcp_events, tls_records

USERNAME, PASSWORD = WEB_USER, WEB_PASSWORD
FORM = f"username={USERNAME}&password={PASSWORD}"
NEEDLES = {"form": FORM.encode(), "password": PASSWORD.encode()}


def wait_quiet(path: Path, quiet: float = 0.3, timeout: float = 3.0) -> None:
    """Until the pcap has stopped growing for `quiet` s (the last segments written), bounded by timeout."""
    deadline = time.monotonic() + timeout
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = path.stat().st_size if path.exists() else 0
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)  # bounded poll: tcpdump gives no "flushed" signal


def capture_login(lab: Any, out: Path, links: dict[str, tuple[str, str]], url: str, bpf: str = "tcp") -> dict[str, Any]:
    """Capture each named link (host, peer) while the client posts the login form to url; write login.json."""
    caps = {}
    try:
        for name, (host, peer) in links.items():
            intf = lab.link_intfs(host, peer)[0]
            caps[name] = (lab.capture(host, intf, out / f"{name}.pcap", bpf=bpf), f"{host}:{intf}")
        say(f"login: POST {url} ({FORM.split('&')[0]}&password=...), capturing {', '.join(caps)}")
        t0 = time.time()
        res = lab.exec("client", ["curl", "-s", "-o", str(out / "login-body.html"), "-w",
                                  "%{http_code} %{remote_ip} %{scheme}", "--max-time", "10",
                                  "--data", FORM, url], timeout=20)
        t1 = time.time()
        for cap, _ in caps.values():
            wait_quiet(cap.path)
    finally:
        for cap, _ in caps.values():
            cap.stop()
    status, _, rest = res.stdout.strip().partition(" ")
    info = {"url": url, "form": FORM, "curl_exit": res.returncode, "http_code": status, "curl": res.stdout.strip(),
            "stderr": res.stderr.strip()[:500], "t_begin": t0, "t_end": t1,
            "links": {name: {"where": where, "pcap": f"{name}.pcap"} for name, (_, where) in caps.items()}}
    (out / "login.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def search(pcap: Path) -> dict[str, Any]:
    """What a sniffer of this pcap learns: credential hits (frames, context) and TLS records seen."""
    hits = {k: find_bytes(pcap, v) for k, v in NEEDLES.items()}
    recs = tls_records(pcap)
    types: dict[str, int] = {}
    for r in recs:
        types[r.content_type] = types.get(r.content_type, 0) + 1
    frame = (hits["password"] or [None])[0]
    http = [e.frame for e in tcp_events(pcap) if e.kind == "DATA" and
            (e.label.split(" ", 1)[0] in ("GET", "POST", "HEAD", "PUT") or e.label.startswith("HTTP/"))]
    return {**payload_summary(pcap), "password_frames": hits["password"], "form_frames": hits["form"],
            "context": context_of(pcap, frame, NEEDLES["password"]) if frame else "",
            "tls_records": len(recs), "tls_types": types,
            "tls_app_data": types.get("ApplicationData", 0), "http_frames": http}


def evidence_rows(results: dict[str, dict[str, Any]]) -> tuple[list[list[object]], list[int]]:
    """Table rows (one per link) for plots.table, and the indexes of rows where the password showed."""
    rows, hot = [], []
    for i, (name, r) in enumerate(results.items()):
        found = r["password_frames"]
        if found:
            hot.append(i)
        rows.append([name, r["frames"], r["data_segments"],
                     ", ".join(map(str, found[:8])) + (" ..." if len(found) > 8 else "") if found else "not found",
                     r["context"][:70] or "-", r["tls_records"],
                     " ".join(f"{k}:{v}" for k, v in sorted(r["tls_types"].items())) or "-"])
    return rows, hot


EVIDENCE_COLUMNS = ("link", "frames", "data segs", f"'{PASSWORD}' in frames", "bytes around it",
                    "TLS records", "TLS record types")
