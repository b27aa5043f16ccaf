"""The `weblab` command: one verb per intent. Each verb parses, calls one function of a lower layer,
and prints; the work is in weblab.* (the lab), experiments.* and hostapps.*."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
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


def positive(kind):
    """An argparse type: a number of `kind` above 0 (a clear usage error otherwise)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
        return value
    parse.__name__ = kind.__name__
    return parse


# ---------------------------------------------------------------------------------------- verbs
def cmd_list(args) -> int:
    from experiments import registry
    from topologies import DESIGNS
    print("designs:")
    for name, cls in DESIGNS.items():
        print(f"  {name:22} {cls.summary}")
        for pname, p in cls.params.items():
            choices = f" ({'|'.join(map(str, p.choices))})" if p.choices else ""
            print(f"  {'':22}   --param {pname}={p.default}{choices}  {p.help}")
    try:
        slugs = registry.all_slugs()
    except ImportError as e:  # a broken claim module must not look like "no experiments"
        raise WeblabError(f"the experiments could not be loaded: {type(e).__name__}: {e} "
                          f"(reinstall with: sudo make install)") from None
    print("experiments:")
    for slug in slugs:
        exp = registry.get(slug)
        print(f"  {slug:22} {exp.claim}: {exp.title}")
    from topologies.scenarios import SCENARIOS
    print("scenarios:  (sudo weblab up DESIGN --scenario NAME: the design with one fault to find)")
    for name, sc in SCENARIOS.items():
        print(f"  {name:22} {sc.symptom}  [{', '.join(sc.designs) if len(sc.designs) < 4 else 'every design'}]")
    from exercises import model
    print("exercises:  (weblab check NAME grades the running lab; docs/exercises.md)")
    for name in model.names():
        try:
            ex = model.load(model.HERE / f"{name}.yaml")
        except WeblabError as e:  # one broken file must not hide the others
            print(f"  {name:22} (cannot be used: {e})")
            continue
        print(f"  {ex.name:22} {ex.design}{' --scenario ' + ex.scenario if ex.scenario else ''}: {ex.title}")
    return 0


def cmd_doctor(args) -> int:
    from weblab import doctor
    return doctor.main((["--design", args.design] if args.design else []) + (["-q"] if args.quiet else []))


def lab_kwargs(args) -> dict[str, Any]:
    """Design, parameters and options of `up`, validated before anything starts."""
    from topologies import get
    try:
        cls = get(args.design)
        params = cls.resolve_params(parse_kv(args.param, "--param"))
    except ValueError as e:
        raise WeblabError(str(e)) from None
    try:
        cpu = {k: float(v) for k, v in parse_kv(args.cpu, "--cpu").items()}
    except (TypeError, ValueError):
        raise WeblabError("--cpu takes HOST=FRACTION with a number, e.g. --cpu server1=0.25") from None
    cpus = {k: str(v) for k, v in parse_kv(args.cores, "--cores").items()}
    fw = None if args.firewall is None else args.firewall == "on"
    return {"design": args.design, "params": params, "cpu": cpu, "cores": cpus, "firewall": fw,
            "datapath": args.datapath, "scenario": args.scenario}


def cmd_up(args) -> int:
    need_root("up")
    kw = lab_kwargs(args)
    from topologies import get
    from weblab import lock
    from weblab.lab import new_run_id, preflight
    preflight(get(kw["design"]), kw["params"], kw["cpu"], kw["cores"], kw["scenario"])
    if lock.is_held():
        raise WeblabError(lock.running_message(lock.read_holder()))
    if not args.detach:
        return up_interactive(kw)
    from weblab import supervisor
    run_id = new_run_id()
    print(f"*** starting {kw['design']}{scenario_words(kw)} (lab {run_id}) ...", flush=True)
    print(describe(supervisor.launch(kw, run_id, args.timeout)))
    print("*** try: weblab exec client -- curl -s http://www.foobar.com/   stop: sudo weblab down")
    return 0


def up_interactive(kw: dict[str, Any]) -> int:
    from weblab.lab import Lab
    lab = Lab(**kw)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    print(f"*** starting {kw['design']}{scenario_words(kw)} (lab {lab.run_id}) ...", flush=True)
    with lab:
        print(describe(lab.state))
        print("*** type `client curl http://www.foobar.com/`, `help`, or `exit` to stop the lab")
        from mininet.cli import CLI
        from mininet.log import setLogLevel
        setLogLevel("output")  # the CLI prints what host commands print at this level
        CLI(lab.net)
    print("*** lab stopped; nothing left behind")
    return 0


