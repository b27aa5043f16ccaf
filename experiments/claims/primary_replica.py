"""C7 primary-replica: writes on the primary reach the replica (lag measured per write); the replica refuses writes."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from experiments import drive, plots
from experiments.base import Case, Experiment, say
from experiments.fidelity import window
from experiments.registry import register
from experiments.stats import percentile, rounded
from experiments.verdict import INCONCLUSIVE, Verdict, decide

PRIMARY, REPLICA = "server1", "server2"
LAG, SUMMARY, ATTEMPT, STATUS = "lag.csv", "lag.json", "replica_write.json", "replica_status.json"
READ_ONLY_ERRNO = 1290  # ER_OPTION_PREVENTS_STATEMENT: the server runs with --read-only


@register
class PrimaryReplica(Experiment):
    """experiments/tools/replag.py in the replica's host: sequential writes on the primary, each timed until visible."""

    slug = "primary-replica"
    claim = "C7"
    title = "Primary-replica replication: writes replicate, the replica refuses writes"
    statement = ("Writes go to the primary and are replicated to the replica, which serves reads and refuses "
                 "writes.")
    design = "distributed"
    defaults = {"writes": 300, "interval": 0.01, "max_seconds": 30.0, "visible_timeout": 5.0,
                "final_timeout": 10.0, "min_writes": 100}
    key_values = ("lag_p50_ms", "lag_p99_ms", "lag_max_ms", "missing_on_replica")

    def rule_text(self, params: dict[str, Any]) -> str:
        p = {**self.params(), **params}
        return (f"every write acknowledged by the primary ({PRIMARY}) is present on the replica ({REPLICA}) "
                f"(each polled until visible, <= {p['visible_timeout']:g} s, then all re-checked <= "
                f"{p['final_timeout']:g} s); lag (ack on the primary -> visible on the replica, one clock) p50/p99 "
                f"reported; an INSERT on the replica is rejected with MariaDB error {READ_ONLY_ERRNO} (read-only). "
                f"Inconclusive with fewer than {p['min_writes']} acknowledged writes")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        db = lab.service(REPLICA, "mariadb")
        (out / STATUS).write_text(json.dumps({"before": db.replica_status()}, indent=2) + "\n")
        say(f"{params['writes']} writes on {PRIMARY}, each timed until visible on {REPLICA}")
        with window(out, "replication"):
            proc = drive.start_tool(lab, REPLICA, "replag", [
                "--primary", lab.ip(PRIMARY), "--replica", "127.0.0.1", "--writes", str(params["writes"]),
                "--interval", str(params["interval"]), "--max-seconds", str(params["max_seconds"]),
                "--visible-timeout", str(params["visible_timeout"]), "--final-timeout", str(params["final_timeout"]),
                "--tag", f"c7-{lab.run_id}", "--out", str(out / LAG), "--replica-write", str(out / ATTEMPT)],
                out / SUMMARY)
            drive.finish(proc, params["max_seconds"] + params["visible_timeout"] + params["final_timeout"] + 20, "replag")
        status = json.loads((out / STATUS).read_text())
        status["after"] = db.replica_status()
        (out / STATUS).write_text(json.dumps(status, indent=2) + "\n")

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        with open(raw / LAG, newline="") as f:
            rows = list(csv.DictReader(f))
        lines = [ln for ln in (raw / SUMMARY).read_text().splitlines() if ln.startswith("{")]
        if not lines:
            raise ValueError(f"{SUMMARY} has no summary line: replag did not finish")
        summary = json.loads(lines[-1])
        attempt = json.loads((raw / ATTEMPT).read_text())
        acked = [r for r in rows if r["t_ack"]]
        lags = [float(r["t_visible"]) - float(r["t_ack"]) for r in acked if r["visible"] == "1"]
        lat = [float(r["t_ack"]) - float(r["t_write"]) for r in acked]
        missing = summary.get("missing_on_replica", [])
        status = json.loads((raw / STATUS).read_text()) if (raw / STATUS).exists() else {}
        m = {"writes_attempted": len(rows), "writes_acked": len(acked), "write_errors": len(rows) - len(acked),
             "visible_within_timeout": len(lags), "missing_on_replica": len(missing),
             "lag_p50_ms": rounded(percentile(lags, 50) * 1000, 3), "lag_p90_ms": rounded(percentile(lags, 90) * 1000, 3),
             "lag_p99_ms": rounded(percentile(lags, 99) * 1000, 3), "lag_max_ms": rounded(max(lags, default=float("nan")) * 1000, 3),
             "write_ack_p50_ms": rounded(percentile(lat, 50) * 1000, 3),
             "replica_write_rejected": attempt.get("rejected"), "replica_write_errno": attempt.get("errno"),
             "replica_write_error": attempt.get("message"),
             "replica_io_sql_running": [status.get("after", {}).get("Slave_IO_Running"),
                                        status.get("after", {}).get("Slave_SQL_Running")],
             "seconds_behind_master_after": status.get("after", {}).get("Seconds_Behind_Master")}
        png = plots.cdf({"replication lag": [x * 1000 for x in lags], "write ack on primary": [x * 1000 for x in lat]},
                        plots_dir / "replication-lag-cdf.png",
                        f"C7: {len(lags)} writes on {PRIMARY} -> visible on {REPLICA}",
                        "milliseconds", log_x=True,
                        bounds=[(m["lag_p99_ms"], "lag p99")] if m["lag_p99_ms"] else [])
        v = Verdict(INCONCLUSIVE, rule, m, plots=[str(png)])
        if len(acked) < params["min_writes"]:
            v.reasons.append(f"only {len(acked)} writes were acknowledged by the primary")
            return v
        checks = {f"every acknowledged write is on the replica ({len(missing)} missing)": not missing,
                  f"lag p99 measured ({m['lag_p99_ms']} ms over {len(lags)} writes)": m["lag_p99_ms"] is not None,
                  f"write on the replica rejected read-only (errno {attempt.get('errno')})":
                      bool(attempt.get("rejected")) and attempt.get("errno") == READ_ONLY_ERRNO}
        v.verdict = decide(checks)
        v.reasons = [f"{k}: {'yes' if ok else 'NO'}" for k, ok in checks.items()]
        return v
