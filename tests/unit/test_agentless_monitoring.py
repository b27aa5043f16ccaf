"""C25 agentless-monitoring: the verdict on synthetic raw data, and the rendered configs of its sources
(snmpd.conf, the SNMP exporter's module, the mtail program, Nginx's syslog directive, Prometheus' snmp job),
and the secured design's firewall admitting exactly the new monitoring flows."""
from __future__ import annotations

import bisect
import json
import re
from pathlib import Path

import pytest
import yaml

from experiments.claims.agentless_monitoring import (BLOB, CAPTURE, LOAD, PHASE, SERIES, counted, lags,
                                                     value_at)
from hostapps.base import HostHandle
from tests.unit.pcaps import frame, write_pcap
from tests.unit.raw_data import T0, new_case, write_cpu, write_csv

SERVER, MONITOR = "10.0.1.11", "10.0.1.50"


def host(name: str = "server1") -> HostHandle:
    return HostHandle(name, 0, [SERVER])


# ---- the counting helpers ---------------------------------------------------------------------------
def test_counted_subtracts_the_idle_rate_and_starts_new_series_from_zero():
    pts = [(T0 + t, 100 + 2 * t + (50 * (t - 10) if t > 10 else 0)) for t in range(0, 41)]  # 2/s idle, +50/s 10..40
    c = counted(pts, T0, T0 + 10.5, T0 + 40)
    assert c["idle_rate"] == pytest.approx(2.0)
    assert c["count"] == pytest.approx(50 * 30)
    late = [(T0 + 20, 5.0), (T0 + 30, 9.0)]           # a label set first seen during the load
    assert counted(late, T0, T0 + 10.5, T0 + 40)["count"] == 9.0
    assert value_at(pts, T0 - 1) is None


def test_lags_read_how_old_a_counter_was():
    sends = [T0 + 10 + i / 50 for i in range(1000)]   # 50 req/s for 20 s
    lag = 1.5
    pts = [(T0 + t, float(sum(1 for s in sends if s <= T0 + t - lag))) for t in range(0, 40)]
    c = counted(pts, T0, T0 + 10, T0 + 39)
    got = lags(pts, c, sends, 1.0)
    assert got and all(abs(x - lag) < 0.05 for x in got)


# ---- the verdict on a synthetic run -----------------------------------------------------------------
RATE, LOAD_S, IDLE_S, TAIL_S, BODY = 50, 20.0, 6.0, 8.0, 4000