def scenario_words(kw: dict[str, Any]) -> str:
    if not kw.get("scenario"):
        return ""
    from topologies.scenarios import get
    return f" with scenario {kw['scenario']} (symptom: {get(kw['scenario']).symptom})"


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def describe(state) -> str:
    """Hosts, addresses and services of a run, for people."""
    from weblab.core import cores
    from weblab.datapath import summary
    why = state.data.get("datapath_reason", "?")
    lines = [f"lab {state.run_id}: design {state.design}"
             + (f", scenario {state.scenario}" if state.scenario else "")
             + f" ({state.status}), datapath {summary(state.datapath, why) if state.datapath else None}"]
    services: dict[str, list[str]] = {}
    for s in state.services:
        services.setdefault(s.host, []).append(s.kind)
    limits, placed = state.cpu, state.cores
    for name, h in state.hosts.items():
        cpu = [f"cpu quota {limits[name]:g}"] if name in limits else []
        cpu += [f"on CPU {cores.for_host(placed, name)}"] if cores.for_host(placed, name) else []
        lines.append(f"  {name:10} {h.role:8} {', '.join(h.ips):15} {' '.join(services.get(name, []))}"
                     + (f"  [{', '.join(cpu)}]" if cpu else ""))
    if state.timings.get("up"):
        lines.append(f"  ready in {state.timings['up']:.1f} s")
    return "\n".join(lines)


def cmd_status(args) -> int:
    from weblab import links, running
    from weblab.clean import crashed_runs
    try:
        state = running.current()
    except WeblabError as e:
        print(str(e))
        return 1 if crashed_runs() else 0
    print(describe(state))
    for line in links.describe(state):
        print(f"  link {line}")
    for s in state.services:
        edited = f" [config edited: {', '.join(s.edited)}]" if s.edited else ""
        spare = not s.alive() and state.hosts.get(s.host) is not None and state.hosts[s.host].role == "spare"
        shown = "up" if s.alive() else (f"stopped (a spare: weblab lb add {s.host})" if spare else "DOWN")
        print(f"  {s.kind}@{s.host}: {shown} (log {s.log}){edited}")
    from weblab import attack, firewall
    for line in firewall.status_lines(state):
        print(f"  {line}")
    for a in attack.running(state):
        print(f"  attack: {a['name']} running in {a['host']} (pid {a['pid']}, log {a['log']}); "
              "stop it with: sudo weblab attack stop")
    for p in running.dead_daemons(state):
        print(f"  {p.name}: DOWN (pid {p.pid} exited): the lab cannot forward; stop it with: sudo weblab down")
    return 0


def cmd_exec(args) -> int:
    need_root("exec")
    if not args.command:
        raise WeblabError("nothing to run: weblab exec HOST -- COMMAND [ARGS...]")
    from weblab import running
    cmd = args.command[1:] if args.command[0] == "--" else args.command
    running.exec_in_host(running.current(), args.host, cmd)
    return 127  # not reached: the process became the command


def cmd_down(args) -> int:
    need_root("down")
    from weblab import running
    from weblab.clean import crashed_runs
    try:
        state = running.current()
    except WeblabError:
        if crashed_runs():
            return cmd_clean(args)
        print("no lab is running")
        return 0
    from weblab import attack
    for name in attack.stop_all(state):  # an attack undoes itself (ARP caches, sysctls) while the lab is up
        print(f"*** stopped {name}", flush=True)
    # said once the holder has the request: from then on the teardown goes on even if this command dies
    running.stop(state, args.timeout,
                 signalled=lambda: print(f"*** stopping {state.design} (lab {state.run_id}) ...", flush=True))
    print("*** stopped; nothing left behind")
    return 0


def cmd_clean(args) -> int:
    need_root("clean")
    from weblab import clean
    done = clean.clean(getattr(args, "run_id", None), getattr(args, "force", False))
    if not done:
        print("nothing to clean")
    status = 0
    for run_id, leftovers, kept in done:
        print(f"cleaned lab {run_id}" + (f"; its logs are kept in {kept}" if kept else ""))
        for item in leftovers:
            print(f"  could not remove: {item}")
            status = 1
    return status


