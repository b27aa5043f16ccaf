"""The `weblab` command: one verb per intent (list, doctor, up, status, exec, down, clean, run, report)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from weblab.core import paths
from weblab.core.errors import WeblabError


def parse_kv(items: list[str], what: str) -> dict[str, Any]:
    """KEY=VALUE pairs into a dict, values parsed as JSON where they parse (numbers, true/false)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise WeblabError(f"{what} {item!r} is not KEY=VALUE (example: {what} algorithm=leastconn)")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def need_root(verb: str) -> None:
    if os.geteuid() != 0:
        raise WeblabError(f"`weblab {verb}` needs root: run `sudo weblab {verb} ...`")


# ---------------------------------------------------------------------------------------- verbs
def cmd_list(args) -> int:
    from topologies import DESIGNS
    print("designs:")
    for name, cls in DESIGNS.items():
        print(f"  {name:22} {cls.summary}")
        for pname, p in cls.params.items():
            choices = f" ({'|'.join(map(str, p.choices))})" if p.choices else ""
            print(f"  {'':22}   --param {pname}={p.default}{choices}  {p.help}")
    try:
        from experiments import registry
        slugs = registry.all_slugs()
    except ImportError:
        slugs = []
    if slugs:
        print("experiments:")
        for slug in slugs:
            exp = registry.get(slug)
            print(f"  {slug:22} {getattr(exp, 'claim_id', '')}: {getattr(exp, 'title', '')}")
    return 0


def cmd_doctor(args) -> int:
    from weblab import doctor
    return doctor.main((["--design", args.design] if args.design else []) + (["-q"] if args.quiet else []))


def lab_kwargs(args) -> dict[str, Any]:
    """Design, parameters and options of `up`/`supervise`, validated before anything starts."""
    from topologies import get
    try:
        cls = get(args.design)
        params = cls.resolve_params(parse_kv(args.param, "--param"))
    except ValueError as e:
        raise WeblabError(str(e)) from None
    cpu = {k: float(v) for k, v in parse_kv(args.cpu, "--cpu").items()}
    cpus = {k: str(v) for k, v in parse_kv(args.cores, "--cores").items()}
    fw = None if args.firewall is None else args.firewall == "on"
    return {"design": args.design, "params": params, "cpu": cpu, "cores": cpus, "firewall": fw,
            "datapath": args.datapath}


def cmd_up(args) -> int:
    need_root("up")
    kw = lab_kwargs(args)
    from weblab.lab import preflight
    from topologies import get
    preflight(get(kw["design"]), kw["params"], kw["cpu"], kw["cores"])
    from weblab import lock
    if lock.is_held():
        raise WeblabError(lock.running_message(lock.read_holder()))
    if args.detach:
        return up_detached(kw, args.timeout)
    return up_interactive(kw)


def up_interactive(kw: dict[str, Any]) -> int:
    from weblab.lab import Lab
    lab = Lab(**kw)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    print(f"*** starting {kw['design']} (run {lab.run_id}) ...", flush=True)
    with lab:
        print(describe(lab.state.data))
        print("*** type `client curl http://www.foobar.com/`, `help`, or `exit` to stop the lab")
        from mininet.cli import CLI
        from mininet.log import setLogLevel
        setLogLevel("output")  # the CLI prints what host commands print at this level
        CLI(lab.net)
    print("*** lab stopped; nothing left behind")
    return 0


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def up_detached(kw: dict[str, Any], timeout: float) -> int:
    """Start a supervisor that holds the lab; return when it says ready (or why it failed)."""
    from weblab.lab import new_run_id
    run_id = new_run_id()
    paths.RUN_ROOT.mkdir(parents=True, exist_ok=True)
    log = paths.RUN_ROOT / f"{run_id}.supervisor.log"
    r, w = os.pipe()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "weblab.supervisor", "--run-id", run_id, "--ready-fd", str(w),
             "--spec", json.dumps(kw)],
            pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=paths.REPO)
    os.close(w)
    print(f"*** starting {kw['design']} (run {run_id}) ...", flush=True)
    message = read_ready(r, timeout)
    os.close(r)
    if message == "ready":
        log.unlink(missing_ok=True)
        from weblab.core.state import RunState
        print(describe(RunState.load(run_id).data))
        print("*** try: weblab exec client -- curl -s http://www.foobar.com/   stop: sudo weblab down")
        return 0
    if message is None:
        proc.terminate()
        raise WeblabError(f"the lab did not become ready within {timeout:.0f} s; it was stopped "
                          f"(supervisor log: {log})")
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    kept = paths.KEPT_LOGS / run_id
    kept.mkdir(parents=True, exist_ok=True)
    log = Path(shutil.move(str(log), kept / "supervisor.log"))
    raise WeblabError(f"{message.removeprefix('error: ')}\n(logs: {kept})")