def run(tmp: Path, factors: dict | None = None, snmp_factor: float = 1.0, snmp_cache: float = 3.0,
        failed: int = 0, lost: int = 0, sent_fraction: float = 1.0, busy: float = 0.2, reset: bool = False):
    """What run_case() writes: a load of RATE req/s between idle phases, each source's counters sampled every
    1 s (factor x the truth, plus its idle traffic), SNMP octets = the capture's bytes seen through a cache."""
    factors = {"agent": 1.0, "api": 1.0, "logs": 1.0, **(factors or {})}
    exp, raw, d = new_case(tmp, "agentless-monitoring", "secured",
                           {"rate": RATE, "load_s": LOAD_S, "idle_s": IDLE_S, "tail_s": TAIL_S})
    t_load, t_load_end = T0 + IDLE_S, T0 + IDLE_S + LOAD_S
    end = t_load_end + TAIL_S
    n = int(RATE * LOAD_S)
    rows, sends = [], []
    for i in range(n):
        ts = t_load + i / RATE
        sent = i < n * sent_fraction
        ok = sent and i >= failed
        rows.append([i, f"{ts:.6f}", f"{ts:.6f}" if sent else "", f"{ts + 0.01:.6f}" if sent else "",
                     200 if ok else "", int(ok), "" if ok else ("not_sent" if not sent else "timeout")])
        if sent:
            sends.append(ts)
    write_csv(d / LOAD, ["i", "t_sched", "t_send", "t_recv", "status", "ok", "error"], rows)

    def counter(share: float, idle: float, factor: float, offset: float, base: float = 1000.0) -> list:
        out = []
        for k in range(int(end - T0) + 2):
            t = T0 + 0.2 + offset + k
            truth = bisect.bisect_right(sends, t - 0.01) * share * factor
            value = base + idle * (t - T0) + truth
            if reset and k == 20:
                value = 0.0
            out.append([t, str(value)])
        return out
    series = {"queried_at": end + 1, "span_s": int(end - T0) + 5,
              "agent": [{"metric": {"server": s}, "values": counter(0.5, 2.0, factors["agent"], o)}
                        for s, o in (("server1", 0.1), ("server2", 0.6))],
              "api": [{"metric": {"proxy": "https"}, "values": counter(1.0, 0.0, factors["api"], 0.3)},
                      {"metric": {"proxy": "http"}, "values": counter(0.0, 0.0, 1.0, 0.3, base=3.0)}],
              "logs": [{"metric": {"web_server": s, "status": "200"},
                        "values": counter(0.5, 1.0, factors["logs"], 0.5)} for s in ("server1", "server2")]}
    # server1's interface: idle frames of 200 bytes every 0.1 s, and per request to it (every other) BODY bytes
    records = [(T0 - 0.5 + k * 0.1, frame(SERVER, MONITOR, 9100, 40000, 1, payload=b"x" * 146), 200)
               for k in range(int((end + 1 - T0) * 10))]
    records += [(s + 0.005, frame(SERVER, "10.0.1.10", 80, 40001, 1, payload=b"y" * 40), BODY)
                for s in sends[::2]]
    records.sort(key=lambda r: r[0])
    write_pcap(d / CAPTURE, records, snaplen=96)
    times, cum = [r[0] for r in records], []
    for r in records:
        cum.append((cum[-1] if cum else 0) + r[2])

    def octets(t: float) -> float:  # the counter as snmpd would show it at t: refreshed every snmp_cache s
        seen = T0 - 0.5 + snmp_cache * int((t - (T0 - 0.5)) / snmp_cache) if snmp_cache else t
        k = bisect.bisect_right(times, seen)
        return 10_000 + (cum[k - 1] if k else 0) * snmp_factor
    snmp_t = [T0 + 0.4 + k for k in range(int(end - T0) + 1)]
    series["snmp"] = [{"metric": {"__name__": "ifHCInOctets", "ifName": "server1-eth0"},
                       "values": [[t, str(octets(t) * 0.3)] for t in snmp_t]},
                      {"metric": {"__name__": "ifHCOutOctets", "ifName": "server1-eth0"},
                       "values": [[t, str(octets(t) * 0.7)] for t in snmp_t]}]
    (d / SERIES).write_text(json.dumps(series))
    web = ["server1", "server2"]
    cpu = {f"{h}/{k}": 100 for h in web for k in ("nginx_exporter", "snmpd")}
    cpu.update({"monitor/rsyslog": 50, "monitor/mtail": 60, "monitor/snmp_exporter": 70})
    (d / PHASE).write_text(json.dumps({
        "server": "server1", "interface": "server1-eth0", "web": web, "clk_tck": 100, "rate": RATE,
        "url": f"https://www.foobar.com/static/{BLOB}", "t_idle_start": T0, "t_load_start": t_load,
        "t_load_end": t_load_end, "t_end": end, "tcpdump": {"captured": len(records), "lost": lost},
        "cpu_before": cpu, "cpu_after": {k: v + 12 for k, v in cpu.items()}}))
    write_csv(d / "windows.csv", ["name", "t_start", "t_end"], [["load", f"{t_load:.3f}", f"{t_load_end:.3f}"]])
    write_cpu(d, T0, end, busy)
    return exp, raw


def test_supported_when_every_source_matches_and_each_delay_is_reported(tmp_path):
    exp, raw = run(tmp_path)
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    m = v.measured
    for src in ("agent", "api", "logs"):
        assert abs(m[f"{src}_qps_error"]) < 0.01, (src, m)
        assert m[f"{src}_delay_s"] == pytest.approx(0.01, abs=0.05)
    assert abs(m["snmp_rate_error"]) < 0.02
    assert 0.0 < m["snmp_delay_s"] <= 3.1           # the cache's age, not the scrape's
    assert m["agent_cpu_s_servers"] == pytest.approx(0.24) and m["api_cpu_s_servers"] == 0
    assert m["logs_cpu_s_servers"] == 0 and m["logs_cpu_s_monitor"] == pytest.approx(0.24)
    assert "SNMP" in v.summary and "agent" in v.summary