def cmd_capture(args) -> int:
    need_root("capture")
    from weblab import links, running
    from weblab.tcpdump import tcpdump_argv
    state = running.current()
    host, intf = links.resolve(state, args.link)
    out = Path(args.write).resolve()
    if not out.parent.is_dir():
        raise WeblabError(f"cannot write {out}: {out.parent} is not a folder")
    argv = tcpdump_argv(intf, out, args.filter, args.count)
    if args.duration:
        argv = ["timeout", "--foreground", str(args.duration), *argv]
    print(f"capturing {args.link} on {host}:{intf} into {out} (Ctrl-C to stop)", file=sys.stderr)
    running.exec_in_host(state, host, argv)
    return 127


def cmd_sniff(args) -> int:
    need_root("sniff")
    from weblab import links, running, sniff
    state = running.current()
    host, intf = links.resolve(state, args.link)
    print(f"sniffing {args.link} on {host}:{intf} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    running.exec_in_host(state, host, sniff.argv(intf, args.grep, args.count, args.duration))
    return 127


def cmd_throughput(args) -> int:
    from functools import partial

    from experiments import throughput
    try:
        throughput.check_bin(args.bin)
    except ValueError as e:
        raise WeblabError(f"--bin: {e}") from None
    if args.pcap and args.link:
        raise WeblabError("give a LINK to capture live, or --pcap FILE to analyse, not both")
    analyse = partial(throughput.analyse, bin_s=args.bin)
    if args.pcap:
        result = analyse(args.pcap, local=args.local)
    elif args.link:
        need_root("throughput")
        from weblab import running
        from weblab import throughput as live
        live.check_duration(args.duration)
        cap = live.measure(running.current(), args.link, args.duration, analyse, snaplen=args.snaplen, keep=args.write)
        print(cap.describe())
        result = cap.result
    else:
        raise WeblabError("what to measure? weblab throughput LINK --duration S (live), or --pcap FILE")
    if args.out:
        try:
            result.write_csv(Path(args.out))
        except OSError as e:
            raise WeblabError(f"cannot write {args.out}: {e.strerror}") from None
    print(result.text())
    if args.out:
        print(f"per-bin figures: {args.out}")
    return 0


def cmd_forward(args) -> int:
    need_root("forward")
    from weblab import forward, running
    host, sep, port = args.target.rpartition(":")
    if not sep or not port.isdigit():
        raise WeblabError(f"{args.target!r} is not HOST:PORT (example: weblab forward monitor:9090)")
    state = running.current()
    try:
        info = state.host(host)
    except KeyError as e:
        raise WeblabError(e.args[0]) from None

    def announce(local: int) -> None:
        print(f"http://127.0.0.1:{local}/ -> {host} {info.ips[0]}:{port} (only on this machine's loopback; "
              f"Ctrl-C to stop)", flush=True)
    try:
        forward.serve(info.pid, (info.ips[0], int(port)), args.local, announce)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_firewall(args) -> int:
    need_root("firewall")
    from weblab import firewall, running
    state = running.current()
    if args.action == "show":
        print(firewall.format_show(firewall.control(state, {"op": "show"})))
    elif args.action in ("on", "off"):
        firewall.control(state, {"op": "enable" if args.action == "on" else "disable"})
        print(f"firewall {args.action}")
    elif args.action in ("allow", "deny"):
        reply = firewall.control(state, {"op": args.action, "rule": firewall.rule_from_words(args.words, args.id)})
        print(f"rule {reply['id']} added ({reply.get('flows', 0)} flows"
              f"{'' if reply.get('firewall') else '; the firewall is off: enforced once it is on'})")
    elif args.action == "remove":
        if len(args.words) != 1:
            raise WeblabError("weblab firewall remove RULE_ID (ids: weblab firewall show)")
        firewall.control(state, {"op": "remove", "id": args.words[0]})
        print(f"rule {args.words[0]} removed")
    elif args.action == "arp-inspection":
        if args.words not in (["on"], ["off"]):
            raise WeblabError("weblab firewall arp-inspection on|off")
        firewall.control(state, {"op": "arp-inspection", "on": args.words[0] == "on"})
        print(f"ARP inspection {args.words[0]}")
    return 0


def cmd_attack(args) -> int:
    need_root("attack")
    from weblab import attack, running
    state = running.current()
    if args.action == "stop":
        stopped = attack.stop_all(state)
        print("\n".join(f"stopped {name}; the victims' ARP caches are restored" for name in stopped)
              or "no attack is running")
        return 0
    if not args.source or not args.between:
        raise WeblabError("weblab attack mitm --from HOST --between A,B (e.g. --from server2 --between lb1,server1)")
    duration = args.duration or attack.DEFAULT_DURATION
    if not 0 < duration <= 600:
        raise WeblabError("--duration: 1 to 600 seconds")
    p = attack.plan(state, args.source, [h.strip() for h in args.between.split(",")])
    attack.check_networks(p)
    attack.announce(p, duration)
    pid, log = attack.spawn(state, p, attack.argv(p, sys.executable, duration, args.grep, args.proxy))
    attack.follow(state, pid, log, duration + attack.STOP_TIMEOUT + 5)
    return 0


def cmd_lb(args) -> int:
    need_root("lb")
    from hostapps.haproxy import backend_stats, set_server_state
    from weblab import running
    lb = running.load_balancer(running.current(), args.lb)
    sock = running.admin_socket(lb)
    if args.action == "show":
        print(f"{'server':10} {'status':10} {'weight':>6} {'sessions':>8} {'total':>8} {'check':>12}")
        for name, r in backend_stats(sock).items():
            print(f"{name:10} {r.get('status', ''):10} {r.get('weight', ''):>6} {r.get('scur', ''):>8} "
                  f"{r.get('stot', ''):>8} {r.get('check_status', ''):>12}")
        return 0
    if not args.server:
        raise WeblabError(f"weblab lb {args.action} SERVER (servers: weblab lb show)")
    if args.action in ("add", "remove"):  # every load balancer of the design, through the lab itself
        from weblab import control
        reply = control.request(running.current(), {"op": f"lb-{args.action}", "server": args.server}, timeout=90)
        steps = ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in reply["steps"].items())
        print(f"{args.server}: {'added to' if args.action == 'add' else 'removed from'} the pool of "
              f"{', '.join(reply['load_balancers'])} ({steps}; firewall rules: {', '.join(reply['rules']) or 'none'})")
        return 0
    set_server_state(sock, args.server, args.action)
    print(f"{args.server}: {args.action} on {lb.host}")
    return 0


