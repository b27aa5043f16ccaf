"""Progress lines on stderr for long runs: elapsed time, the current claim, and what is happening."""
from __future__ import annotations

import sys
import time
from typing import TextIO

_t0 = time.monotonic()
_context = ""
stream: TextIO | None = None  # None means sys.stderr at call time (pytest's capsys swaps it)


def set_context(context: str) -> None:
    """Prefix later lines with context, e.g. 'spof 1/3'."""
    global _context
    _context = context


def say(message: str) -> None:
    """One progress line: '[weblab  12.3s spof 1/3] message'."""
    out = stream or sys.stderr
    prefix = f"[weblab {time.monotonic() - _t0:6.1f}s{' ' + _context if _context else ''}]"
    print(f"{prefix} {message}", file=out, flush=True)
