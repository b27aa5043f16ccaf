"""Where weblab keeps its runtime state, caches and preserved logs."""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUN_ROOT = Path(os.environ.get("WEBLAB_RUN_ROOT", "/run/weblab"))
CACHE_ROOT = Path(os.environ.get("WEBLAB_CACHE_ROOT", "/var/cache/weblab"))
KEPT_LOGS = Path(os.environ.get("WEBLAB_LOG_ROOT", "/var/log/weblab"))
LOCK_FILE = RUN_ROOT.parent / "weblab.lock"  # outside RUN_ROOT: an empty RUN_ROOT means nothing runs
# `weblab run` writes its progress lines here too (JSON, one a line, with its pid), for the live view
PROGRESS_FILE = RUN_ROOT.parent / "weblab-progress.jsonl"


def run_dir(run_id: str) -> Path:
    """The directory that holds everything of one run."""
    return RUN_ROOT / run_id


def python() -> str:
    """The interpreter of weblab's venv (hosts share the filesystem, so it runs inside them too)."""
    return sys.executable
