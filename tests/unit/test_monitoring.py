"""Monitoring hostapps: rendered Prometheus config and rules, exporter command lines, and the QPS
rules proven on synthetic series with `promtool test rules`."""
from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from hostapps import prometheus as prom
from hostapps.base import HostHandle
from hostapps.exporters import MysqldExporter, NginxExporter, NodeExporter, mysql_up
from hostapps.prometheus import Prometheus, seconds
from weblab.core.errors import NotReady, WeblabError

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="needs promtool (Debian package prometheus)")

TARGETS = [
    {"job": "node", "host": "server1", "address": "10.0.1.11"},
    {"job": "nginx", "host": "server1", "address": "10.0.1.11"},
    {"job": "nginx", "host": "server2", "address": "10.0.1.12:9999"},
    {"job": "nginx", "host": "server3", "address": "10.0.1.13", "port": 9888},
    {"job": "mysqld", "host": "server1", "address": "10.0.1.11"},
    {"job": "haproxy", "host": "lb1", "address": "10.0.1.10"},
]


def handle(name: str = "monitor") -> HostHandle:
    return HostHandle(name, pid=1, ips=["10.0.1.5"])


def rendered(tmp_path: Path, **opts) -> Prometheus:
    """A Prometheus hostapp with its files rendered into tmp_path."""
    svc = Prometheus(handle(), tmp_path, **{"targets": TARGETS, **opts})
    svc.render()
    return svc


def scrape_configs(svc: Prometheus) -> dict[str, dict]:
    return {sc["job_name"]: sc for sc in yaml.safe_load(svc.conf.read_text())["scrape_configs"]}


def rules_by_name(svc: Prometheus) -> dict[str, dict]:
    groups = yaml.safe_load(svc.rules.read_text())["groups"]
    return {r.get("record") or r["alert"]: r for g in groups for r in g["rules"]}


# --- rendered configuration ----------------------------------------------------------------------
def test_config_intervals_rule_file_and_targets_with_server_labels(tmp_path):
    svc = rendered(tmp_path, scrape_interval="2s", evaluation_interval="3s", rate_window="10s")
    conf = yaml.safe_load(svc.conf.read_text())
    assert conf["global"] == {"scrape_interval": "2s", "scrape_timeout": "2s",
                              "evaluation_interval": "3s"}
    assert conf["rule_files"] == [str(tmp_path / "prometheus-rules.yml")]
    jobs = scrape_configs(svc)
    assert list(jobs) == ["node", "nginx", "mysqld", "haproxy"]
    assert jobs["nginx"]["static_configs"] == [
        {"targets": ["10.0.1.11:9113"], "labels": {"server": "server1"}},
        {"targets": ["10.0.1.12:9999"], "labels": {"server": "server2"}},  # an explicit port stays
        {"targets": ["10.0.1.13:9888"], "labels": {"server": "server3"}}]
    ports = {job: sc["static_configs"][0]["targets"][0].rsplit(":", 1)[1] for job, sc in jobs.items()}
    assert ports == {"node": "9100", "nginx": "9113", "mysqld": "9104", "haproxy": "8404"}
    assert all("labels" in c and c["labels"]["server"] for sc in jobs.values() for c in sc["static_configs"])


def test_haproxy_backend_server_label_is_kept_apart_from_the_target_server_label(tmp_path):
    jobs = scrape_configs(rendered(tmp_path))
    assert jobs["haproxy"]["metric_relabel_configs"] == [
        {"source_labels": ["exported_server"], "target_label": "backend_server"},
        {"regex": "exported_server", "action": "labeldrop"}]
    assert all("metric_relabel_configs" not in sc for job, sc in jobs.items() if job != "haproxy")