def read_ready(fd: int, timeout: float) -> str | None:
    """The supervisor's one-line answer: 'ready', 'error: ...', or None on timeout."""
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            return buf.decode().strip() or "error: the supervisor exited without a word"
        buf += chunk
        if buf.endswith(b"\n") and buf.startswith(b"ready"):
            return "ready"
    return None


def describe(data: dict) -> str:
    """Hosts, addresses and services of a run, for people."""
    lines = [f"run {data['run_id']}: design {data.get('design')} ({data.get('status')}), "
             f"datapath {data.get('datapath')}"]
    services: dict[str, list[str]] = {}
    for s in data.get("services", []):
        services.setdefault(s["host"], []).append(s["kind"])
    from weblab.core import cores
    limits, placed = data.get("cpu") or {}, data.get("cores") or {}
    for name, h in data.get("hosts", {}).items():
        cpu = [f"cpu quota {limits[name]:g}"] if name in limits else []
        cpu += [f"on CPU {cores.for_host(placed, name)}"] if cores.for_host(placed, name) else []
        lines.append(f"  {name:10} {h.get('role', ''):8} {', '.join(h.get('ips', [])):15} "
                     f"{' '.join(services.get(name, []))}" + (f"  [{', '.join(cpu)}]" if cpu else ""))
    if data.get("timings", {}).get("up"):
        lines.append(f"  ready in {data['timings']['up']:.1f} s")
    return "\n".join(lines)


def running_state() -> dict:
    """The state of the lab that is running now, or an error saying how to start one."""
    from weblab.clean import crashed_runs, holder_alive
    from weblab.core.state import RunState, all_runs
    for run_id in all_runs():
        try:
            data = RunState.load(run_id).data
        except (FileNotFoundError, ValueError):
            continue
        if holder_alive(data):
            return data
    if crashed_runs():
        raise WeblabError("the last lab crashed; remove what it left with: sudo weblab clean")
    raise WeblabError("no lab is running; start one with: sudo weblab up one-server --detach")


def cmd_status(args) -> int:
    from weblab.clean import crashed_runs
    try:
        data = running_state()
    except WeblabError as e:
        print(str(e))
        return 0 if not crashed_runs() else 1
    print(describe(data))
    from weblab.core.proc import ProcRef
    from weblab import links
    for line in links.describe(data):
        print(f"  link {line}")
    for s in data.get("services", []):
        alive = "up" if s.get("pid") and ProcRef(s["kind"], s["pid"], s["start"]).alive() else "DOWN"
        print(f"  {s['kind']}@{s['host']}: {alive} (log {s.get('log')})")
    return 0


def exec_in_host(data: dict[str, Any], host: str, argv: list[str]) -> int:
    """Replace this process by argv inside a host of the running lab, on the host's CPUs if pinned."""
    from weblab.core import cores
    full = cores.wrap(["mnexec", "-a", str(data["hosts"][host]["pid"]), *argv],
                      cores.for_host(data.get("cores") or {}, host))
    os.execvp(full[0], full)
    return 127  # not reached


def cmd_exec(args) -> int:
    need_root("exec")
    if not args.command:
        raise WeblabError("nothing to run: weblab exec HOST -- COMMAND [ARGS...]")
    data = running_state()
    host = data["hosts"].get(args.host)
    if host is None:
        raise WeblabError(f"unknown host {args.host!r}; hosts of this lab: {', '.join(data['hosts'])}")
    cmd = args.command[1:] if args.command[0] == "--" else args.command
    return exec_in_host(data, args.host, cmd)


def cmd_down(args) -> int:
    need_root("down")
    from weblab.clean import crashed_runs
    from weblab.core.proc import ProcRef, wait_gone
    try:
        data = running_state()
    except WeblabError:
        data = None
    if data:
        holder = ProcRef(**data["holder"])
        print(f"*** stopping {data.get('design')} (run {data['run_id']}) ...", flush=True)
        holder.signal(signal.SIGTERM)
        if not wait_gone(holder, args.timeout):
            raise WeblabError(f"the lab's supervisor (pid {holder.pid}) did not stop within "
                              f"{args.timeout:.0f} s; force it with: sudo weblab clean --force")
        if paths.run_dir(data["run_id"]).exists():
            raise WeblabError(f"the lab stopped but left {paths.run_dir(data['run_id'])}; "
                              f"run: sudo weblab clean")
        print("*** stopped; nothing left behind")
        return 0
    if crashed_runs():
        return cmd_clean(args)
    print("no lab is running")
    return 0


