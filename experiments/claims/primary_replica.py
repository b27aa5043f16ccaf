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
from experiments.verdict import PRESENT, REFUTED, Check, Figure, P, Verdict, gate

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
    checks = (
        gate("writes_acked", ">=", P("min_writes"), f"writes acknowledged by the primary ({PRIMARY})"),
        Check("missing_on_replica", "==", 0, f"acknowledged writes missing on the replica ({REPLICA})"),
        Check("lag_p99_ms", PRESENT, None, "replication lag p99", "ms", missing=REFUTED),
        Check("replica_write_rejected", "==", True, "an INSERT on the replica was rejected", missing=REFUTED),
        Check("replica_write_errno", "==", READ_ONLY_ERRNO, "the MariaDB error of that rejection (read-only)",
              missing=REFUTED, absent="no error"),
    )
    figures = {
        "lag_p50_ms": Figure("replication lag p50", "ms", rel_tol=1.0, abs_tol=1.0),
        "lag_p99_ms": Figure("replication lag p99", "ms", rel_tol=1.0, abs_tol=2.0),
        "lag_max_ms": Figure("replication lag max", "ms", rel_tol=2.0, abs_tol=5.0),
        "missing_on_replica": Figure("acknowledged writes missing on the replica", abs_tol=0),
    }
    summary = ("{missing_on_replica} of {writes_acked} writes acknowledged by the primary were missing on the "
               "replica (replication lag p50 {lag_p50_ms}, p99 {lag_p99_ms})",
               "an INSERT on the replica was refused with MariaDB error {replica_write_errno}")

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"{p['writes']} writes on the primary ({PRIMARY}), one after another every {p['interval'] * 1000:g} ms, "
                f"each polled on the replica ({REPLICA}) until visible (<= {p['visible_timeout']:g} s), then all "
                f"re-checked (<= {p['final_timeout']:g} s); lag = ack on the primary -> visible on the replica (one "
                f"clock); then one INSERT on the replica")

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
        return self.verdict(case, m, params, [png])
