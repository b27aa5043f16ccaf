"""C10 https: a login over plain HTTP shows the password to anyone on the client's link; over HTTPS it does not."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments import plots
from experiments.base import Case, Experiment
from experiments.credentials import EVIDENCE_COLUMNS, PASSWORD, capture_login, evidence_rows, search
from experiments.registry import register
from experiments.verdict import Verdict

# case -> (design, lab params, login URL, what the client link must show: "clear" or "tls")
CASES = {"http": ("distributed", {}, "http://www.foobar.com/login", "clear"),
         "https": ("secured", {"params": {"monitoring": False}}, "https://www.foobar.com/login", "tls")}
LINK = "client-link"


@register
class Https(Experiment):
    """Capture the client's link during one login (POST /login) per design; search the pcap for the password."""

    slug = "https"
    claim = "C10"
    title = "HTTPS hides credentials on the wire"
    statement = "Plain HTTP exposes credentials to anyone on the path; HTTPS does not."
    design = "distributed"
    defaults = {"min_tls_app_data": 2}
    key_values = ("http.password_frames_n", "https.password_frames_n", "https.tls_app_data")
    timing_sensitive = False  # a claim about bytes on the wire, not about speed

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case(name, design, lab) for name, (design, lab, _, _) in CASES.items()]

    def rule_text(self, params: dict[str, Any]) -> str:
        p = {**self.params(), **params}
        return (f"pcap of the client link during a login (POST /login username=alice&password={PASSWORD}), "
                f"searched byte-exact with Scapy (also across TCP segments): http - the password is found in "
                f"at least one frame; https - it is found in no frame, no plaintext HTTP message is seen and "
                f">= {p['min_tls_app_data']} TLS ApplicationData records are; the login must answer 200 "
                f"(else inconclusive)")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        capture_login(lab, out, {LINK: ("client", "s1")}, CASES[case.name][2])

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        login = json.loads((raw / "login.json").read_text())
        r = search(raw / f"{LINK}.pcap")
        m = {"login_http_code": login["http_code"], "frames": r["frames"], "data_segments": r["data_segments"],
             "password_frames": r["password_frames"], "password_frames_n": len(r["password_frames"]),
             "form_frames": r["form_frames"], "context": r["context"], "tls_records": r["tls_records"],
             "tls_types": r["tls_types"], "tls_app_data": r["tls_app_data"],
             "plaintext_http_frames": r["http_frames"][:20]}
        rows, hot = evidence_rows({LINK: r})
        png = plots.table(rows, EVIDENCE_COLUMNS, plots_dir / f"{case.name}-evidence.png",
                          f"C10 {case.name}: the client link during a login ({login['url']})", highlight=hot)
        v = Verdict("inconclusive", rule, m, plots=[str(png)])
        if login["http_code"] != "200":
            v.reasons.append(f"the login did not succeed (curl: {login['curl'] or login['stderr']})")
            return v
        if not r["data_segments"]:
            v.reasons.append("the capture holds no TCP payload: it did not see the login")
            return v
        found = r["password_frames"]
        if CASES[case.name][3] == "clear":
            ok = bool(found)
            v.reasons.append(f"password in clear in frame(s) {found}: {r['context']!r}" if ok
                             else "password NOT found in the plain-HTTP capture")
        else:
            checks = {"password not found": not found, "no plaintext HTTP message": not r["http_frames"],
                      f">= {params['min_tls_app_data']} TLS ApplicationData records":
                      r["tls_app_data"] >= params["min_tls_app_data"]}
            ok = all(checks.values())
            v.reasons += [f"{k}: {'yes' if c else 'NO'}" for k, c in checks.items()]
            v.reasons.append(f"TLS records seen: {r['tls_types']}")
            if found:
                v.reasons.append(f"password found in frame(s) {found}")
        v.verdict = "supported" if ok else "refuted"
        return v