def cmd_clean(args) -> int:
    need_root("clean")
    from weblab.clean import clean_run, crashed_runs
    targets = [args.run_id] if getattr(args, "run_id", None) else crashed_runs()
    if getattr(args, "force", False) and not targets:
        from weblab.core.state import all_runs
        targets = all_runs()
    if not targets:
        print("nothing to clean")
        return 0
    status = 0
    for run_id in targets:
        if getattr(args, "force", False):
            from weblab.core.state import RunState
            from weblab.core.proc import ProcRef
            try:
                h = RunState.load(run_id).data.get("holder")
                if h:
                    ProcRef(**h).stop(timeout=10)
            except (FileNotFoundError, ValueError):
                pass
        leftovers, kept = clean_run(run_id)
        print(f"cleaned run {run_id}" + (f"; its logs are kept in {kept}" if kept else ""))
        for item in leftovers:
            print(f"  could not remove: {item}")
            status = 1
    for stray in paths.RUN_ROOT.glob("*.supervisor.log") if paths.RUN_ROOT.exists() else ():
        if stray.name.split(".")[0] in targets:
            stray.unlink(missing_ok=True)
    return status


def cmd_capture(args) -> int:
    need_root("capture")
    from weblab import links
    data = running_state()
    host, intf = links.resolve(data, args.link)
    out = Path(args.write).resolve()
    argv = ["tcpdump", "-i", intf, "-n", "-U", "--immediate-mode", "-s", "0", "-w", str(out)]
    if args.count:
        argv += ["-c", str(args.count)]
    if args.filter:
        argv += args.filter.split()
    print(f"capturing {args.link} on {host}:{intf} into {out} (Ctrl-C to stop)", file=sys.stderr)
    argv = ["timeout", "--foreground", str(args.duration), *argv] if args.duration else argv
    return exec_in_host(data, host, argv)


