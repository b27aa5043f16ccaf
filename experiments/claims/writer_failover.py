"""C17 writer-failover: killing the primary database promotes the replica; every acknowledged write survives."""
from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

from experiments import drive, plots
from experiments.base import Case, Experiment, say
from experiments.faults import FaultLog, first, read_faults
from experiments.fidelity import window
from experiments.registry import register
from experiments.stats import percentile, rounded
from experiments.verdict import INCONCLUSIVE, Check, Figure, P, Verdict, gate, inconclusive

WRITES = "writes.csv"
EVENTS = "failover-events.csv"   # the failover manager's events.csv, copied
PRESENT = "present-ids.txt"      # every items.id on the promoted server afterwards


def case_name(i: int) -> str:
    return f"failover-{i:02d}"


def read_writes(path: Path) -> list[dict[str, Any]]:
    """Rows of a writer CSV: seq, t_send, t_recv, status (int|None), id (int|None), error."""
    with open(path, newline="") as f:
        return [{"seq": int(r["seq"]), "t_send": float(r["t_send"]), "t_recv": float(r["t_recv"]),
                 "status": int(r["status"]) if r["status"] else None, "id": int(r["id"]) if r["id"] else None,
                 "error": r["error"]} for r in csv.DictReader(f)]


def read_events(path: Path) -> list[tuple[float, str, str]]:
    """(t, event, detail) of the failover manager."""
    with open(path, newline="") as f:
        return [(float(r[0]), r[1], r[2] if len(r) > 2 else "") for r in csv.reader(f) if r]


def failover_numbers(writes: list[dict[str, Any]], present: set[int], t_kill: float) -> dict[str, Any]:
    """Acknowledged / lost ids and the write outage (last ack before the kill -> first ack after it)."""
    acked = [w for w in writes if w["id"] is not None]
    before = [w for w in acked if w["t_recv"] <= t_kill]
    after = [w for w in acked if w["t_recv"] > t_kill]
    lost = sorted({w["id"] for w in acked} - present)
    # the outage is the longest silence between two acknowledgements around the kill: a write that db1
    # committed while the SIGKILL was being delivered is acknowledged a moment after the kill began
    times = sorted(w["t_recv"] for w in acked if w["t_recv"] >= t_kill - 1.0)
    gaps = [(b - a, a, b) for a, b in zip(times, times[1:]) if b > t_kill]
    _, last_before, first_after = max(gaps) if gaps else (None, max((w["t_recv"] for w in before), default=None), None)
    return {"attempts": len(writes), "acked": len(acked), "acked_before": len(before), "acked_after": len(after),
            "lost": len(lost), "lost_ids": lost[:50], "failed_attempts": len(writes) - len(acked),
            "last_ack_before": last_before, "first_ack_after": first_after,
            "write_outage_s": rounded(first_after - last_before, 3) if last_before and first_after else None}