@pytest.mark.parametrize("kw,expect", [
    ({"factors": {"agent": 1.04}}, "supported"),     # inside +-5%
    ({"factors": {"agent": 1.07}}, "refuted"),
    ({"factors": {"api": 0.93}}, "refuted"),
    ({"factors": {"logs": 0.9}}, "refuted"),         # log lines lost on the way
    ({"snmp_factor": 1.08}, "refuted"),
    ({"snmp_cache": 0.0}, "supported"),
    ({"lost": 3}, "inconclusive"),                   # the capture missed packets
    ({"failed": 40}, "inconclusive"),                # 4% of requests failed
    ({"sent_fraction": 0.9}, "inconclusive"),
    ({"reset": True}, "inconclusive"),               # a source restarted mid-run
    ({"busy": 0.99}, "inconclusive"),                # a saturated machine
])
def test_verdict_follows_the_rule(tmp_path, kw, expect):
    exp, raw = run(tmp_path, **kw)
    v = exp.analyse(raw)
    assert v.verdict == expect, (kw, v.reasons)


def test_missing_snmp_samples_make_it_inconclusive(tmp_path):
    exp, raw = run(tmp_path)
    s = json.loads((raw / "secured" / SERIES).read_text())
    s["snmp"] = []
    (raw / "secured" / SERIES).write_text(json.dumps(s))
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive" and any("SNMP" in r for r in v.reasons), v.reasons


def test_rule_states_the_claims_thresholds():
    from experiments import registry
    exp = registry.get("agentless-monitoring")
    text = exp.rule_text({})
    assert "5%" in text and "SNMP octet rate" in text and "delay" in text


# ---- rendered configurations ------------------------------------------------------------------------
def test_snmpd_conf_listens_on_the_lab_address_and_shows_only_the_interface_octets(tmp_path):
    from hostapps.snmpd import Snmpd
    s = Snmpd(host(), tmp_path, address=SERVER, pollers=[MONITOR])
    s.render()
    text = s.conf.read_text()
    assert f"agentAddress udp:{SERVER}:161\n" in text
    communities = re.findall(r"^rocommunity (\S+) (\S+) (\S+)$", text, re.M)
    assert sorted(src for _, src, _ in communities) == sorted([f"{MONITOR}/32", f"{SERVER}/32"])
    assert {view for _, _, view in communities} == {".1.3.6.1.2.1.31.1.1.1"}
    assert f"persistentDir {tmp_path / 'state'}" in text and "rwcommunity" not in text
    assert oct(s.conf.stat().st_mode & 0o777) == "0o600"
    argv = s.argv()
    assert argv[:2] == ["snmpd", "-f"] and "-C" in argv and str(s.conf) in argv
    assert s.env()["SNMP_PERSISTENT_DIR"] == str(tmp_path / "state")


@pytest.mark.parametrize("opts,message", [
    ({"address": "server1", "pollers": [MONITOR]}, "IP addresses"),
    ({"address": SERVER, "pollers": []}, "no pollers"),
    ({"address": SERVER, "pollers": [MONITOR], "community": "two words"}, "one word"),
])
def test_snmpd_rejects_bad_options(tmp_path, opts, message):
    from hostapps.snmpd import Snmpd
    from weblab.core.errors import WeblabError
    with pytest.raises(WeblabError, match=message):
        Snmpd(host(), tmp_path, **opts)


# the SNMP exporter on Debian 12 (0.21: auth inside the module) and Debian 13 (0.28: auths apart)
SNMP_RELEASES = {"0.21": (0, 21, 0), "0.28": (0, 28, 0)}