def test_rules_record_the_documented_names_with_the_window(tmp_path):
    rules = rules_by_name(rendered(tmp_path, rate_window="7s"))
    names = [prom.QPS_PER_SERVER, prom.QPS_TOTAL_NGINX, prom.QPS_PER_SERVER_LB, prom.QPS_BACKEND_LB,
             prom.QPS_FRONTEND_LB, prom.QPS_TOTAL, prom.ALERT]
    assert list(rules) == names  # order matters: later rules read earlier ones in one evaluation
    assert rules[prom.QPS_PER_SERVER]["expr"] == \
        'sum by (server) (rate(nginx_http_requests_total{job="nginx"}[7s]))'
    for name in names[:5]:
        assert "[7s]" in rules[name]["expr"], name
    assert 'proxy!="stats"' in rules[prom.QPS_FRONTEND_LB]["expr"]
    assert '"backend_server"' in rules[prom.QPS_PER_SERVER_LB]["expr"]


def test_alert_threshold_for_labels_and_annotations(tmp_path):
    alert = rules_by_name(rendered(tmp_path, qps_alert_threshold=75, qps_alert_for="4s"))[prom.ALERT]
    assert alert["expr"] == f"{prom.QPS_TOTAL} > 75.0"
    assert alert["for"] == "4s" and alert["labels"] == {"severity": "warning"}
    assert "{{ $value" in alert["annotations"]["summary"]  # left for Prometheus, not Jinja
    assert "above 75.0 requests/s for 4s" in alert["annotations"]["description"]


def test_prometheus_command_line_and_dry_run(tmp_path):
    svc = Prometheus(handle(), tmp_path, targets=TARGETS, port=19090, bind="10.0.1.5")
    argv = svc.argv()
    assert argv[0] == "prometheus"
    for flag in (f"--config.file={tmp_path}/prometheus.yml", f"--storage.tsdb.path={tmp_path}/data",
                 "--web.listen-address=10.0.1.5:19090", "--web.enable-lifecycle"):
        assert flag in argv
    assert svc.check_argv() == ["promtool", "check", "config", str(tmp_path / "prometheus.yml")]
    assert svc.url == "http://10.0.1.5:19090"
    assert Prometheus(handle(), tmp_path, targets=TARGETS).url == "http://127.0.0.1:9090"


@pytest.mark.parametrize("opts, message", [
    ({"targets": []}, "no scrape targets"),
    ({"targets": [{"job": "redis", "host": "x", "address": "1.2.3.4"}]}, "job must be one of"),
    ({"targets": [{"job": "node", "host": "server1"}]}, "needs a host and an address"),
    ({"targets": [{"job": "node", "host": "s", "address": "1.2.3.4", "labels": {}}]}, "keys are job, host"),
    ({"targets": TARGETS + [{"job": "nginx", "host": "server1", "address": "10.0.1.99"}]},
     "host server1 is listed twice for job nginx"),
    ({"scrape_interval": "1 s"}, "not a Prometheus duration"),
    ({"qps_alert_for": "5"}, "not a Prometheus duration"),
    ({"scrape_interval": "5s"}, "rate_window 5s must be at least twice scrape_interval 5s"),
    ({"qps_alert_threshold": "lots"}, "qps_alert_threshold must be a number"),
])
def test_bad_options_are_early_errors(tmp_path, opts, message):
    with pytest.raises(WeblabError, match=message):
        Prometheus(handle(), tmp_path, **{"targets": TARGETS, **opts})


def test_durations():
    assert seconds("1s") == 1 and seconds("500ms") == 0.5 and seconds("1m30s") == 90
    for bad in ("", "1", "1.5s", "s", "1sx"):
        with pytest.raises(WeblabError):
            seconds(bad)