def cmd_service(args) -> int:
    need_root("service")
    from weblab import control, running
    reply = control.request(running.current(), {"op": "service", "host": args.host, "kind": args.kind,
                                                "action": args.action})
    print(f"{args.kind}@{args.host}: {args.action} done" + (f" (pid {reply['pid']})" if reply.get("pid") else ""))
    return 0


def cmd_link(args) -> int:
    need_root("link")
    from weblab import control, running
    control.request(running.current(), {"op": "link", "a": args.a, "b": args.b, "state": args.state})
    print(f"link {args.a} <-> {args.b}: {args.state}")
    return 0


def cmd_ui(args) -> int:
    need_root("ui")
    from weblab import running
    from weblab.ui import server

    def announce(url: str) -> None:
        print(f"the live view of the lab, on this machine only (Ctrl-C to stop):\n    {url}", flush=True)
    server.serve(running.current(), args.port, args.read_only, announce)
    return 0


def cmd_graph(args) -> int:
    from weblab.ui import graph
    out = graph.draw(args.design, parse_kv(args.param, "--param"), Path(args.output))
    print(f"drew {args.design} into {out}")
    return 0


def cmd_config(args) -> int:
    need_root("config")
    from weblab import control, running
    reply = control.request(running.current(), {"op": "config", "host": args.host, "kind": args.kind})
    if not reply["services"]:
        print(f"{args.host} runs no service")
    for svc in reply["services"]:
        if not svc["files"]:
            print(f"{svc['service']}: no config file (configured by the lab's options only)")
        for f in svc["files"]:
            marks = (["edited"] if f["edited"] else []) + ([f"draft kept: {f['draft']}"] if f["draft"] else [])
            print(f"{svc['service']}: {f['path']}" + (f"  ({'; '.join(marks)})" if marks else ""))
    return 0


