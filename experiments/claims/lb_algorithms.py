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
from experiments.verdict import INCONCLUSIVE, REFUTED, SUPPORTED, Verdict, combine, inconclusive

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
    key_values = ("roundrobin.share_max_deviation", "roundrobin.fast_p99_ms", "leastconn.fast_p99_ms",
                  "source.sources_on_one_backend")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case(a, "distributed", {"params": {"algorithm": a}}) for a in ALGORITHMS]

    def rule_text(self, params: dict[str, Any]) -> str:
        p = {**self.params(), **params}
        return (f"roundrobin: every backend's share of {p['share_requests']} requests (HAProxy log, one line per "
                f"request) within +-{p['share_tolerance'] * 100:g} percentage points of 1/n; leastconn: p99 latency of "
                f"the fast requests of a seeded mix ({p['fast_weight']}:{p['slow_weight']} of /slow?ms={p['fast_ms']} and "
                f"/slow?ms={p['slow_ms']}, {p['mix_rate']:g} req/s open-loop for {p['mix_s']:g} s, same sequence on both) "
                f"lower than under roundrobin; source: each of {p['sources']} client addresses (>= "
                f"{p['min_per_source']} answered requests each) is answered by exactly one backend. Inconclusive when "
                f"fewer than {p['min_requests']} requests were logged or success < {p['healthy']:.0%}")

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
                             "share_max_deviation": rounded(dev, 4), "shares_success": rounded(ok_rate, 4)}
        pngs = [str(plots.grouped_bars({case.name: share}, plots_dir / f"{case.name}-shares.png",
                                       f"C4 {case.name}: share of {len(logged)} requests per backend (HAProxy log)",
                                       "share of requests", ref=1 / len(servers), ref_label="1/n"))]
        v = Verdict(INCONCLUSIVE, rule, m, plots=pngs)
        if len(logged) < params["min_requests"]:
            v.reasons.append(f"only {len(logged)} requests logged by HAProxy (need {params['min_requests']})")
            return v
        if ok_rate < params["healthy"]:
            v.reasons.append(f"only {ok_rate:.1%} of the share requests succeeded")
            return v
        checks: dict[str, bool] = {}
        if case.name == "roundrobin":
            checks[f"every share within +-{params['share_tolerance'] * 100:g} points of 1/{len(servers)} "
                   f"(max deviation {dev * 100:.2f})"] = round(dev, 9) <= params["share_tolerance"]
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
            if len(mix) < params["min_requests"] or mix_ok < params["healthy"]:
                v.reasons.append(f"the mixed run was not healthy ({len(mix)} requests, {mix_ok:.1%} ok)")
                return v
            v.plots.append(str(self._mix_cdf(raw.parent, plots_dir, params)))
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
                      "backends_used": sorted({b for bs in seen.values() for b in bs})})
            v.plots.append(str(plots.grouped_bars(
                {s.split(".")[-1]: {b: sum(1 for r in rows if r.ok and r.source == s and r.served_by == b) for b in servers}
                 for s in sorted(seen, key=lambda x: ipaddress.ip_address(x))},
                plots_dir / "source-per-client.png", "C4 source: answered requests per client address (last octet) "
                "and backend", "requests")))
            if few or len(seen) < params["sources"]:
                v.reasons.append(f"too few answered requests for some client addresses: {sorted(few)}")
                return v
            checks[f"each of {len(seen)} client addresses saw exactly one backend "
                   f"({m['sources_on_one_backend']} did)"] = m["sources_on_one_backend"] == len(seen)
        v.verdict = SUPPORTED if all(checks.values()) else REFUTED
        v.reasons += [f"{k}: {'yes' if ok else 'NO'}" for k, ok in checks.items()] or \
            [f"{case.name}: measured for the cross-case rule"]
        return v

    def _mix_cdf(self, raw_dir: Path, plots_dir: Path, params: dict[str, Any]) -> Path:
        series = {}
        for name in ("roundrobin", "leastconn"):
            p = raw_dir / name / f"{MIX}.csv"
            if p.exists():
                series[f"{name} fast"] = [r.latency * 1000 for r in lb.read_mix(p) if r.kind == "fast" and r.latency]
        return plots.cdf(series, plots_dir / "mix-fast-latency-cdf.png",
                         f"C4: latency of fast requests (/slow?ms={params['fast_ms']}) mixed with /slow?ms={params['slow_ms']}",
                         "latency from scheduled send (ms)", log_x=True)

    def conclude(self, parts: list[tuple[str, Verdict]], params: dict[str, Any]) -> Verdict:
        """Per-case rules, plus leastconn's fast-request p99 below roundrobin's."""
        v = combine(parts)
        by = dict(parts)
        if v.verdict == INCONCLUSIVE or not {"roundrobin", "leastconn"} <= set(by):
            return v
        rr, lc = by["roundrobin"].measured.get("fast_p99_ms"), by["leastconn"].measured.get("fast_p99_ms")
        if rr is None or lc is None:
            v.verdict = INCONCLUSIVE
            v.reasons.append("no fast-request p99 for roundrobin and leastconn")
            return v
        ok = lc < rr
        v.measured["leastconn_vs_roundrobin_fast_p99"] = rounded(lc / rr, 4) if rr else None
        v.reasons.append(f"leastconn fast-request p99 {lc:.1f} ms < roundrobin {rr:.1f} ms: {'yes' if ok else 'NO'}")
        if not ok:
            v.verdict = REFUTED
        return v
