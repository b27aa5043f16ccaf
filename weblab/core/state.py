"""The state file of a run: what exec, status, down and clean read."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from weblab.core import paths


class RunState:
    """A run's record of everything it created, saved atomically after every change."""

    def __init__(self, run_id: str, data: dict[str, Any] | None = None):
        self.run_id = run_id
        self.dir = paths.run_dir(run_id)
        self.data: dict[str, Any] = data or {
            "run_id": run_id, "status": "starting", "processes": [], "links": [],
            "switches": [], "hosts": {}, "services": [], "cgroups": [], "mounts": [],
        }

    @property
    def path(self) -> Path:
        return self.dir / "state.json"

    def save(self) -> None:
        """Write the state atomically (readers never see a half-written file)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".state.")
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)

    def add(self, key: str, item: Any) -> None:
        """Append to a list in the state and save."""
        self.data.setdefault(key, []).append(item)
        self.save()

    def set(self, **kw: Any) -> None:
        """Set top-level fields and save."""
        self.data.update(kw)
        self.save()

    @classmethod
    def load(cls, run_id: str) -> "RunState":
        """Read the state of a run; FileNotFoundError if it has none."""
        path = paths.run_dir(run_id) / "state.json"
        return cls(run_id, json.loads(path.read_text()))


def all_runs() -> list[str]:
    """Run ids that have a directory under the run root."""
    if not paths.RUN_ROOT.is_dir():
        return []
    return sorted(p.name for p in paths.RUN_ROOT.iterdir() if p.is_dir())
