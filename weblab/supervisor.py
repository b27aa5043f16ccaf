"""The detached holder of a lab: builds it, says 'ready' on a pipe, holds it until SIGTERM."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback

from weblab.core.errors import WeblabError


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


if __name__ == "__main__":
    sys.exit(main())