@pytest.mark.parametrize("release", SNMP_RELEASES)
def test_snmp_exporter_module_walks_the_two_octet_counters_with_ifname(tmp_path, monkeypatch, release):
    from hostapps.snmp_exporter import AUTH, MODULE, SnmpExporter
    monkeypatch.setattr(SnmpExporter, "version", classmethod(lambda cls: SNMP_RELEASES[release]))
    e = SnmpExporter(host("monitor"), tmp_path)
    e.render()
    doc = yaml.safe_load(e.conf.read_text())
    if release == "0.21":
        mod = doc[MODULE]
        assert mod["version"] == 2 and mod["auth"]["community"] == e.opts["community"]
    else:
        assert set(doc) == {"auths", "modules"} and set(doc["modules"]) == {MODULE}
        assert doc["auths"] == {AUTH: {"version": 2, "community": e.opts["community"]}}
        mod = doc["modules"][MODULE]
        assert "auth" not in mod and "version" not in mod
    assert mod["timeout"] == "1s" and mod["retries"] == 0
    assert set(mod["walk"]) == {"1.3.6.1.2.1.31.1.1.1.1", "1.3.6.1.2.1.31.1.1.1.6", "1.3.6.1.2.1.31.1.1.1.10"}
    metrics = {x["name"]: x for x in mod["metrics"]}
    assert set(metrics) == {"ifHCInOctets", "ifHCOutOctets"}
    for x in metrics.values():
        assert x["type"] == "counter" and x["lookups"][0]["labelname"] == "ifName"
    assert e.check_argv()[-1] == "--dry-run" and e.listen == "127.0.0.1:9116"


def test_mtail_program_counts_the_lines_nginx_sends(tmp_path):
    from hostapps.mtail import BYTES, REQUESTS, Mtail
    t = Mtail(host("monitor"), tmp_path / "mtail")
    t.render()
    text = t.program.read_text()
    assert f"counter {REQUESTS} by web_server, status" in text and f"counter {BYTES} by web_server" in text
    pattern = re.search(r"^/(.*)/ \{$", text, re.M).group(1)
    line = "<190>Dec  1 23:31:25 nginx_server1: 200 GET 18"      # as Nginx 1.22 sent it (no hostname)
    got = re.match(pattern, line)
    assert got and got.group("web_server") == "server1" and got.group("status") == "200"
    assert got.group("body_bytes") == "18"
    assert not re.match(pattern, "<190>Dec  1 23:31:25 sshd[12]: 200 GET 18")
    assert t.log_file == tmp_path / "rsyslog" / "access-logs.log"   # the collector's file on the same host
    assert "--logs" in t.argv() and str(t.log_file) in t.argv() and "--logtostderr" in t.argv()


def test_rsyslog_conf_receives_udp_on_one_address_into_its_own_file(tmp_path):
    from hostapps.rsyslog import Rsyslog
    r = Rsyslog(host("monitor"), tmp_path, address=MONITOR, port=5140)
    r.render()
    text = r.conf.read_text()
    assert f'input(type="imudp" address="{MONITOR}" port="5140"' in text and 'rcvbufSize="4m"' in text
    assert f'file="{r.collected}"' in text and 'module(load="imudp")' in text
    assert "imuxsock" not in text and "imklog" not in text
    assert r.check_argv()[:2] == ["rsyslogd", "-N1"] and "-n" in r.argv()


def test_nginx_sends_its_access_log_as_syslog_only_when_asked(tmp_path):
    from hostapps.nginx import Nginx
    n = Nginx(host(), tmp_path / "a", server_name="server1", syslog_host=MONITOR, syslog_port=5140)
    n.dir.mkdir(parents=True)
    n.render()
    text = n.conf.read_text()
    assert f"access_log syslog:server={MONITOR}:5140,tag=nginx_server1,nohostname lab_syslog;" in text
    assert "log_format lab_syslog '$status $request_method $body_bytes_sent';" in text
    plain = Nginx(host(), tmp_path / "b", server_name="server1")
    plain.dir.mkdir(parents=True)
    plain.render()
    assert "syslog" not in plain.conf.read_text()