def cmd_sniff(args) -> int:
    need_root("sniff")
    from weblab import links
    data = running_state()
    host, intf = links.resolve(data, args.link)
    argv = [sys.executable, "-m", "weblab.sniff", "--iface", intf]
    if args.grep:
        argv += ["--grep", args.grep]
    if args.count:
        argv += ["--count", str(args.count)]
    if args.duration:
        argv += ["--duration", str(args.duration)]
    print(f"sniffing {args.link} on {host}:{intf} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    return exec_in_host(data, host, argv)


def cmd_forward(args) -> int:
    need_root("forward")
    host, sep, port = args.target.rpartition(":")
    if not sep or not port.isdigit():
        raise WeblabError(f"{args.target!r} is not HOST:PORT (example: weblab forward monitor:9090)")
    data = running_state()
    if host not in data["hosts"]:
        raise WeblabError(f"unknown host {host!r}; hosts of this lab: {', '.join(data['hosts'])}")
    from weblab import forward
    addr = data["hosts"][host]["ips"][0]

    def announce(local: int) -> None:
        print(f"http://127.0.0.1:{local}/ -> {host} {addr}:{port} (only on this machine's loopback; "
              f"Ctrl-C to stop)", flush=True)
    try:
        forward.serve(data["hosts"][host]["pid"], (addr, int(port)), args.local, announce)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_firewall(args) -> int:
    need_root("firewall")
    from weblab import firewall
    data = running_state()
    if args.action == "show":
        print(firewall.format_show(firewall.control(data, {"op": "show"})))
    elif args.action in ("on", "off"):
        firewall.control(data, {"op": "enable" if args.action == "on" else "disable"})
        print(f"firewall {args.action}")
    elif args.action in ("allow", "deny"):
        reply = firewall.control(data, {"op": args.action, "rule": firewall.rule_from_words(args.words, args.id)})
        print(f"rule {reply['id']} added ({reply.get('flows', 0)} flows"
              f"{'' if reply.get('firewall') else '; the firewall is off: enforced once it is on'})")
    elif args.action == "remove":
        if len(args.words) != 1:
            raise WeblabError("weblab firewall remove RULE_ID (ids: weblab firewall show)")
        firewall.control(data, {"op": "remove", "id": args.words[0]})
        print(f"rule {args.words[0]} removed")
    return 0


def cmd_lb(args) -> int:
    need_root("lb")
    from hostapps.haproxy import admin_command, backend_stats
    data = running_state()
    lbs = [s for s in data.get("services", []) if s["kind"] == "haproxy"]
    lb = next((s for s in lbs if s["host"] == args.lb), None) if args.lb else (lbs[0] if lbs else None)
    if lb is None:
        raise WeblabError(f"no HAProxy {'on ' + args.lb if args.lb else 'in this lab'}; "
                          f"load balancers: {', '.join(s['host'] for s in lbs) or 'none'}")
    sock = Path(lb["dir"]) / "admin.sock"
    if args.action == "show":
        stats = backend_stats(sock)
        print(f"{'server':10} {'status':10} {'weight':>6} {'sessions':>8} {'total':>8} {'check':>12}")
        for name, r in stats.items():
            print(f"{name:10} {r.get('status', ''):10} {r.get('weight', ''):>6} {r.get('scur', ''):>8} "
                  f"{r.get('stot', ''):>8} {r.get('check_status', ''):>12}")
        return 0
    if not args.server:
        raise WeblabError(f"weblab lb {args.action} SERVER (servers: weblab lb show)")
    reply = admin_command(sock, f"set server servers/{args.server} state {args.action}").strip()
    if reply:
        raise WeblabError(f"HAProxy on {lb['host']} refused: {reply}")
    print(f"{args.server}: {args.action} on {lb['host']}")
    return 0


def lab_factory_holding(lock):
    """What experiments get labs from: real Labs, each started and always torn down, all under one
    held lab lock, so no other lab slips in between two cases or repeats of a run."""
    def factory(design: str, lab_params: dict[str, Any]):
        from weblab.lab import Lab
        known = {"params", "cpu", "cores", "firewall", "datapath"}
        unknown = set(lab_params) - known
        if unknown:
            raise WeblabError(f"experiment asked for unknown lab settings {sorted(unknown)}")
        return Lab(design, lock=lock, **lab_params)
    return factory


def cmd_run(args) -> int:
    from experiments import registry, runner
    if args.analyse_only:
        run_dir = Path(args.analyse_only)
        if not (run_dir / "raw").is_dir():
            raise WeblabError(f"{run_dir} is not a finished run: it has no raw/ folder (a run is a folder "
                              f"results/SLUG/RUN-ID, as `weblab run` prints it)")
        verdict = runner.analyse(run_dir)
        print(f"{args.analyse_only}: {verdict.verdict} (plots and verdict.json redrawn from raw/)")
        return 0
    if not args.slugs:
        raise WeblabError("which claims? weblab run SLUG [SLUG ...] (or all; the slugs: weblab list)")
    try:
        slugs = registry.expand(args.slugs)  # unknown slugs: an error naming the known ones, before any lab
    except KeyError as e:
        raise WeblabError(e.args[0]) from None
    params = {slug: parse_kv(args.param, "--param") for slug in slugs} if args.param else None
    try:
        runner.check(slugs, params)
    except ValueError as e:
        raise WeblabError(str(e)) from None
    need_root("run")
    from weblab.lock import LabLock
    held = LabLock()
    held.acquire(f"weblab run {' '.join(slugs)}", "experiments")  # names the running lab if busy
    try:
        results = runner.run(slugs, repeat=args.repeat, out=Path(args.out),
                             junit=Path(args.junit) if args.junit else None,
                             lab_factory=lab_factory_holding(held), params=params)
    finally:
        held.release()
    return runner.exit_code(results)


def cmd_report(args) -> int:
    from experiments import report
    written = report.build(Path(args.out))
    print(f"report: {', '.join(str(p) for p in written) if isinstance(written, (list, tuple)) else written}")
    return 0


# ---------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="weblab", description=__doc__.split(":")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    sub.add_parser("list", help="designs and experiments, one line each").set_defaults(fn=cmd_list)
    doc = sub.add_parser("doctor", help="check this machine: root, programs, kernel features")
    doc.add_argument("--design", help="check exactly what this design needs")
    doc.add_argument("-q", "--quiet", action="store_true", help="print only failures and warnings")
    doc.set_defaults(fn=cmd_doctor)

    up = sub.add_parser("up", help="start a design (interactive CLI, or --detach)")
    up.add_argument("design")
    up.add_argument("--detach", action="store_true", help="return once every service answers")
    up.add_argument("--param", action="append", metavar="KEY=VALUE", help="design parameter")
    up.add_argument("--cpu", action="append", metavar="HOST=FRACTION",
                    help="limit a host to a fraction of the machine's CPU")
    up.add_argument("--cores", action="append", metavar="HOST=CPUS",
                    help="run a host on these CPUs (e.g. db1=1); *=CPUS places the rest of the lab")
    up.add_argument("--firewall", choices=("on", "off"), help="override the design's firewall default")
    up.add_argument("--datapath", choices=("auto", "user", "kernel"), default="auto")
    up.add_argument("--timeout", type=float, default=120, help="bound on bring-up, seconds")
    up.set_defaults(fn=cmd_up)

    sub.add_parser("status", help="the running lab: hosts, addresses, services").set_defaults(fn=cmd_status)

    ex = sub.add_parser("exec", help="run a command in a host: weblab exec HOST -- CMD ...")
    ex.add_argument("host")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    ex.set_defaults(fn=cmd_exec)

    down = sub.add_parser("down", help="stop the running lab")
    down.add_argument("--timeout", type=float, default=60)
    down.set_defaults(fn=cmd_down)

    cl = sub.add_parser("clean", help="remove what a crashed run left (by its run id only)")
    cl.add_argument("run_id", nargs="?")
    cl.add_argument("--force", action="store_true", help="also stop a live but stuck supervisor")
    cl.set_defaults(fn=cmd_clean)

    cap = sub.add_parser("capture", help="pcap of a link for Wireshark: weblab capture LINK -w FILE")
    cap.add_argument("link", help="an alias from `weblab status` (lb-back, client-link), HOST:SWITCH or an interface")
    cap.add_argument("-w", "--write", required=True, metavar="FILE.pcap")
    cap.add_argument("--filter", help="a tcpdump filter, e.g. 'tcp port 80'")
    cap.add_argument("--count", type=int, help="stop after this many packets")
    cap.add_argument("--duration", type=float, help="stop after this many seconds")
    cap.set_defaults(fn=cmd_capture)

    sn = sub.add_parser("sniff", help="print HTTP requests and TLS records crossing a link, live")
    sn.add_argument("link")
    sn.add_argument("--grep", help="only packets whose payload holds this text (e.g. a password)")
    sn.add_argument("--count", type=int)
    sn.add_argument("--duration", type=float)
    sn.set_defaults(fn=cmd_sniff)

    fw = sub.add_parser("forward", help="reach HOST:PORT of the lab from this machine's 127.0.0.1")
    fw.add_argument("target", metavar="HOST:PORT")
    fw.add_argument("--local", type=int, default=0, help="local port (default: any free one)")
    fw.set_defaults(fn=cmd_forward)

    fwl = sub.add_parser("firewall", help="show|allow|deny|remove|on|off the lab's firewall rules, live")
    fwl.add_argument("action", choices=("show", "allow", "deny", "remove", "on", "off"))
    fwl.add_argument("words", nargs="*", metavar="SRC DST PROTO [PORT] | RULE_ID")
    fwl.add_argument("--id", help="name for a new rule (default: live-N)")
    fwl.set_defaults(fn=cmd_firewall)

    lbp = sub.add_parser("lb", help="the load balancer's backends: show, or drain|ready|maint SERVER")
    lbp.add_argument("action", choices=("show", "drain", "ready", "maint"))
    lbp.add_argument("server", nargs="?")
    lbp.add_argument("--lb", help="which load balancer host (default: the first)")
    lbp.set_defaults(fn=cmd_lb)

    run = sub.add_parser("run", help="run experiments: weblab run SLUG ... | all")
    run.add_argument("slugs", nargs="*", help="claims to run (slugs, or all); none with --analyse-only")
    run.add_argument("--repeat", type=int, default=1)
    run.add_argument("--out", default="results")
    run.add_argument("--junit")
    run.add_argument("--analyse-only", metavar="RUN_DIR", help="redo the analysis of a finished run")
    run.add_argument("--param", action="append", metavar="KEY=VALUE", help="experiment parameter")
    run.set_defaults(fn=cmd_run)

    rep = sub.add_parser("report", help="gather the newest verdicts into results/report.html")
    rep.add_argument("--out", default="results")
    rep.set_defaults(fn=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except WeblabError as e:
        print(f"weblab: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("weblab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
