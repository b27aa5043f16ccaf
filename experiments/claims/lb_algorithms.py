"""C4 lb-algorithms: round-robin spreads evenly, least-connections avoids busy servers, source hashing pins clients."""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from experiments import lb, plots
from experiments.base import Case, Experiment, read_lab_info, say
from experiments.fidelity import window
from experiments.registry import register
from experiments.stats import percentile, rounded
from experiments.verdict import Check, Figure, M, P, Verdict, gate, inconclusive

ALGORITHMS = ("roundrobin", "leastconn", "source")
SHARES, MIX, SOURCES = "shares", "mix", "sources"   # raw/<case>/<name>.csv (mixload)


@register
class LbAlgorithms(Experiment):
    """Per-backend counts (HAProxy log) for even spreading, fast-request p99 under a fast/slow mix, and the
    backends each of several client addresses reached under source hashing."""

    slug = "lb-algorithms"
    claim = "C4"
    title = "Load-balancing algorithms: round-robin, least-connections, source"
    statement = ("Round-robin spreads requests evenly; least-connections sends work to the least busy server; "
                 "source hashing keeps a client on one server.")
    design = "distributed"
    defaults = {"base": "http://www.foobar.com", "share_requests": 200, "share_rate": 50.0, "share_tolerance": 0.05,
                "mix_rate": 100.0, "mix_s": 8.0, "fast_ms": 5, "slow_ms": 500, "fast_weight": 3, "slow_weight": 1,
                "sources": 8, "source_requests": 12, "source_rate": 40.0, "min_per_source": 5,
                "min_requests": 100, "healthy": 0.99, "timeout": 5.0}
    checks = (
        gate("logged_requests", ">=", P("min_requests"), "share requests in HAProxy's log"),
        gate("shares_success", ">=", P("healthy"), "success of the share requests", "%"),
        gate("mix_requests", ">=", P("min_requests"), "requests of the fast/slow mix", cases=("roundrobin", "leastconn")),
        gate("mix_success", ">=", P("healthy"), "success of the fast/slow mix", "%", cases=("roundrobin", "leastconn"),
             fail="the mixed run was not healthy"),
        gate("sources_with_few_answers", "==", 0, "client addresses with < {min_per_source} answered requests",
             cases=("source",), fail="too few answered requests for some client addresses"),
        gate("sources", ">=", P("sources"), "client addresses answered", cases=("source",)),
        Check("share_max_deviation", "<=", P("share_tolerance"), "largest deviation of a backend's share from 1/n",
              "points", cases=("roundrobin",)),
        Check("sources_on_one_backend", "==", M("sources", "every client address answered"),
              "client addresses answered by exactly one backend", cases=("source",)),
        Check("leastconn_vs_roundrobin_fast_p99", "<", 1, "leastconn fast-request p99 / roundrobin's", "x",
              across=True, cases=("roundrobin", "leastconn")),
    )
    figures = {
        "roundrobin.share_max_deviation": Figure("roundrobin: largest share deviation from 1/n", "points",
                                                 abs_tol=0.02),
        "roundrobin.fast_p99_ms": Figure("roundrobin: fast-request p99", "ms", rel_tol=0.5),
        "leastconn.fast_p99_ms": Figure("leastconn: fast-request p99", "ms", rel_tol=0.5),
        "leastconn_vs_roundrobin_fast_p99": Figure("fast-request p99 leastconn / roundrobin", "x", rel_tol=0.5),
        "source.sources_on_one_backend": Figure("client addresses kept on one backend (source)", abs_tol=0),
    }
    summary = ("roundrobin kept every backend within {roundrobin.share_max_deviation} of an even share",
               "under a fast/slow mix leastconn's fast-request p99 was {leastconn.fast_p99_ms} against roundrobin's "
               "{roundrobin.fast_p99_ms}",
               "source hashing kept {source.sources_on_one_backend} of {source.sources} client addresses on one "
               "backend")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case(a, "distributed", {"params": {"algorithm": a}}) for a in ALGORITHMS]

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"each algorithm: {p['share_requests']} requests of / at {p['share_rate']:g} req/s, counted per backend "
                f"in HAProxy's log (one line per request); roundrobin and leastconn: a seeded mix "
                f"({p['fast_weight']}:{p['slow_weight']} of /slow?ms={p['fast_ms']} and /slow?ms={p['slow_ms']}, "
                f"{p['mix_rate']:g} req/s open-loop for {p['mix_s']:g} s, the same sequence on both); source: "
                f"{p['sources']} client addresses, {p['source_requests']} requests each")

    # --- run ------------------------------------------------------------------------------------
    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        hap = lb.haproxy(lab)
        with lb.LogSlice(hap, out):
            say(f"{case.name}: {params['share_requests']} requests of / for the per-backend shares")
            with window(out, SHARES):
                lb.run_mix(lab, "client", out, SHARES, params["base"], params["share_rate"],
                           params["share_requests"] / params["share_rate"], ["page=GET:/:1"], params["seed"],
                           params["timeout"])
            if case.name in ("roundrobin", "leastconn"):
                say(f"{case.name}: fast/slow mix at {params['mix_rate']:g} req/s for {params['mix_s']:g} s")
                with window(out, MIX):
                    lb.run_mix(lab, "client", out, MIX, params["base"], params["mix_rate"], params["mix_s"],
                               [f"fast=GET:/slow?ms={params['fast_ms']}:{params['fast_weight']}",
                                f"slow=GET:/slow?ms={params['slow_ms']}:{params['slow_weight']}"],
                               params["seed"], params["timeout"])
            if case.name == "source":
                addrs = self._add_addresses(lab, params["sources"])
                try:
                    say(f"source: {len(addrs)} client addresses, {params['source_requests']} requests each")
                    with window(out, SOURCES):
                        lb.run_mix(lab, "client", out, SOURCES, params["base"], params["source_rate"],
                                   params["sources"] * params["source_requests"] / params["source_rate"],
                                   ["page=GET:/:1"], params["seed"], params["timeout"], sources=addrs)
                finally:
                    self._del_addresses(lab, addrs[1:])

    @staticmethod
    def _client_intf(lab: Any) -> tuple[str, ipaddress.IPv4Interface]:
        res = lab.exec("client", ["ip", "-o", "-4", "addr", "show"], timeout=5)
        for line in res.stdout.splitlines():
            f = line.split()
            if f[1] != "lo" and f[2] == "inet":
                return f[1], ipaddress.ip_interface(f[3])
        raise RuntimeError(f"client has no IPv4 interface: {res.stdout!r}")

    def _add_addresses(self, lab: Any, n: int) -> list[str]:
        """The client's own address plus n-1 more on the same interface (distinct 'clients' for source hashing)."""
        intf, me = self._client_intf(lab)
        addrs = [str(me.ip)]
        for k in range(1, n):
            ip = me.ip + k
            res = lab.exec("client", ["ip", "addr", "add", f"{ip}/{me.network.prefixlen}", "dev", intf], timeout=5)
            if res.returncode != 0:
                self._del_addresses(lab, addrs[1:])
                raise RuntimeError(f"cannot add {ip} to client {intf}: {res.stderr.strip()}")
            addrs.append(str(ip))
        return addrs

    def _del_addresses(self, lab: Any, addrs: list[str]) -> None:
        intf, me = self._client_intf(lab)
        for ip in addrs:
            lab.exec("client", ["ip", "addr", "del", f"{ip}/{me.network.prefixlen}", "dev", intf], timeout=5)

    # --- analysis -------------------------------------------------------------------------------
    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        hosts = read_lab_info(raw).get("hosts") or []
        servers = sorted(h for h in hosts if h.startswith("server")) or ["server1", "server2"]
        shares_rows = lb.read_mix(raw / f"{SHARES}.csv")
        sent = [r for r in shares_rows if r.t_send is not None]
        if not sent:
            return inconclusive(rule, "no request of the shares run was sent")
        a, z = min(r.t_send for r in sent) - 0.5, max((r.t_recv or r.t_send) for r in sent) + 0.5
        # the shares run is the only one asking for / (the mix asks for /slow, the health checks are not logged)
        logged = [r for r in lb.read_log(raw) if a <= r.t <= z and r.backend == "servers"
                  and r.request.split(" ")[1:2] == ["/"]]
        counts = {s: sum(1 for r in logged if r.server == s) for s in servers}
        share = lb.shares([r.server for r in logged], servers)
        client_share = lb.shares([r.served_by for r in shares_rows if r.ok], servers)
        ok_rate = sum(r.ok for r in shares_rows) / len(shares_rows)
        dev = max(abs(x - 1 / len(servers)) for x in share.values()) if logged else float("nan")
        m: dict[str, Any] = {"algorithm": case.name, "logged_requests": len(logged), "backend_counts": counts,
                             "backend_shares": {k: rounded(x, 4) for k, x in share.items()},
                             "client_seen_shares": {k: rounded(x, 4) for k, x in client_share.items()},
                             # to 9 digits first: float noise (0.55 - 0.5) must not fail a share of exactly +5 points
                             "share_max_deviation": rounded(round(dev, 9), 4), "shares_success": rounded(ok_rate, 4)}
        pngs = [str(plots.grouped_bars({case.name: share}, plots_dir / f"{case.name}-shares.png",
                                       f"C4 {case.name}: share of {len(logged)} requests per backend (HAProxy log)",
                                       "share of requests", ref=1 / len(servers), ref_label="1/n"))]
        if case.name in ("roundrobin", "leastconn"):
            mix = lb.read_mix(raw / f"{MIX}.csv")
            fast = [r.latency for r in mix if r.kind == "fast" and r.latency is not None]
            slow = [r.latency for r in mix if r.kind == "slow" and r.latency is not None]
            mix_ok = sum(r.ok for r in mix) / len(mix) if mix else 0.0
            m.update({"mix_requests": len(mix), "mix_success": rounded(mix_ok, 4),
                      "fast_p50_ms": rounded(percentile(fast, 50) * 1000, 2),
                      "fast_p99_ms": rounded(percentile(fast, 99) * 1000, 2),
                      "slow_p99_ms": rounded(percentile(slow, 99) * 1000, 2),
                      "all_p99_ms": rounded(percentile(fast + slow, 99) * 1000, 2),
                      "mix_served": lb.shares([r.served_by for r in mix if r.ok], servers)})
            pngs.append(str(self._mix_cdf(raw.parent, plots_dir, params)))
        if case.name == "source":
            rows = lb.read_mix(raw / f"{SOURCES}.csv")
            seen: dict[str, set[str]] = {}
            n_ok: dict[str, int] = {}
            for r in rows:
                if r.ok:
                    seen.setdefault(r.source, set()).add(r.served_by)
                    n_ok[r.source] = n_ok.get(r.source, 0) + 1
            few = [s for s in {r.source for r in rows} if n_ok.get(s, 0) < params["min_per_source"]]
            m.update({"source_map": {s: sorted(b) for s, b in sorted(seen.items())},
                      "sources": len(seen), "sources_on_one_backend": sum(len(b) == 1 for b in seen.values()),
                      "backends_used": sorted({b for bs in seen.values() for b in bs}),
                      "sources_with_few_answers": sorted(few)})
            pngs.append(str(plots.grouped_bars(
                {s.split(".")[-1]: {b: sum(1 for r in rows if r.ok and r.source == s and r.served_by == b) for b in servers}
                 for s in sorted(seen, key=lambda x: ipaddress.ip_address(x))},
                plots_dir / "source-per-client.png", "C4 source: answered requests per client address (last octet) "
                "and backend", "requests")))
        return self.verdict(case, m, params, pngs,
                            notes=["measured for the cross-case rule"] if case.name == "leastconn" else [])

    def _mix_cdf(self, raw_dir: Path, plots_dir: Path, params: dict[str, Any]) -> Path:
        series = {}
        for name in ("roundrobin", "leastconn"):
            p = raw_dir / name / f"{MIX}.csv"
            if p.exists():
                series[f"{name} fast"] = [r.latency * 1000 for r in lb.read_mix(p) if r.kind == "fast" and r.latency]
        return plots.cdf(series, plots_dir / "mix-fast-latency-cdf.png",
                         f"C4: latency of fast requests (/slow?ms={params['fast_ms']}) mixed with /slow?ms={params['slow_ms']}",
                         "latency from scheduled send (ms)", log_x=True)

    def across_measured(self, by_case: dict[str, Verdict], params: dict[str, Any]) -> dict[str, Any]:
        """leastconn's fast-request p99 over roundrobin's."""
        rr, lc = (by_case[a].measured.get("fast_p99_ms") for a in ("roundrobin", "leastconn"))
        return {"leastconn_vs_roundrobin_fast_p99": rounded(lc / rr, 4)} if rr and lc is not None else {}