@pytest.mark.parametrize("release", SNMP_RELEASES)
def test_prometheus_asks_the_snmp_exporter_for_each_agent(tmp_path, monkeypatch, release):
    from hostapps.prometheus import Prometheus
    from hostapps.snmp_exporter import SnmpExporter
    monkeypatch.setattr(SnmpExporter, "version", classmethod(lambda cls: SNMP_RELEASES[release]))
    p = Prometheus(host("monitor"), tmp_path, targets=[
        {"job": "snmp", "host": "server1", "address": SERVER},
        {"job": "mtail", "host": "monitor", "address": "127.0.0.1"}])
    p.render()
    doc = yaml.safe_load(p.conf.read_text())
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    snmp = jobs["snmp"]
    assert snmp["metrics_path"] == "/snmp"
    assert snmp["params"] == ({"module": ["if_octets"]} if release == "0.21" else
                              {"module": ["if_octets"], "auth": ["lab_v2c"]})
    assert snmp["static_configs"] == [{"targets": [f"{SERVER}:161"], "labels": {"server": "server1"}}]
    relabel = {r["target_label"]: r for r in snmp["relabel_configs"]}
    assert relabel["__param_target"]["source_labels"] == ["__address__"]
    assert relabel["__address__"]["replacement"] == "127.0.0.1:9116"
    assert jobs["mtail"]["static_configs"][0]["targets"] == ["127.0.0.1:3903"]


# ---- the design and its firewall ---------------------------------------------------------------------
def secured(**params):
    from topologies.secured import Secured
    return Secured(**Secured.resolve_params(params))


def test_secured_runs_the_agentless_sources_and_prometheus_waits_for_them():
    topo = secured()
    kinds = {(s.host, s.kind) for s in topo.services}
    assert {("server1", "snmpd"), ("server2", "snmpd"), ("monitor", "snmp_exporter"), ("monitor", "rsyslog"),
            ("monitor", "mtail")} <= kinds
    prom = topo.service_spec("monitor", "prometheus")
    assert {"snmpd@server1", "snmpd@server2", "snmp_exporter@monitor", "mtail@monitor"} <= set(prom.after)
    jobs = {(t["job"], t["host"]) for t in prom.options["targets"]}
    assert {("snmp", "server1"), ("snmp", "server2"), ("mtail", "monitor"), ("haproxy", "lb1")} <= jobs
    assert topo.service_spec("server1", "nginx").options["syslog_port"] == 5140
    off = secured(agentless=False)
    assert not {s.kind for s in off.services} & {"snmpd", "snmp_exporter", "rsyslog", "mtail"}
    assert "syslog_host" not in off.service_spec("server1", "nginx").options
    assert not {s.kind for s in secured(monitoring=False).services} & {"snmpd", "mtail"}


def test_firewall_admits_exactly_the_new_monitoring_flows():
    from controllers.policy import parse_policy
    from weblab.lab import service_defaults
    topo = secured()
    p = parse_policy(topo.policy_document(service_defaults()))
    ip = {h: topo.addresses_of(h)[0] for h in topo.hosts()}
    monitor, s1, s2, client, lb = ip["monitor"], ip["server1"], ip["server2"], ip["client"], ip["lb1"]
    assert p.admits(monitor, s1, "udp", 161) and p.admits(monitor, s2, "udp", 161)
    for src in (client, lb, s2):                    # SNMP from the monitor only
        assert not p.admits(src, s1, "udp", 161)
    assert not p.admits(monitor, s1, "tcp", 161) and not p.admits(s1, monitor, "udp", 161)
    assert p.admits(s1, monitor, "udp", 5140) and p.admits(s2, monitor, "udp", 5140)
    for src in (client, lb):                        # syslog from the web servers only
        assert not p.admits(src, monitor, "udp", 5140)
    for port in (161, 5140, 9116, 3903):            # nothing new from the client (C9's scans)
        for dst in ip.values():
            assert not p.admits(client, dst, "udp", port) and not p.admits(client, dst, "tcp", port)
    off = parse_policy(secured(agentless=False).policy_document(service_defaults()))
    assert not off.admits(monitor, s1, "udp", 161) and not off.admits(s1, monitor, "udp", 5140)
