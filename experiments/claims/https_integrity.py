"""C22 https-integrity: an on-path attacker (ARP spoofing + a transparent proxy) tampers with plain HTTP
pages; over HTTPS it cannot tamper, its own certificate is refused, and stripping HTTPS works only
against a client that has not seen the site's HSTS."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from experiments import attacking, plots
from experiments.attacks.proxy import MARKER
from experiments.base import Case, Experiment, say
from experiments.credentials import FORM, PASSWORD
from experiments.registry import register
from experiments.verdict import Check, Figure, P, Verdict, gate

SITE = "www.foobar.com"
# case -> phase -> (proxy mode, what the client does)
PHASES = {"http": {"rewrite": "rewrite"},
          "https": {"forward": "rewrite", "impersonate": "impersonate", "strip": "strip", "hsts": "strip"}}
CURL_CERT_REJECTED = 60  # curl: "Peer certificate cannot be authenticated with given CA certificates"


def fetch(lab: Any, url: str, body: Path, extra: list[str] | None = None) -> dict[str, Any]:
    """One page as a browser would get it (following redirects): status, final URL, HSTS header, marker."""
    t0 = time.time()
    res = lab.exec("client", ["curl", "-s", "-L", "-o", str(body), "-D", "-", "--max-time", "5", *(extra or []),
                              "-w", "\n%{http_code} %{url_effective}", url], timeout=15)
    lines = res.stdout.strip().splitlines()
    code, effective = (lines[-1].split(" ", 1) + [""])[:2] if lines else ("", "")
    text = body.read_bytes() if body.exists() else b""
    return {"t": round(t0, 6), "url": url, "code": code, "effective": effective, "curl_exit": res.returncode,
            "scheme": effective.split(":", 1)[0], "bytes": len(text), "tampered": MARKER.encode() in text,
            "hsts": any(l.lower().startswith("strict-transport-security:") for l in lines),
            "stderr": res.stderr.strip()[:300]}


def record(folder: Path, name: str, row: dict[str, Any]) -> dict[str, Any]:
    with open(folder / f"{name}.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    return row


@register
class HttpsIntegrity(Experiment):
    """An attacker host on the client's network ARP-spoofs the client and lb1 with Scapy and runs a proxy."""

    slug = "https-integrity"
    claim = "C22"
    title = "HTTPS prevents tampering and impersonation, not only eavesdropping"
    statement = "HTTPS prevents tampering and impersonation, not only eavesdropping."
    design = "distributed"
    defaults = {"attacker": "attacker", "victims": ["client", "lb1"], "rate": 2.0, "attack_s": 30.0,
                "pages": 5, "min_tampered": 0.8}
    timing_sensitive = False  # bytes and certificates, not speed
    checks = (
        gate("poisoned", "==", True, "the client's and lb1's ARP caches mapped each other to the attacker",
             fail="the attack did not poison (no defence applies: ARP inspection was off)", cases=("http",)),
        gate("pages_ok", ">=", P("pages"), "pages the client got (200) during the attack", cases=("http",)),
        Check("tampered", ">=", 1, "pages that reached the client with the attacker's marker", cases=("http",)),
        Check("tampered_fraction", ">=", P("min_tampered"), "share of pages tampered with", "%", cases=("http",)),
        *(gate(f"{p}_poisoned", "==", True, f"the attack poisoned both victims ({p} phase)",
               fail=f"the {p} attack did not poison (no defence applies: ARP inspection was off)", cases=("https",))
          for p in PHASES["https"]),
        gate("leftovers", "==", 0, "what of the attacks outlived them (caches, sysctls, nftables, the tool)"),
        gate("forward_pages_ok", ">=", P("pages"), "HTTPS pages the client got (200) through the attacker",
             cases=("https",)),
        gate("forward_tls_records", ">=", 1, "the client's TLS records that crossed the attacker",
             fail="no TLS from the client crossed the attacker: it was not on the path", cases=("https",)),
        Check("forward_tampered", "==", 0, "HTTPS pages with the attacker's marker", cases=("https",)),
        Check("impersonate_curl_exit", "==", CURL_CERT_REJECTED,
              "curl's exit status facing the attacker's certificate (60: not trusted)", cases=("https",)),
        Check("impersonate_requests", "==", 0, "requests the client sent to the impersonator", cases=("https",)),
        Check("impersonate_passwords", "==", 0, "passwords the impersonator harvested", cases=("https",)),
        Check("forward_passwords", "==", 0, "passwords harvested from the HTTPS login it forwarded",
              cases=("https",)),
        Check("strip_scheme", "==", "http", "where the stripped client ended up", cases=("https",)),
        Check("strip_passwords", ">=", 1, "passwords harvested from the stripped (no HSTS) client", cases=("https",)),
        Check("hsts_header", "==", True, "the site sent Strict-Transport-Security over HTTPS", cases=("https",)),
        Check("hsts_scheme", "==", "https", "where the client with HSTS ended up", cases=("https",)),
        Check("hsts_passwords", "==", 0, "passwords harvested from the client with HSTS", cases=("https",)),
        Check("hsts_login_code", "==", "200", "the HSTS client's login status", cases=("https",)),
    )
    figures = {
        "http.tampered_fraction": Figure("plain HTTP pages tampered with", "%", abs_tol=0.2),
        "https.forward_tampered": Figure("HTTPS pages tampered with", abs_tol=0),
        "https.impersonate_curl_exit": Figure("curl's exit facing the forged certificate", abs_tol=0),
        "https.strip_passwords": Figure("passwords harvested by stripping, no HSTS", abs_tol=1),
        "https.hsts_passwords": Figure("passwords harvested by stripping, HSTS", abs_tol=0),
    }
    summary = ("over plain HTTP the attacker's marker reached the client in {http.tampered} of {http.pages_ok} pages",
               "over HTTPS in {https.forward_tampered}, its certificate was refused (curl exit "
               "{https.impersonate_curl_exit}), stripping took {https.strip_passwords} password(s) from a client "
               "without HSTS and {https.hsts_passwords} from one with it")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case("http", "distributed", {"params": {"attacker": "front"}}),
                Case("https", "secured", {"params": {"attacker": "front", "monitoring": False,
                                                     "arp_inspection": False}})]

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"an attacker host on the client's network ARP-spoofs the client and lb1 with Scapy ({p['rate']:g} "
                f"lies a second), forwards, and runs a transparent proxy (nftables redirect): http - it puts a marker "
                f"into the pages, the client fetches {p['pages']}; https - forward: the same proxy while the client "
                f"fetches {p['pages']} pages over HTTPS; impersonate: it answers TLS with its own certificate for "
                f"{SITE}, the client logs in; strip: it keeps a client without HSTS on HTTP (curl -L http://, then "
                f"the login at the URL reached); hsts: the same against a client whose curl --hsts cache holds the "
                f"site's policy from an earlier HTTPS visit; ARP inspection off")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        pos = attacking.position(lab, params["attacker"], params["victims"])
        scheme = "https" if case.name == "https" else "http"
        for phase, proxy in PHASES[case.name].items():
            folder = out / phase
            folder.mkdir(parents=True, exist_ok=True)
            hsts_file = folder / "hsts.txt"
            if phase == "hsts":  # an earlier visit over HTTPS, before any attack: the client learns the policy
                record(folder, "visits", fetch(lab, f"https://{SITE}/", folder / "visit.html",
                                                ["--hsts", str(hsts_file)]))
            attack = attacking.Attack(lab, folder, pos, duration=params["attack_s"], rate=params["rate"], proxy=proxy)
            marks: dict[str, Any] = {"phase": phase, "proxy": proxy}
            try:
                marks["attack_start"] = time.time()
                attack.start()
                marks["poisoned"] = attack.wait_poisoned()
                say(f"{case.name}/{phase}: proxy {proxy}, {'poisoned' if marks['poisoned'] else 'NOT poisoned'}")
                if phase in ("rewrite", "forward"):
                    for i in range(params["pages"]):
                        record(folder, "pages", fetch(lab, f"{scheme}://{SITE}/", folder / f"page-{i}.html"))
                    attacking.login(lab, f"{scheme}://{SITE}/login", FORM, folder / "logins.jsonl")
                elif phase == "impersonate":
                    attacking.login(lab, f"https://{SITE}/login", FORM, folder / "logins.jsonl")
                else:  # strip, hsts: a browser typed www.foobar.com, then submits the form where it landed
                    extra = ["--hsts", str(hsts_file)] if phase == "hsts" else []
                    page = record(folder, "visits", fetch(lab, f"http://{SITE}/login", folder / "login.html", extra))
                    target = page["effective"] or f"http://{SITE}/login"
                    attacking.login(lab, target, FORM, folder / "logins.jsonl", extra=extra)
                marks["attack_stop"] = time.time()
            finally:
                marks["cleanup"] = attack.stop()
                (folder / "phase.json").write_text(json.dumps(marks, indent=2, default=str) + "\n")

    def phase_values(self, folder: Path, phase: str, params: dict[str, Any]) -> dict[str, Any]:
        """The measured values of one phase."""
        ph = attacking.read_phase(folder)
        cleanup = ph["cleanup"]
        ips = dict(cleanup["position"]["victims"])
        a, b = params["victims"]
        wire = attacking.intercepted(folder / "attacker.pcap", ips[a], ips[b], cleanup["attacker_mac"],
                                     PASSWORD.encode())
        pages = attacking.read_jsonl(folder / "pages.jsonl")
        visits = attacking.read_jsonl(folder / "visits.jsonl")
        logins = attacking.read_jsonl(folder / "logins.jsonl")
        passwords = [c for c in ph["credentials"] if c.get("field") in ("password", "passwd", "pwd", "pass")]
        ok = [p for p in pages if p["code"] == "200"]
        last = visits[-1] if visits else {}
        return {"poisoned": ph["poisoned"], "leftovers": ph["leftovers"], "poison_frames": ph["poison_frames"],
                "pages": len(pages), "pages_ok": len(ok), "tampered": sum(p["tampered"] for p in ok),
                "tampered_fraction": (sum(p["tampered"] for p in ok) / len(ok)) if ok else None,
                "passwords": len(passwords), "requests": len(ph["requests"]), "tls_rejected": len(ph["tls_rejected"]),
                "tls_records": sum(wire["tls_records"].values()), "intercepted_frames": wire["frames"],
                "password_frames_n": len(wire["needle_frames"]),
                "login_code": logins[-1]["code"] if logins else None,
                "curl_exit": logins[-1]["curl_exit"] if logins else None,
                "scheme": (logins[-1]["scheme"] or last.get("scheme")) if logins else last.get("scheme"),
                "hsts_header": any(v.get("hsts") for v in visits if v["url"].startswith("https://")),
                "_ph": ph, "_wire": wire, "_pages": pages, "_logins": logins}

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        phases = {p: self.phase_values(raw / p, p, params) for p in PHASES[case.name]}
        m: dict[str, Any] = {"leftovers": [x for v in phases.values() for x in v["leftovers"]]}
        if case.name == "http":
            v = phases["rewrite"]
            m.update({k: v[k] for k in ("poisoned", "pages", "pages_ok", "tampered", "tampered_fraction",
                                        "passwords", "poison_frames")})
        else:
            for p, v in phases.items():
                m.update({f"{p}_{k}": val for k, val in v.items() if not k.startswith("_") and k != "leftovers"})
            m["hsts_header"] = phases["hsts"]["hsts_header"]
            m["strip_passwords"] = phases["strip"]["passwords"]
            m["hsts_passwords"] = phases["hsts"]["passwords"]
        pngs = [self.timeline(raw, case.name, phases, plots_dir / f"{case.name}-timeline.png")]
        if case.name == "https":
            pngs.append(plots.table(
                [[p, "yes" if v["poisoned"] else "NO", v["pages_ok"] or "-", v["tampered"], v["curl_exit"],
                  v["scheme"] or "-", v["requests"], v["passwords"], v["tls_records"]] for p, v in phases.items()],
                ("phase", "poisoned", "pages 200", "tampered", "curl exit", "client ended on", "plaintext requests",
                 "passwords harvested", "TLS records crossing"),
                plots_dir / "https-phases.png", "C22 https: what the on-path attacker got, phase by phase",
                highlight=[i for i, v in enumerate(phases.values()) if v["passwords"] or v["tampered"]]))
        return self.verdict(case, m, params, pngs)

    def timeline(self, raw: Path, case: str, phases: dict[str, dict[str, Any]], out: Path) -> Path:
        """Every phase on one time axis: lies, caches, tampered pages, harvested passwords; crossing frames."""
        lanes: dict[str, list[tuple[float, bool]]] = {"ARP lies sent": [], "client's entry for lb1 poisoned": [],
                                                      "pages (red: tampered)": [], "passwords harvested": [],
                                                      "TLS handshakes refused": []}
        windows, times = [], []
        for p, v in phases.items():
            ph = v["_ph"]
            lanes["ARP lies sent"] += [(e["t"], True) for e in ph["events"] if e["event"] == "poison"]
            lanes["client's entry for lb1 poisoned"] += [(r["t"], bool(r["poisoned"])) for r in ph["neigh"]
                                                         if r["victim"] == "client"]
            lanes["pages (red: tampered)"] += [(r["t"], bool(r["tampered"])) for r in v["_pages"]]
            lanes["passwords harvested"] += [(c["t"], True) for c in ph["credentials"] if c.get("field") == "password"]
            lanes["TLS handshakes refused"] += [(e["t"], False) for e in ph["tls_rejected"]]
            times += v["_wire"]["times"]
            marks = json.loads((raw / p / "phase.json").read_text())
            if marks.get("attack_start") and marks.get("attack_stop"):
                windows.append((marks["attack_start"], marks["attack_stop"], p))
        every = [t for pts in lanes.values() for t, _ in pts] + times
        t0, t1 = (min(every), max(every)) if every else (0.0, 1.0)
        xs, counts = plots.binned(times, t0, t1)
        return plots.attack_timeline(t0, lanes, {"client-lb1 frames reaching the attacker": (xs, counts)}, out,
                                     f"C22 {case}: the attacker between the client and lb1", windows)
