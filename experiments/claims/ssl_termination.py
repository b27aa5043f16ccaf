"""C11 ssl-termination: TLS ended at the load balancer leaves the backend link in clear; re-encryption closes it, at a cost."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments import fidelity, plots
from experiments.base import Case, Experiment, say
from experiments.credentials import EVIDENCE_COLUMNS, PASSWORD, capture_login, evidence_rows, search
from experiments.fidelity import window
from experiments.load import parse_wrk, run_wrk
from experiments.registry import register
from experiments.stats import rounded
from experiments.verdict import Check, Figure, P, Verdict, gate

MODES = ("terminate", "reencrypt")
LINKS = {"client-link": ("client", "s1"), "lb-back": ("lb1", "s2")}
# mode -> link -> must the password show there?
EXPECT = {"terminate": {"client-link": False, "lb-back": True},
          "reencrypt": {"client-link": False, "lb-back": False}}


def wrk_file(name: str) -> str:
    return f"wrk-{name}.txt"


@register
class SslTermination(Experiment):
    """Capture both links of the load balancer during a login in each TLS mode; then wrk over HTTPS for the cost."""

    slug = "ssl-termination"
    claim = "C11"
    title = "SSL termination leaves the backend link in clear"
    statement = ("Terminating TLS at the load balancer leaves the load-balancer-to-backend traffic in clear text; "
                 "re-encrypting to the backends closes that gap at a measured cost.")
    design = "secured"
    defaults = {"login_url": "https://www.foobar.com/login",
                "cost_urls": {"static": "https://www.foobar.com/static/hello.txt", "app": "https://www.foobar.com/"},
                "wrk_s": 4.0, "wrk_connections": 8, "wrk_threads": 2, "min_tls_app_data": 2}
    timing_sensitive = False  # the verdict is about bytes on the wire; the cost is reported, not judged
    checks = (
        gate("login_http_code", "==", "200", "the login's HTTP status", fail="the login did not succeed"),
        gate("links_without_payload", "==", 0, "captured links without TCP payload",
             fail="the capture missed the login"),
        gate("cost_not_measured", "==", 0, "cost URLs wrk did not measure", fail="the cost is not measured"),
        *(Check(f"{link.replace('-', '_')}_password_frames", ">=" if shown else "==", 1 if shown else 0,
                f"frames showing the password on {link}", cases=(mode,))
          for mode, links in EXPECT.items() for link, shown in links.items()),
        Check("lb_back_tls_app_data", ">=", P("min_tls_app_data"), "TLS ApplicationData records on lb-back",
              cases=("reencrypt",)),
    )
    figures = {
        "terminate.static_rps": Figure("static req/s over HTTPS, terminate", "req/s", rel_tol=0.3),
        "reencrypt.static_rps": Figure("static req/s over HTTPS, reencrypt", "req/s", rel_tol=0.3),
        "terminate.app_rps": Figure("app req/s over HTTPS, terminate", "req/s", rel_tol=0.3),
        "reencrypt.app_rps": Figure("app req/s over HTTPS, reencrypt", "req/s", rel_tol=0.3),
        "reencrypt_static_rps_ratio": Figure("static req/s reencrypt / terminate", "x", abs_tol=0.15),
        "reencrypt_app_rps_ratio": Figure("app req/s reencrypt / terminate", "x", abs_tol=0.15),
    }
    summary = ("with TLS ended at the load balancer the password crossed lb-back in clear (frames "
               "{terminate.lb_back_password_frames:names})",
               "re-encrypted, in frames: {reencrypt.lb_back_password_frames:names}, at {reencrypt_static_rps_ratio} "
               "of terminate's req/s on the static page and {reencrypt_app_rps_ratio} on the app")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case(m, "secured", {"params": {"tls": m, "monitoring": False}}) for m in MODES]

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"pcaps of the client link and of lb1's backend link (lb-back) during one login over HTTPS, "
                f"searched byte-exact with Scapy for '{PASSWORD}', in each TLS mode. Cost reported, not judged: wrk "
                f"({p['wrk_connections']} connections, {p['wrk_s']:g} s) over HTTPS against "
                f"{', '.join(p['cost_urls'])} in each mode")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        capture_login(lab, out, LINKS, params["login_url"])
        for name, url in params["cost_urls"].items():
            say(f"wrk {params['wrk_s']:g} s {url} ({case.name})")
            with window(out, f"wrk-{name}"):
                try:
                    run_wrk(lab, "client", url, params["wrk_s"], out / wrk_file(name),
                            connections=params["wrk_connections"], threads=params["wrk_threads"])
                except ValueError as exc:  # the raw output is kept; judge() says wrk did not run
                    say(f"wrk {name}: {exc}")

    @staticmethod
    def cost(raw: Path, params: dict[str, Any]) -> dict[str, Any]:
        """req/s and latency percentiles per cost URL, from the saved wrk outputs."""
        out: dict[str, Any] = {}
        for name in params["cost_urls"]:
            path = raw / wrk_file(name)
            if not path.exists():
                continue
            try:
                w = parse_wrk(path.read_text())
            except ValueError:
                continue
            out[f"{name}_rps"] = rounded(w.requests_per_s, 1)
            out[f"{name}_p50_ms"] = rounded(w.percentiles_s.get("50", float("nan")) * 1000, 3)
            out[f"{name}_p99_ms"] = rounded(w.percentiles_s.get("99", float("nan")) * 1000, 3)
            out[f"{name}_failed"] = w.failed
            out[f"{name}_requests"] = w.requests
        return out

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        login = json.loads((raw / "login.json").read_text())
        found = {name: search(raw / f"{name}.pcap") for name in LINKS}
        m: dict[str, Any] = {"login_http_code": login["http_code"]}
        for name, r in found.items():
            key = name.replace("-", "_")
            m.update({f"{key}_password_frames": r["password_frames"], f"{key}_frames": r["frames"],
                      f"{key}_tls_app_data": r["tls_app_data"], f"{key}_plaintext_http_frames": r["http_frames"][:10]})
            if r["context"]:
                m[f"{key}_context"] = r["context"]
        cost = self.cost(raw, params)
        m.update(cost)
        rows, hot = evidence_rows(found)
        pngs = [str(plots.table(rows, EVIDENCE_COLUMNS, plots_dir / f"{case.name}-evidence.png",
                                f"C11 tls={case.name}: what a sniffer sees of one login", highlight=hot))]
        pngs.append(str(self.cost_plot(raw.parent, params, plots_dir)))
        m.update({"links_without_payload": [n for n, r in found.items() if not r["data_segments"]],
                  "cost_not_measured": [n for n in params["cost_urls"] if f"{n}_rps" not in cost]})
        notes = ["cost: " + ", ".join(f"{n} {cost[f'{n}_rps']:g} req/s p99 {cost[f'{n}_p99_ms']} ms"
                                      for n in params["cost_urls"] if f"{n}_rps" in cost)]
        saturated, _, why = fidelity.assess(raw)
        if saturated:  # wrk is closed loop: on 2 cores the machine, not the design, is what it saturates
            notes.append(f"cost caveat: {why}")
        return self.verdict(case, m, params, pngs, notes)

    def cost_plot(self, raw_dir: Path, params: dict[str, Any], plots_dir: Path) -> Path:
        """req/s and p99 of every mode that ran, side by side (drawn from each case's wrk output)."""
        costs = {m: self.cost(raw_dir / m, params) for m in MODES if (raw_dir / m).is_dir()}
        rps = {u: {m: c.get(f"{u}_rps") or 0.0 for m, c in costs.items()} for u in params["cost_urls"]}
        p99 = {u: {m: c.get(f"{u}_p99_ms") or 0.0 for m, c in costs.items()} for u in params["cost_urls"]}
        groups = {**{f"{u}\nreq/s": v for u, v in rps.items()}, **{f"{u}\np99 ms": v for u, v in p99.items()}}
        return plots.grouped_bars(groups, plots_dir / "cost.png",
                                  f"C11 cost of re-encryption (wrk -c{params['wrk_connections']}, "
                                  f"{params['wrk_s']:g} s, HTTPS from the client)", "req/s  |  ms", log=True)

    def conclude(self, parts: list[tuple[str, Verdict]], params: dict[str, Any]) -> Verdict:
        v = super().conclude(parts, params)
        by = dict(parts)
        if len(parts) > 1 and all(m in by for m in MODES):
            for u in params["cost_urls"]:
                t, r = by["terminate"].measured.get(f"{u}_rps"), by["reencrypt"].measured.get(f"{u}_rps")
                if t and r:
                    v.measured[f"reencrypt_{u}_rps_ratio"] = round(r / t, 3)
                    v.reasons.append(f"re-encryption keeps {r / t:.0%} of terminate's req/s on {u}")
        return v