def cmd_edit(args) -> int:
    need_root("edit")
    from weblab import control, editor, running
    state = running.current()
    where = {"host": args.host, "kind": args.kind, "file": args.file}
    editor.find()  # no editor: say so before anything is frozen or copied
    begun = control.request(state, {"op": "edit-begin", **where})
    draft, live = Path(begun["draft"]), Path(begun["path"])
    if begun["kept"]:
        print(f"editing the draft kept from your last try ({draft}); the running file is {live}", flush=True)
    status = editor.run(draft)
    if status != 0 or draft.read_bytes() == live.read_bytes():
        control.request(state, {"op": "edit-abort", **where, "keep": status != 0})
        print(f"the editor exited {status}: nothing installed; the draft is kept in {draft}" if status
              else f"no change to {live.name}: nothing to install")
        return 1 if status else 0
    done = control.request(state, {"op": "install-config", **where}, timeout=120)
    print(f"{args.kind}@{args.host}: {live.name} checked ({'; '.join(done['checked']) or 'no dry run'}) "
          f"and installed")
    print(f"  reload: {done['effect']}")
    return 0


def cmd_reload(args) -> int:
    need_root("reload")
    from weblab import control, running
    done = control.request(running.current(), {"op": "reload-config", "host": args.host, "kind": args.kind},
                           timeout=120)
    print(f"{args.kind}@{args.host}: checked ({'; '.join(done['checked']) or 'no dry run'}) and reloaded"
          + (f"; edited: {', '.join(done['edited'])}" if done["edited"] else ""))
    print(f"  reload: {done['effect']}")
    return 0


def cmd_sql(args) -> int:
    need_root("sql")
    from weblab import running
    words = args.statement[1:] if args.statement[:1] == ["--"] else args.statement
    full = running.sql_argv(running.current(), args.host, " ".join(words) or None)
    os.execvp(full[0], full)
    return 127


def cmd_mail(args) -> int:
    from weblab import mail
    if args.action == "send":
        mail.check_address(args.to, "--to")  # before anything is asked of a lab
        mail.check_address(args.sender, "--from")
    need_root("mail")
    from weblab import running
    live = running.Attached(running.current())
    if args.action == "send":
        sent = mail.send(live, args.to, args.subject, args.body, args.sender, args.server)
        print(sent.transcript.rstrip())
        print(f"*** Message-ID {sent.message_id}: " + ("accepted" if sent.returncode == 0 else
                                                        f"not delivered (swaks exit {sent.returncode})"))
        return 0 if sent.returncode == 0 else 1
    print(mail.format_messages(*mail.mailbox(live, args.user)))
    return 0


def cmd_check(args) -> int:
    from exercises import checker, model
    try:
        ex = model.load(model.find(args.exercise))
    except model.ExerciseError as e:
        print(f"weblab: malformed exercise: {e}", file=sys.stderr)
        return 3
    need_root("check")
    from weblab import running
    live = running.Attached(running.current())
    why = checker.refusal(ex, live)
    if why:
        raise WeblabError(why)
    print(f"exercise {ex.name}: {ex.title} ({ex.design}{', scenario ' + ex.scenario if ex.scenario else ''})",
          flush=True)
    results = checker.run(ex, live, say=lambda line: print(line, flush=True))
    print(checker.summary(results))
    if args.junit:
        checker.write_junit(ex, results, Path(args.junit))
    if args.csv:
        checker.write_csv(ex, results, Path(args.csv))
    return checker.exit_code(results)


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
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise WeblabError(f"--out {out} is not a folder")
    need_root("run")
    from weblab.lab import factory_holding
    from weblab.lock import LabLock
    held = LabLock()
    held.acquire(f"weblab run {' '.join(slugs)}", "experiments")  # names the running lab if busy
    try:
        results = runner.run(slugs, repeat=args.repeat, out=out,
                             junit=Path(args.junit) if args.junit else None,
                             lab_factory=factory_holding(held), params=params,
                             progress_file=paths.PROGRESS_FILE)  # the live view shows it (weblab ui)
    finally:
        held.release()
    return runner.exit_code(results)


