"""Progress lines on stderr for long runs: elapsed time, the current claim, and what is happening; and, while
a `weblab run` records them, the same lines as JSON in a file the live view reads (weblab.core.paths)."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

_t0 = time.monotonic()
_context = ""
_file: Path | None = None
stream: TextIO | None = None  # None means sys.stderr at call time (pytest's capsys swaps it)


def set_context(context: str) -> None:
    """Prefix later lines with context, e.g. 'spof 1/3'."""
    global _context
    _context = context


def record_to(path: Path | None) -> None:
    """Also write every later line to path as JSON (emptied now); None stops that and removes the file."""
    global _file
    if path is None:
        if _file is not None:
            _file.unlink(missing_ok=True)
        _file = None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    _file = path


def say(message: str, **fields: Any) -> None:
    """One progress line: '[weblab  12.3s spof 1/3] message'; fields (verdict=..., slug=...) go to the file only."""
    out = stream or sys.stderr
    elapsed = time.monotonic() - _t0
    prefix = f"[weblab {elapsed:6.1f}s{' ' + _context if _context else ''}]"
    print(f"{prefix} {message}", file=out, flush=True)
    if _file is not None:
        record = {"t": round(time.time(), 3), "pid": os.getpid(), "elapsed": round(elapsed, 1),
                  "context": _context, "message": message, **fields}
        try:
            with open(_file, "a") as f:
                f.write(json.dumps(record, default=str) + "\n")
        except OSError:
            pass  # progress must never stop a run
