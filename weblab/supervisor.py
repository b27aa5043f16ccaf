"""The detached holder of a lab: builds it, says 'ready' on a pipe, holds it until SIGTERM.

`launch()` is the other side: what `weblab up --detach` calls to start a supervisor and wait
(bounded) for its one-line answer.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import traceback
from typing import Any

from weblab.core import paths
from weblab.core.errors import WeblabError
from weblab.core.state import RunState


def _exit(signum, frame):
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m weblab.supervisor")
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--ready-fd", type=int, required=True)
    ap.add_argument("--spec", required=True, help="JSON of the Lab's keyword arguments")
    args = ap.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _exit)
    ready = os.fdopen(args.ready_fd, "w")

    from weblab.lab import Lab
    try:
        lab = Lab(run_id=args.run_id, **json.loads(args.spec))
        lab.start()
    except WeblabError as e:
        ready.write(f"error: {e}\n")
        ready.close()
        return 1
    except BaseException as e:  # the parent must hear why, whatever it was
        traceback.print_exc()
        ready.write(f"error: {type(e).__name__}: {e}\n")
        ready.close()
        return 1
    ready.write("ready\n")
    ready.close()
    try:
        while True:
            signal.pause()
    finally:
        lab.stop()
    return 0


def launch(spec: dict[str, Any], run_id: str, timeout: float) -> RunState:
    """Start a supervisor holding a lab of spec (Lab's keyword arguments); return its state once it
    says ready. On an error or no answer within timeout: nothing of the run stays, and the error says
    where its logs are."""
    paths.RUN_ROOT.mkdir(parents=True, exist_ok=True)
    log = paths.RUN_ROOT / f"{run_id}.supervisor.log"
    r, w = os.pipe()
    try:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "weblab.supervisor", "--run-id", run_id, "--ready-fd", str(w),
                 "--spec", json.dumps(spec)],
                pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=paths.REPO)
    finally:
        os.close(w)
    try:
        message = read_ready(r, timeout)
    finally:
        os.close(r)
    if message == "ready":
        log.unlink(missing_ok=True)
        return RunState.load(run_id)
    if message is None:  # no answer in time: the supervisor tears down what it started on SIGTERM
        proc.terminate()
        _wait(proc, 60)
        why = f"the lab did not become ready within {timeout:.0f} s; it was stopped"
    else:
        _wait(proc, 60)
        why = message.removeprefix("error: ")
    kept = paths.KEPT_LOGS / run_id
    kept.mkdir(parents=True, exist_ok=True)
    shutil.move(str(log), kept / "supervisor.log")
    raise WeblabError(f"{why}\n(logs: {kept})")


def _wait(proc: subprocess.Popen, timeout: float) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


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


if __name__ == "__main__":
    sys.exit(main())