@register
class WriterFailover(Experiment):
    """One fresh scaled lab per failover: a writer posts items; db1's MariaDB is SIGKILLed; the manager promotes db2."""

    slug = "writer-failover"
    claim = "C17"
    title = "Writer failover loses no acknowledged write"
    statement = ("Promoting the replica (or running several writable nodes) restores writes without losing "
                 "acknowledged ones.")
    design = "scaled"
    defaults = {"count": 3, "url": "https://www.foobar.com/api/items", "interval": 0.02, "timeout": 2.0,
                "before_s": 3.0, "failover_timeout": 15.0, "after_s": 4.0, "min_before": 20}
    checks = (
        gate("kill_ok", "==", True, "the kill of db1's MariaDB succeeded", fail="the kill failed"),
        gate("acked_before", ">=", P("min_before"), "writes acknowledged before the kill"),
        Check("lost", "==", 0, "acknowledged writes missing from db2's items table"),
        Check("acked_after", ">=", 1, "writes acknowledged after the failover"),
    )
    figures = {
        "failovers": Figure("failovers run", abs_tol=0),
        "acked": Figure("acknowledged writes, all failovers", rel_tol=0.3),
        "lost": Figure("acknowledged writes lost", abs_tol=0),
        "write_outage_p50_s": Figure("median write outage", "s", abs_tol=0.5),
        "write_outage_max_s": Figure("longest write outage", "s", abs_tol=1.0),
    }
    summary = ("over {failovers_judged} failovers of the primary database {lost} of {acked} acknowledged writes were "
               "lost, writes stopping for {write_outage_p50_s} (median; longest {write_outage_max_s})",)

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case(case_name(i), "scaled", {"params": {"monitoring": False}}) for i in range(1, int(params["count"]) + 1)]

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"per failover (a fresh scaled lab each; {p['count']} of them, --param count=N for more): a writer "
                f"posts items over HTTPS one after another every {p['interval'] * 1000:g} ms, recording each "
                f"acknowledged id (201); db1's MariaDB is SIGKILLed after {p['before_s']:g} s; the failover "
                f"manager promotes db2 and moves db-primary.foobar.com; {p['after_s']:g} s after that the writer "
                f"stops. Write outage = the longest gap between consecutive acknowledgements from 1 s before the "
                f"kill on (the last ack before the outage -> the first after it; reported)")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        faults = FaultLog(lab, out / "faults.csv")
        events = Path(lab.service("monitor", "dbfailover").events)
        total = params["before_s"] + params["failover_timeout"] + params["after_s"] + 5
        csv_path = out / WRITES
        proc = drive.start_tool(lab, "client", "writer", [
            "--url", params["url"], "--out", str(csv_path), "--duration", str(total), "--interval",
            str(params["interval"]), "--timeout", str(params["timeout"]), "--prefix", case.name], out / "writer.log")
        try:
            drive.wait_rows(csv_path, 1, timeout=10, proc=proc)
            with window(out, "writes"):
                drive.pause(params["before_s"])
                say(f"{case.name}: SIGKILL mariadb on db1")
                faults.kill("db1", "mariadb")
                deadline = time.monotonic() + params["failover_timeout"]
                while time.monotonic() < deadline:
                    text = events.read_text() if events.exists() else ""
                    if "dns-updated" in text or "failover-error" in text or "no-candidate" in text:
                        break
                    time.sleep(0.05)  # bounded poll of the manager's event log
                faults.mark("failover_seen", "monitor/dbfailover")
                drive.pause(params["after_s"])
        finally:
            drive.finish(proc, params["timeout"] + 5, "writer", terminate=True)
            if events.exists():
                (out / EVENTS).write_text(events.read_text())
        ids = lab.service("db2", "mariadb").sql("SELECT id FROM foobar.items ORDER BY id", timeout=20)
        (out / PRESENT).write_text(ids if ids.endswith("\n") or not ids else ids + "\n")

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        writes = read_writes(raw / WRITES)
        present = {int(x) for x in (raw / PRESENT).read_text().split() if x.strip().isdigit()}
        kill = first(read_faults(raw / "faults.csv"), "kill")
        if kill is None:
            return inconclusive(rule, "faults.csv lacks the kill of db1's MariaDB")
        events = read_events(raw / EVENTS) if (raw / EVENTS).exists() else []
        m: dict[str, Any] = {**failover_numbers(writes, present, kill.t_begin), "kill_ok": kill.ok}
        ev = {name: t for t, name, _ in reversed(events)}
        for name in ("primary-down", "promoted", "dns-updated"):
            m[f"{name.replace('-', '_')}_after_kill_s"] = rounded(ev[name] - kill.t_begin, 3) if name in ev else None
        m["failover_errors"] = [d for _, name, d in events if name in ("failover-error", "no-candidate")]
        m["present_rows"] = len(present)
        pngs = [str(self.timeline(case, writes, kill.t_begin, ev, plots_dir))]
        pngs.append(str(self.outage_plot(raw.parent, plots_dir)))
        return self.verdict(case, m, params, pngs, notes=[
            f"write outage {m['write_outage_s']} s; promoted {m['promoted_after_kill_s']} s and DNS moved "
            f"{m['dns_updated_after_kill_s']} s after the kill"])

    def timeline(self, case: Case, writes: list[dict[str, Any]], t_kill: float, ev: dict[str, float],
                 plots_dir: Path) -> Path:
        """Each write attempt over time: acknowledged (1) or not (0), with the kill and the manager's steps marked."""
        t0 = writes[0]["t_send"] if writes else t_kill
        return plots.series_timeline(
            {"acknowledged": ([w["t_send"] for w in writes if w["id"] is not None],
                              [1] * sum(w["id"] is not None for w in writes)),
             "not acknowledged": ([w["t_send"] for w in writes if w["id"] is None],
                                  [0] * sum(w["id"] is None for w in writes))},
            plots_dir / f"{case.name}-writes.png", f"C17 {case.name}: writes around the failover", "acknowledged",
            t0, marks=[(t_kill, "kill db1")] + [(t, n) for n, t in ev.items() if n in ("promoted", "dns-updated")],
            styles={"acknowledged": ".", "not acknowledged": "."})

    def outage_plot(self, raw_dir: Path, plots_dir: Path) -> Path:
        """Histogram of the write outage over every failover that ran (each from its own raw folder)."""
        outs = []
        for d in sorted(p for p in raw_dir.iterdir() if p.is_dir() and (p / WRITES).exists() and (p / PRESENT).exists()):
            kill = first(read_faults(d / "faults.csv"), "kill") if (d / "faults.csv").exists() else None
            if kill is None:
                continue
            n = failover_numbers(read_writes(d / WRITES), set(), kill.t_begin)
            if n["write_outage_s"] is not None:
                outs.append(n["write_outage_s"])
        return plots.histogram(outs, plots_dir / "write-outage-histogram.png",
                               f"C17 write outage over {len(outs)} failover(s)", "seconds (last ack before -> first after)")

    def conclude(self, parts: list[tuple[str, Verdict]], params: dict[str, Any]) -> Verdict:
        v = super().conclude(parts, params)
        judged = [p for _, p in parts if p.verdict != INCONCLUSIVE]
        outs = [p.measured["write_outage_s"] for p in judged if p.measured.get("write_outage_s") is not None]
        v.measured.update({
            "failovers": len(parts), "failovers_judged": len(judged),
            "acked": sum(p.measured.get("acked", 0) for p in judged),
            "lost": sum(p.measured.get("lost", 0) for p in judged),
            "write_outages_s": outs, "write_outage_p50_s": rounded(percentile(outs, 50), 3),
            "write_outage_max_s": rounded(max(outs), 3) if outs else None})
        v.reasons.insert(0, f"{len(judged)} of {len(parts)} failovers judged: {v.measured['acked']} acknowledged "
                            f"writes, {v.measured['lost']} lost; write outage p50 {v.measured['write_outage_p50_s']} s, "
                            f"max {v.measured['write_outage_max_s']} s")
        return v
