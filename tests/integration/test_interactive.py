"""`weblab up DESIGN` without --detach: the lab's CLI, then a full teardown when it exits."""
from __future__ import annotations

import subprocess

from tests.integration.conftest import CLI
from weblab.core import paths


def test_interactive_cli_runs_host_commands_and_tears_down_on_exit():
    commands = "client curl -s http://www.foobar.com/static/hello.txt\nserver1 cat /etc/resolv.conf\nexit\n"
    res = subprocess.run([*CLI, "up", "one-server"], input=commands, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    shown = res.stdout + res.stderr  # Mininet's CLI prints host output through its logger (stderr)
    assert "static from nginx" in shown
    assert "nameserver 10.0.0.2" in shown
    assert "lab stopped; nothing left behind" in res.stdout
    assert not any(paths.RUN_ROOT.iterdir()) if paths.RUN_ROOT.exists() else True
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert "-eth" not in links
