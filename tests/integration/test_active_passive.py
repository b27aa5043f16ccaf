"""Active-passive: the backup server serves nothing until the active one fails."""
from __future__ import annotations

import signal
import time
from pathlib import Path

from hostapps.haproxy import backend_stats
from tests.integration.conftest import served_by, service_info
from weblab.core.proc import ProcRef

DESIGN = "distributed"
UP_ARGS = ["--param", "mode=active-passive", "--param", "check_inter=200", "--param", "check_fall=2"]


def test_backup_idle_until_active_fails(detached_lab):
    assert set(served_by(n=8)) == {"server1"}
    sock = Path(service_info(detached_lab, "lb1", "haproxy")["dir"]) / "admin.sock"
    before = int(backend_stats(sock)["server2"]["stot"])
    assert before == 0
    nginx = service_info(detached_lab, "server1", "nginx")
    ProcRef("nginx", nginx["pid"], nginx["start"]).signal(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while not backend_stats(sock)["server1"]["status"].startswith("DOWN") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(served_by(n=6)) == {"server2"}