# --- exporters -------------------------------------------------------------------------------------
def test_node_exporter_runs_only_cheap_collectors(tmp_path):
    argv = NodeExporter(handle("server1"), tmp_path).argv()
    assert argv[:2] == ["prometheus-node-exporter", "--web.listen-address=0.0.0.0:9100"]
    assert "--collector.disable-defaults" in argv
    assert sorted(a for a in argv if a.startswith("--collector.") and a != "--collector.disable-defaults") \
        == ["--collector.cpu", "--collector.loadavg", "--collector.meminfo", "--collector.netdev",
            "--collector.netstat"]
    with pytest.raises(WeblabError, match="collectors must be"):
        NodeExporter(handle("server1"), tmp_path, collectors=["cpu; rm"])


def test_nginx_exporter_reads_local_stub_status(tmp_path, monkeypatch):
    # the 0.11 command line (Debian 12); 1.x's is in test_versions.py
    monkeypatch.setattr(NginxExporter, "version", classmethod(lambda cls: (0, 11, 0)))
    svc = NginxExporter(handle("server1"), tmp_path, port=19113)
    argv = svc.argv()
    assert argv[0] == "prometheus-nginx-exporter"
    assert argv[argv.index("-nginx.scrape-uri") + 1] == "http://127.0.0.1/nginx_status"
    assert argv[argv.index("-web.listen-address") + 1] == "0.0.0.0:19113"
    assert svc.metrics_url == "http://127.0.0.1:19113/metrics"


def test_mysqld_exporter_credentials_file_is_private(tmp_path):
    svc = MysqldExporter(handle("server1"), tmp_path, mysql="10.0.1.11:3307")
    (tmp_path / "exporter.cnf").write_text("stale")  # a re-render replaces it, still private
    svc.render()
    cnf = tmp_path / "exporter.cnf"
    assert stat.S_IMODE(cnf.stat().st_mode) == 0o600
    lines = cnf.read_text().splitlines()
    for line in ("[client]", "user = exporter", "password = exporter-secret", "host = 10.0.1.11",
                 "port = 3307"):
        assert line in lines
    assert f"--config.my-cnf={cnf}" in svc.argv() and "--web.listen-address=0.0.0.0:9104" in svc.argv()
    with pytest.raises(WeblabError, match="mysql must be HOST:PORT"):
        MysqldExporter(handle("server1"), tmp_path, mysql="localhost").render()


def test_mysql_up_reads_the_exporters_verdict():
    assert mysql_up("# HELP mysql_up ...\n# TYPE mysql_up gauge\nmysql_up 1\n")
    assert not mysql_up("mysql_up 0\nmysql_upx 1\n")
    assert not mysql_up("")


# --- the daemons' own checkers ---------------------------------------------------------------------
@needs_promtool
def test_rendered_config_and_rules_pass_promtool(tmp_path):
    svc = rendered(tmp_path, qps_alert_for="3s")
    for argv in (svc.check_argv(), ["promtool", "check", "rules", str(svc.rules)]):
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stdout + res.stderr
    assert "7 rules found" in res.stdout


# --- the rules, proven on synthetic series ---------------------------------------------------------
def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    """One input series of a promtool rule test."""
    return {"series": metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}",
            "values": values}


def sample(name: str, value: float, **labels: str) -> dict:
    """One expected sample of a recording rule."""
    return {"labels": name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}",
            "value": value}


def nginx(server: str, values: str) -> dict[str, str]:
    return series("nginx_http_requests_total", values, job="nginx", server=server,
                  instance=f"{server}:9113")


def promtool_test(svc: Prometheus, tmp_path: Path, input_series: list, promql: list, alerts: list) -> None:
    """Run `promtool test rules` on the rendered rules; fail with promtool's report."""
    test = {"rule_files": [str(svc.rules)], "evaluation_interval": "1s",
            "tests": [{"interval": "1s", "input_series": input_series,
                       "promql_expr_test": promql, "alert_rule_test": alerts}]}
    path = tmp_path / "rules_test.yml"
    path.write_text(json.dumps(test, indent=1))  # JSON is YAML
    res = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def alert_at(t: str, firing: bool, value: float) -> dict:
    """HighQPS expected at eval time t: firing with its labels and annotations, or absent."""
    exp = [{"exp_labels": {"severity": "warning"},
            "exp_annotations": {"summary": f"High QPS: {value:.1f} requests/s",
                                "description": "The lab's total request rate (lab:http_requests:rate, "
                                               "over 5s) is above 50.0 requests/s."}}]
    return {"eval_time": t, "alertname": prom.ALERT, "exp_alerts": exp if firing else []}