def cmd_report(args) -> int:
    from experiments import report
    out = Path(args.out)
    if not out.is_dir():
        raise WeblabError(f"no results folder at {out}: run claims first (sudo weblab run SLUG), or give "
                          f"--out the folder `weblab run --out` wrote to")
    written = report.build(out)
    print(f"report: {', '.join(str(p) for p in written)}")
    return 0


def cmd_compare(args) -> int:
    from experiments import reproduce
    try:
        rows = reproduce.compare(Path(args.target), Path(args.reference))
    except reproduce.ReproduceError as e:
        raise WeblabError(str(e)) from None
    print(reproduce.table(rows))
    for r in rows:
        for what in r.disagreements():
            print(f"  {r.slug}: {what}")
    if args.html:
        Path(args.html).write_text(reproduce.html_page(rows, f"weblab compare {args.target}"))
        print(f"html: {args.html}")
    return 0 if all(r.agrees for r in rows) else 1


def cmd_bundle(args) -> int:
    from experiments import reproduce
    try:
        out = reproduce.bundle(Path(args.run_dir), Path(args.output))
    except reproduce.ReproduceError as e:
        raise WeblabError(str(e)) from None
    print(f"bundle: {out} (unpack with tar xzf; re-judge with: weblab run --analyse-only FOLDER)")
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
    up.add_argument("--timeout", type=positive(float), default=120, help="bound on bring-up, seconds")
    up.add_argument("--scenario", help="start with one fault to find and fix (scenarios: weblab list)")
    up.set_defaults(fn=cmd_up)

    sub.add_parser("status", help="the running lab: hosts, addresses, services").set_defaults(fn=cmd_status)

    ex = sub.add_parser("exec", help="run a command in a host: weblab exec HOST -- CMD ...")
    ex.add_argument("host")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    ex.set_defaults(fn=cmd_exec)

    down = sub.add_parser("down", help="stop the running lab")
    down.add_argument("--timeout", type=positive(float), default=60)
    down.set_defaults(fn=cmd_down)

    cl = sub.add_parser("clean", help="remove what a crashed lab left (by its lab id only)")
    cl.add_argument("run_id", nargs="?", metavar="LAB_ID")
    cl.add_argument("--force", action="store_true", help="also stop a live but stuck supervisor")
    cl.set_defaults(fn=cmd_clean)

    sv = sub.add_parser("service", help="start|stop|restart|reload|kill a service of the running lab")
    sv.add_argument("host")
    sv.add_argument("kind", help="the service kind, as `weblab status` lists it (nginx, haproxy, ...)")
    sv.add_argument("action", choices=("start", "stop", "restart", "reload", "kill"))
    sv.set_defaults(fn=cmd_service)

    cf = sub.add_parser("config", help="the paths of the config files of a host's services")
    cf.add_argument("host")
    cf.add_argument("kind", nargs="?", help="one service (nginx, haproxy, dns, mariadb, ...)")
    cf.set_defaults(fn=cmd_config)

    ed = sub.add_parser("edit", help="edit a service's config, check it with the daemon, reload it")
    ed.add_argument("host")
    ed.add_argument("kind", help="the service kind, as `weblab status` lists it")
    ed.add_argument("file", nargs="?", help="which of its files (default: its main one; weblab config HOST)")
    ed.set_defaults(fn=cmd_edit)

    rl = sub.add_parser("reload", help="check a service's config as it is and reload the daemon")
    rl.add_argument("host")
    rl.add_argument("kind")
    rl.set_defaults(fn=cmd_reload)

    sq = sub.add_parser("sql", help="MariaDB's client as root on a host's database: weblab sql HOST [SQL]")
    sq.add_argument("host")
    sq.add_argument("statement", nargs=argparse.REMAINDER, help="SQL to run (none: an interactive prompt)")
    sq.set_defaults(fn=cmd_sql)

    ml = sub.add_parser("mail", help="send mail from the client (swaks, MX lookup) or show a mailbox: "
                        "weblab mail send --to admin@foobar.com --subject S | weblab mail show admin")
    mls = ml.add_subparsers(dest="action", required=True)
    mlsend = mls.add_parser("send", help="swaks on the client host; it resolves the MX itself")
    mlsend.add_argument("--to", required=True, help="recipient, e.g. admin@foobar.com")
    mlsend.add_argument("--subject", required=True)
    mlsend.add_argument("--body", default="")
    mlsend.add_argument("--from", dest="sender", default="student@client.example")
    mlsend.add_argument("--server", default=None, help="deliver to this host instead of the MX (e.g. to test relaying)")
    mlshow = mls.add_parser("show", help="the messages in a mailbox of the lab's mail host")
    mlshow.add_argument("user", help="mailbox, e.g. admin")
    ml.set_defaults(fn=cmd_mail)

    ck = sub.add_parser("check", help="grade the running lab against an exercise: weblab check NAME|FILE")
    ck.add_argument("exercise")
    ck.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML")
    ck.add_argument("--csv", metavar="FILE", help="also write the results as CSV")
    ck.set_defaults(fn=cmd_check)

    ln = sub.add_parser("link", help="take the link between two nodes down or up: weblab link A B down")
    ln.add_argument("a")
    ln.add_argument("b")
    ln.add_argument("state", choices=("up", "down"))
    ln.set_defaults(fn=cmd_link)

    cap = sub.add_parser("capture", help="pcap of a link for Wireshark: weblab capture LINK -w FILE")
    cap.add_argument("link", help="an alias from `weblab status` (lb-back, client-link), HOST:SWITCH or an interface")
    cap.add_argument("-w", "--write", required=True, metavar="FILE.pcap")
    cap.add_argument("--filter", help="a tcpdump filter, e.g. 'tcp port 80'")
    cap.add_argument("--count", type=positive(int), help="stop after this many packets")
    cap.add_argument("--duration", type=positive(float), help="stop after this many seconds")
    cap.set_defaults(fn=cmd_capture)

    sn = sub.add_parser("sniff", help="print HTTP requests and TLS records crossing a link, live")
    sn.add_argument("link")
    sn.add_argument("--grep", help="only packets whose payload holds this text (e.g. a password)")
    sn.add_argument("--count", type=positive(int))
    sn.add_argument("--duration", type=positive(float))
    sn.set_defaults(fn=cmd_sniff)

    tp = sub.add_parser("throughput", help="bits/s, packets/s and goodput of a link (live) or of any pcap")
    tp.add_argument("link", nargs="?", help="capture this link of the running lab (an alias, HOST:SWITCH or an interface)")
    tp.add_argument("--pcap", metavar="FILE", help="analyse this capture instead (no lab needed)")
    tp.add_argument("--duration", type=float, default=5.0, help="seconds to capture live (default 5)")
    tp.add_argument("--bin", type=float, default=0.1, help="bin width in seconds, dividing 1 s (default 0.1)")
    tp.add_argument("-o", "--out", metavar="CSV", help="write per-bin figures (all, per direction, per flow)")
    tp.add_argument("-w", "--write", metavar="FILE.pcap", help="keep the live capture in this file")
    tp.add_argument("--snaplen", type=int, default=128, help="bytes kept per frame live (0: whole frames)")
    tp.add_argument("--local", help="with --pcap: the capturing host's MAC or IP ('out' = what it sent; "
                                    "default: the address in the most frames)")
    tp.set_defaults(fn=cmd_throughput)

    fw = sub.add_parser("forward", help="reach HOST:PORT of the lab from this machine's 127.0.0.1")
    fw.add_argument("target", metavar="HOST:PORT")
    fw.add_argument("--local", type=int, default=0, help="local port (default: any free one)")
    fw.set_defaults(fn=cmd_forward)

    fwl = sub.add_parser("firewall", help="show|allow|deny|remove|on|off the lab's firewall rules, "
                                          "arp-inspection on|off, live")
    fwl.add_argument("action", choices=("show", "allow", "deny", "remove", "on", "off", "arp-inspection"))
    fwl.add_argument("words", nargs="*", metavar="SRC DST PROTO [PORT] | RULE_ID | on|off")
    fwl.add_argument("--id", help="name for a new rule (default: live-N)")
    fwl.set_defaults(fn=cmd_firewall)

    att = sub.add_parser("attack", help="mitm --from HOST --between A,B: an ARP-spoofing man in the middle, "
                                        "live; stop")
    att.add_argument("action", choices=("mitm", "stop"))
    att.add_argument("--from", dest="source", metavar="HOST", help="the attacker (server2, or attacker with "
                     "--param attacker=front|back)")
    att.add_argument("--between", metavar="A,B", help="the two victims, e.g. lb1,server1")
    att.add_argument("--grep", help="also report this text wherever it crosses (e.g. a password)")
    att.add_argument("--proxy", choices=("rewrite", "strip", "impersonate"),
                     help="a transparent proxy too: tamper with pages, strip HTTPS, or impersonate the site")
    att.add_argument("--duration", type=float, help="seconds (default 300, at most 600)")
    att.set_defaults(fn=cmd_attack)

    lbp = sub.add_parser("lb", help="the load balancer's backends: show, drain|ready|maint SERVER, or "
                                    "add|remove SERVER (a spare, on every load balancer)")
    lbp.add_argument("action", choices=("show", "drain", "ready", "maint", "add", "remove"))
    lbp.add_argument("server", nargs="?")
    lbp.add_argument("--lb", help="which load balancer host (default: the first)")
    lbp.set_defaults(fn=cmd_lb)

    ui = sub.add_parser("ui", help="a live web view of the running lab, on 127.0.0.1 with a per-run token")
    ui.add_argument("--port", type=int, default=8800, help="port on 127.0.0.1 (0: any free one)")
    ui.add_argument("--read-only", action="store_true", help="show the lab, offer no action")
    ui.set_defaults(fn=cmd_ui)

    gr = sub.add_parser("graph", help="draw a design without starting it: weblab graph DESIGN -o FILE.svg|png")
    gr.add_argument("design")
    gr.add_argument("--param", action="append", metavar="KEY=VALUE", help="design parameter")
    gr.add_argument("-o", "--output", required=True, metavar="FILE.svg|png")
    gr.set_defaults(fn=cmd_graph)

    run = sub.add_parser("run", help="run experiments: weblab run SLUG ... | all")
    run.add_argument("slugs", nargs="*", help="claims to run (slugs, or all); none with --analyse-only")
    run.add_argument("--repeat", type=positive(int), default=1)
    run.add_argument("--out", default="results")
    run.add_argument("--junit")
    run.add_argument("--analyse-only", metavar="RUN_DIR", help="redo the analysis of a finished run")
    run.add_argument("--param", action="append", metavar="KEY=VALUE", help="experiment parameter")
    run.set_defaults(fn=cmd_run)

    cmp = sub.add_parser("compare", help="a run (folder, results folder or bundle) against the reference results")
    cmp.add_argument("target", metavar="RUN_DIR|RESULTS|BUNDLE")
    cmp.add_argument("--reference", default=str(paths.REPO / "results" / "reference"),
                     help="the reference results (default: the repository's results/reference)")
    cmp.add_argument("--html", metavar="FILE.html", help="also write the comparison as a page")
    cmp.set_defaults(fn=cmd_compare)

    bnd = sub.add_parser("bundle", help="pack a run (raw data, metadata, plots, verdict) to share it")
    bnd.add_argument("run_dir", metavar="RUN_DIR")
    bnd.add_argument("-o", "--output", required=True, metavar="FILE.tar.gz")
    bnd.set_defaults(fn=cmd_bundle)

    rep = sub.add_parser("report", help="gather the newest verdicts into results/report.html")
    rep.add_argument("--out", default="results")
    rep.set_defaults(fn=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.fn(args)
        sys.stdout.flush()  # here, not at exit: a reader that left early is handled below
        return code
    except WeblabError as e:
        print(f"weblab: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("weblab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `weblab list | head`: the reader left; not an error of weblab's
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # a bug: one line for the user, the traceback in a file for the report
        where = _save_traceback()
        print(f"weblab: internal error: {type(e).__name__}: {e} (a bug in weblab; details in {where})",
              file=sys.stderr)
        return 70


def _save_traceback() -> str:
    """Write the current exception's traceback where kept logs go (else a temporary file); its path."""
    text = traceback.format_exc()
    try:
        paths.KEPT_LOGS.mkdir(parents=True, exist_ok=True)
        path = paths.KEPT_LOGS / f"internal-error-{os.getpid()}.txt"
        path.write_text(text)
        return str(path)
    except OSError:
        import tempfile
        fd, name = tempfile.mkstemp(prefix="weblab-internal-error-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return name


if __name__ == "__main__":
    sys.exit(main())
