"""Launcher: python -m controllers.run --listen ADDR --port PORT --policy F --log F [--control S].

os-ken 4.x has no osken-manager: AppManager is imported before CONF is parsed, CONF gets
the OpenFlow listen address, then the apps are loaded and run. Everything is validated
before anything listens; errors are one line on stderr and a non-zero exit. Nothing else is
printed: readiness is the OpenFlow TCP port accepting connections.
"""
from __future__ import annotations

import argparse
import importlib
import ipaddress
import logging
import os
import signal
import socket
import sys
import time
from typing import Optional

from os_ken.base.app_manager import AppManager  # must be imported before CONF() is parsed

APP = "controllers.switch"
# Echo requests are off by default in os-ken 4.x, and with its native (thread) hub a switch
# that goes away is only noticed when something is next sent to it: probe every 2 s, and drop
# a switch that leaves 3 probes unanswered.
ECHO = {"echo_request_interval": 2.0, "maximum_unreplied_echo_requests": 3}
POLL_INTERVAL = 0.2
LOG = logging.getLogger("controllers.run")


class LaunchError(Exception):
    """A bad argument or an unusable resource, reported before listening."""


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """The launcher's command line."""
    parser = argparse.ArgumentParser(prog="python -m controllers.run", description=__doc__)
    parser.add_argument("--listen", required=True, help="IP address to bind (only this one)")
    parser.add_argument("--port", required=True, type=int, help="OpenFlow TCP port")
    parser.add_argument("--policy", required=True, help="policy JSON file")
    parser.add_argument("--log", required=True, help="log file (appended)")
    parser.add_argument("--control", help="unix socket for live control (JSON lines)")
    return parser.parse_args(argv)


def setup_logging(path: str) -> None:
    """Log everything (os-ken's too) with timestamps to one file."""
    try:
        handler = logging.FileHandler(path)
    except OSError as err:
        raise LaunchError(f"--log {path}: {err.strerror}") from None
    handler.setFormatter(logging.Formatter(
        "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def check_listen(host: str, port: int) -> None:
    """Fail now, not in a background thread, if the OpenFlow address cannot be bound."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        raise LaunchError(f"--listen {host!r}: not an IP address") from None
    if not 0 < port < 65536:
        raise LaunchError(f"--port {port}: not a TCP port")
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as os-ken binds
        try:
            probe.bind((host, port))
        except OSError as err:
            raise LaunchError(f"cannot listen on {host}:{port}: {err.strerror}") from None


def bind_control(path: str) -> socket.socket:
    """The control socket, bound now so a bad path fails before the switch port opens."""
    from controllers import control
    try:
        return control.bind(path)
    except OSError as err:
        raise LaunchError(f"--control {path}: {err.strerror or err}") from None


def run(args: argparse.Namespace, control_sock: Optional[socket.socket]) -> int:
    """Configure os-ken, start the app and the control socket; return if a service dies."""
    from os_ken import cfg
    from os_ken.lib import hub

    from controllers import control
    importlib.import_module("controllers.switch")  # registers --weblab-policy before CONF is parsed

    cfg.CONF(args=["--ofp-listen-host", args.listen, "--ofp-tcp-listen-port", str(args.port),
                   "--weblab-policy", args.policy],
             project="os_ken", default_config_files=[])
    for name, value in ECHO.items():
        cfg.CONF.set_override(name, value)
    manager = AppManager.get_instance()  # what AppManager.run_apps does, keeping the app
    manager.load_apps([APP])
    services = manager.instantiate_apps(**manager.create_contexts())
    app = manager.applications["WeblabSwitch"]
    if control_sock is not None:
        from controllers.ops import LiveControl
        services.append(hub.spawn(control.serve, control_sock, LiveControl(app).handle))
    LOG.info("listening for OpenFlow on %s:%s, control socket %s", args.listen, args.port,
             args.control)
    # Poll rather than join: a blocked join would keep signal handlers from ever running.
    while all(thread.is_alive() for thread in services):
        time.sleep(POLL_INTERVAL)
    LOG.error("an os-ken service thread ended (see above): stopping")
    return 1


def main(argv: Optional[list[str]] = None) -> int:
    """Validate, then run the controller; the exit status says whether it could start."""
    args = parse_args(argv)
    try:
        setup_logging(args.log)
        from controllers.policy import PolicyError, load_policy
        try:
            load_policy(args.policy)
        except PolicyError as err:
            raise LaunchError(f"policy {args.policy}: {err}") from None
        check_listen(args.listen, args.port)
        control_sock = bind_control(args.control) if args.control else None
    except LaunchError as err:
        LOG.error("%s", err)
        print(f"controllers.run: {err}", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda num, _frame: _exit(
            0, f"stopping on {signal.Signals(num).name}", args.control))
    _exit(run(args, control_sock), "stopped", args.control)
    return 1  # not reached


def _exit(code: int, why: str, control_path: Optional[str]) -> None:
    """End the process now: os-ken's (non-daemon) threads cannot be stopped or joined."""
    LOG.info("%s", why)
    if control_path and os.path.exists(control_path):
        os.unlink(control_path)
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