@needs_promtool
def test_rules_give_100_qps_for_a_counter_rising_100_per_second_and_fire(tmp_path):
    svc = rendered(tmp_path)
    promql = [{"expr": prom.QPS_PER_SERVER, "eval_time": "10s",
               "exp_samples": [sample(prom.QPS_PER_SERVER, 100, server="server1")]},
              {"expr": prom.QPS_TOTAL_NGINX, "eval_time": "10s",
               "exp_samples": [sample(prom.QPS_TOTAL_NGINX, 100, job="nginx")]},
              # no load balancer scraped: the lab's total is what Nginx served
              {"expr": prom.QPS_TOTAL, "eval_time": "10s", "exp_samples": [sample(prom.QPS_TOTAL, 100)]}]
    promtool_test(svc, tmp_path, [nginx("server1", "1000+100x30")], promql,
                  [alert_at("10s", True, 100)])


@needs_promtool
def test_alert_stays_quiet_at_or_below_the_threshold(tmp_path):
    svc = rendered(tmp_path)
    promtool_test(svc, tmp_path, [nginx("server1", "1000+50x30")],
                  [{"expr": prom.QPS_TOTAL, "eval_time": "10s", "exp_samples": [sample(prom.QPS_TOTAL, 50)]}],
                  [alert_at("10s", False, 0), alert_at("25s", False, 0)])


@needs_promtool
def test_alert_fires_only_after_its_for_duration_and_clears_when_load_drops(tmp_path):
    svc = rendered(tmp_path, qps_alert_for="5s")
    exp = [{"exp_labels": {"severity": "warning"},
            "exp_annotations": {"summary": "High QPS: 100.0 requests/s",
                                "description": "The lab's total request rate (lab:http_requests:rate, "
                                               "over 5s) is above 50.0 requests/s for 5s."}}]
    # 100/s for 20 s, then flat: the rate is above 50 from t=1s to ~t=22s
    alerts = [{"eval_time": "3s", "alertname": prom.ALERT, "exp_alerts": []},  # pending, not firing
              {"eval_time": "10s", "alertname": prom.ALERT, "exp_alerts": exp},
              {"eval_time": "30s", "alertname": prom.ALERT, "exp_alerts": []}]  # cleared
    promtool_test(svc, tmp_path, [nginx("server1", "1000+100x20 3000x20")], [], alerts)


@needs_promtool
def test_qps_follows_a_step_change_within_the_window(tmp_path):
    svc = rendered(tmp_path)
    # 10/s until t=30s, then 100/s: the 5s window has wholly new samples at t=35s
    promql = [{"expr": prom.QPS_PER_SERVER, "eval_time": t,
               "exp_samples": [sample(prom.QPS_PER_SERVER, v, server="server1")]}
              for t, v in (("29s", 10), ("35s", 100), ("50s", 100))]
    promtool_test(svc, tmp_path, [nginx("server1", "0+10x30 400+100x30")], promql, [])


