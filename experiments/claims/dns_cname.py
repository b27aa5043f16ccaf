"""C15 dns-cname: www.foobar.com is a CNAME to foobar.com, whose A record is the entry point (seen on the wire)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.base import Case, Experiment, read_lab_info, say
from experiments.capture import dns_answers, wait_capture_ready
from experiments.registry import register
from experiments.verdict import Check, Verdict, inconclusive

DESIGNS = ["one-server"]  # every design answers the same way: add each as it exists


@register
class DnsCname(Experiment):
    """Capture the client's link while dig asks for www.foobar.com; read the answer chain from the pcap."""

    slug = "dns-cname"
    claim = "C15"
    title = "www is a CNAME to foobar.com, whose A record is the entry point"
    statement = "`www` in www.foobar.com is a CNAME to foobar.com, whose A record points at the entry point."
    design = "one-server"
    defaults = {"name": "www.foobar.com", "target": "foobar.com", "host": "client", "switch": "s1",
                "server": "auto"}
    timing_sensitive = False
    checks = (
        Check("cname", "==", True, "{name} is a CNAME to {target}"),
        Check("entry_a_after_cname", "==", True, "after it, {target} A = the lab's entry point"),
        Check("a_records_of_name", "==", 0, "A records for {name} itself"),
    )
    summary = ("the first DNS answer on the client's link was {answer_chain:names}",)

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case(d, d, {}) for d in DESIGNS]

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"tcpdump on the client's link while dig asks for {p['name']} A; the first DNS response with "
                f"answers is read from the pcap")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        host = params["host"]
        intf = lab.link_intfs(host, params["switch"])[0]
        server = params["server"]
        if server == "auto":
            server = lab.ip("dns") if "dns" in lab.hosts() else ""
        pcap = out / "dns.pcap"
        cap = lab.capture(host, intf, pcap, bpf="port 53")
        try:
            if not wait_capture_ready(pcap, 5):
                raise RuntimeError(f"tcpdump on {host}:{intf} did not start writing {pcap} within 5 s")
            argv = ["dig", "+tries=1", "+time=3", *([f"@{server}"] if server else []), params["name"], "A"]
            say(" ".join(argv))
            res = lab.exec(host, argv, timeout=15)
            (out / "dig.txt").write_text(f"$ {' '.join(argv)}\n{res.stdout}{res.stderr}")
        finally:
            cap.stop()

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        entry = read_lab_info(raw).get("entry_ip")
        responses = [a for a in dns_answers(raw / "dns.pcap", params["name"]) if a.records]
        if not responses:
            return inconclusive(rule, f"no DNS response with answers for {params['name']} in dns.pcap")
        ans = responses[0]
        name, target = params["name"].lower().rstrip("."), params["target"].lower().rstrip(".")
        chain = [f"{n} {t} {v}" for n, t, v in ans.records]
        cname_at = next((i for i, r in enumerate(ans.records) if r == (name, "CNAME", target)), None)
        a_target = [v for n, t, v in ans.records if n == target and t == "A"]
        a_direct = [v for n, t, v in ans.records if n == name and t == "A"]
        m = {"frame": ans.frame, "resolver": ans.src, "rcode": ans.rcode, "answer_chain": chain,
             "entry_ip": entry, "a_records": a_target, "cname": cname_at is not None,
             "entry_a_after_cname": entry in a_target and cname_at is not None
             and ans.records.index((target, "A", entry)) > cname_at, "a_records_of_name": a_direct}
        return self.verdict(case, m, params, notes=[f"answer (frame {ans.frame} from {ans.src}): " + "; ".join(chain)])
