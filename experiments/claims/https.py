"""C10 https: a login over plain HTTP shows the password to anyone on the client's link; over HTTPS it does not."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments import plots
from experiments.base import Case, Experiment
from experiments.credentials import EVIDENCE_COLUMNS, PASSWORD, capture_login, evidence_rows, search
from experiments.registry import register
from experiments.verdict import Check, Figure, P, Verdict, gate

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
    timing_sensitive = False  # a claim about bytes on the wire, not about speed
    checks = (
        gate("login_http_code", "==", "200", "the login's HTTP status", fail="the login did not succeed"),
        gate("data_segments", ">=", 1, "TCP segments with payload in the capture",
             fail="the capture holds no TCP payload: it did not see the login"),
        Check("password_frames", ">=", 1, "frames showing the password in clear", cases=("http",)),
        Check("password_frames", "==", 0, "frames showing the password in clear", cases=("https",)),
        Check("plaintext_http_frames", "==", 0, "plaintext HTTP messages", cases=("https",)),
        Check("tls_app_data", ">=", P("min_tls_app_data"), "TLS ApplicationData records", cases=("https",)),
    )
    figures = {
        "http.password_frames_n": Figure("frames showing the password, plain HTTP", abs_tol=0),
        "https.password_frames_n": Figure("frames showing the password, HTTPS", abs_tol=0),
        "https.tls_app_data": Figure("TLS ApplicationData records, HTTPS", abs_tol=2),
    }
    summary = ("over plain HTTP the password crossed the client's link in clear in {http.password_frames_n} frame(s)",
               "over HTTPS in {https.password_frames_n}, the login inside {https.tls_app_data} TLS ApplicationData "
               "records")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case(name, design, lab) for name, (design, lab, _, _) in CASES.items()]

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"pcap of the client link during a login (POST /login username=alice&password={PASSWORD}): http on "
                f"the distributed design, https on the secured one, searched byte-exact with Scapy (also across TCP "
                f"segments)")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        capture_login(lab, out, {LINK: ("client", "s1")}, CASES[case.name][2])

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
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
        found = r["password_frames"]
        if CASES[case.name][3] == "clear":
            notes = [f"password in clear in frame(s) {found}: {r['context']!r}"] if found else []
        else:
            notes = [f"TLS records seen: {r['tls_types']}"] + ([f"password found in frame(s) {found}"] if found else [])
        return self.verdict(case, m, params, [png], notes)