@needs_promtool
def test_per_server_and_load_balancer_totals(tmp_path):
    svc = rendered(tmp_path)
    lb = {"job": "haproxy", "instance": "10.0.1.10:8404"}
    inputs = [
        nginx("server1", "0+100x30"), nginx("server2", "0+50x30"),
        # two load balancers, as the haproxy job's relabelling leaves their series
        series("haproxy_server_http_responses_total", "0+60x30", server="lb1", backend_server="server1",
               proxy="servers", code="2xx", **lb),
        series("haproxy_server_http_responses_total", "0+30x30", server="lb2", backend_server="server1",
               proxy="servers", code="2xx", **lb),
        series("haproxy_server_http_responses_total", "0+10x30", server="lb1", backend_server="server1",
               proxy="servers", code="5xx", **lb),
        series("haproxy_server_http_responses_total", "0+40x30", server="lb1", backend_server="server2",
               proxy="servers", code="2xx", **lb),
        series("haproxy_backend_http_requests_total", "0+140x30", server="lb1", proxy="servers", **lb),
        series("haproxy_frontend_http_requests_total", "0+140x30", server="lb1", proxy="web", **lb),
        # Prometheus' own scrapes of the stats frontend are not client load
        series("haproxy_frontend_http_requests_total", "0+1000x30", server="lb1", proxy="stats", **lb),
    ]
    promql = [
        {"expr": prom.QPS_PER_SERVER, "eval_time": "10s",
         "exp_samples": [sample(prom.QPS_PER_SERVER, 100, server="server1"),
                         sample(prom.QPS_PER_SERVER, 50, server="server2")]},
        {"expr": prom.QPS_TOTAL_NGINX, "eval_time": "10s",
         "exp_samples": [sample(prom.QPS_TOTAL_NGINX, 150, job="nginx")]},
        {"expr": prom.QPS_PER_SERVER_LB, "eval_time": "10s",  # every code, both load balancers
         "exp_samples": [sample(prom.QPS_PER_SERVER_LB, 100, server="server1"),
                         sample(prom.QPS_PER_SERVER_LB, 40, server="server2")]},
        {"expr": prom.QPS_BACKEND_LB, "eval_time": "10s",
         "exp_samples": [sample(prom.QPS_BACKEND_LB, 140, job="haproxy")]},
        {"expr": prom.QPS_FRONTEND_LB, "eval_time": "10s",
         "exp_samples": [sample(prom.QPS_FRONTEND_LB, 140, job="haproxy")]},
        # with a load balancer scraped, the lab's total is its client requests, not Nginx's sum
        {"expr": prom.QPS_TOTAL, "eval_time": "10s", "exp_samples": [sample(prom.QPS_TOTAL, 140)]},
    ]
    promtool_test(svc, tmp_path, inputs, promql, [alert_at("10s", True, 140)])


# --- readiness: every target scraped and up ---------------------------------------------------------
class CannedHost(HostHandle):
    """A host whose commands answer with a canned stdout (the Prometheus API's JSON)."""

    def __init__(self, stdout: str):
        super().__init__("monitor", pid=1, ips=["10.0.1.5"])
        self.stdout = stdout

    def run(self, argv, timeout=10, **kw):
        return subprocess.CompletedProcess(argv, 0, self.stdout, "")


def targets_answer(*health: tuple[str, str, str]) -> str:
    return json.dumps({"status": "success", "data": {"activeTargets": [
        {"labels": {"job": job, "server": host}, "health": h, "scrapeUrl": f"http://{host}/metrics",
         "lastError": "" if h == "up" else "context deadline exceeded"} for job, host, h in health]}})


def test_wait_targets_names_the_target_that_is_down_or_missing(tmp_path):
    targets = TARGETS[:3]  # node@server1, nginx@server1, nginx@server2
    up = CannedHost(targets_answer(("node", "server1", "up"), ("nginx", "server1", "up"),
                                   ("nginx", "server2", "up")))
    Prometheus(up, tmp_path, targets=targets).wait_targets(0)
    down = CannedHost(targets_answer(("node", "server1", "up"), ("nginx", "server2", "down")))
    with pytest.raises(NotReady) as err:
        Prometheus(down, tmp_path, targets=targets).wait_targets(0)
    msg = str(err.value)
    assert "nginx on server2 (http://server2/metrics): down context deadline exceeded" in msg
    assert "nginx on server1: not scraped yet" in msg and "node on server1" not in msg
