"""Is the machine itself the bottleneck? Sample /proc/stat during a run; judge saturation afterwards.

Rule (documented in docs/experiments.md): a case is `inconclusive` when, inside its measurement
windows (raw/<case>/windows.csv, or the whole run when it has none), more than half of the CPU
samples (every 0.25 s, all cores together, steal counted as busy) show the machine > 95% busy.
Claims about content rather than timing (a DNS answer, a packet order) record the numbers but
set `timing_sensitive = False`, so a busy machine does not void them. A CPU-limited host saturating its own quota is the experiment, not a fidelity problem: it cannot
push the whole machine past 95% on its own.
"""
from __future__ import annotations

import csv
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from experiments.background import Background
from experiments.verdict import INCONCLUSIVE, Verdict

CPU_FILE = "cpu.csv"
WINDOWS_FILE = "windows.csv"
BUSY_THRESHOLD = 0.95
MAX_SATURATED_FRACTION = 0.5
MIN_SAMPLES = 4


def read_proc_stat(path: Path = Path("/proc/stat")) -> tuple[int, int]:
    """(busy, total) jiffies over all cores; idle and iowait are not busy, steal is."""
    with open(path) as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    total = sum(fields[:8])
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return total - idle, total


class CpuSampler(Background):
    """Context manager: a daemon thread appending 't,busy' (busy fraction 0..1) to a CSV."""

    thread_name = "cpu-sampler"

    def __init__(self, path: Path, interval: float = 0.25, stat: Path = Path("/proc/stat")):
        super().__init__()
        self.path, self.interval, self.stat = Path(path), interval, stat

    def __enter__(self) -> "CpuSampler":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return super().__enter__()

    def _loop(self) -> None:
        with open(self.path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["t", "busy"])
            f.flush()
            prev = read_proc_stat(self.stat)
            while not self._stop.wait(self.interval):
                cur = read_proc_stat(self.stat)
                d_total = cur[1] - prev[1]
                if d_total > 0:
                    w.writerow([f"{time.time():.3f}", f"{(cur[0] - prev[0]) / d_total:.4f}"])
                    f.flush()
                prev = cur


class NullSampler:
    """A sampler that records nothing (tests; runs where fidelity is judged elsewhere)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> "NullSampler":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@contextmanager
def window(raw: Path, name: str) -> Iterator[None]:
    """Mark a measurement window in raw/windows.csv (name, t_start, t_end) around a block."""
    t0 = time.time()
    try:
        yield
    finally:
        path = Path(raw) / WINDOWS_FILE
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["name", "t_start", "t_end"])
            w.writerow([name, f"{t0:.3f}", f"{time.time():.3f}"])


def read_windows(raw: Path) -> list[tuple[str, float, float]]:
    """Measurement windows of a case, [] when none were marked."""
    path = Path(raw) / WINDOWS_FILE
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [(r["name"], float(r["t_start"]), float(r["t_end"])) for r in csv.DictReader(f)]


def read_samples(raw: Path) -> list[tuple[float, float]]:
    """(t, busy) samples of a case."""
    path = Path(raw) / CPU_FILE
    if not path.exists():
        return []
    with open(path, newline="") as f:  # a run cut short may leave a torn last line: skip it
        return [(float(r["t"]), float(r["busy"])) for r in csv.DictReader(f) if r.get("t") and r.get("busy")]


def assess(raw: Path) -> tuple[bool | None, dict[str, float], str]:
    """(saturated?, measured values, explanation); saturated is None when there are too few samples."""
    samples = read_samples(raw)
    wins = read_windows(raw)
    if wins:
        samples = [(t, b) for t, b in samples if any(a <= t <= z for _, a, z in wins)]
    if len(samples) < MIN_SAMPLES:
        return None, {"machine_cpu_samples": len(samples)}, (
            f"only {len(samples)} machine CPU samples in the measurement windows (need {MIN_SAMPLES})")
    busy = sorted(b for _, b in samples)
    hot = sum(b > BUSY_THRESHOLD for b in busy) / len(busy)
    measured = {"machine_cpu_samples": len(busy), "machine_cpu_busy_median": round(busy[len(busy) // 2], 4),
                "machine_cpu_busy_max": round(busy[-1], 4), "machine_cpu_saturated_fraction": round(hot, 4)}
    saturated = hot > MAX_SATURATED_FRACTION
    why = (f"the machine was > {BUSY_THRESHOLD:.0%} busy in {hot:.0%} of {len(busy)} CPU samples "
           f"(limit {MAX_SATURATED_FRACTION:.0%}): numbers reflect the emulator, not the design")
    return saturated, measured, why


def apply(v: Verdict, raw: Path, timing_sensitive: bool = True) -> Verdict:
    """Return v with the fidelity numbers added; inconclusive when the machine saturated (or was not sampled)."""
    saturated, measured, why = assess(raw)
    v.measured.update(measured)
    if saturated is False or not timing_sensitive:
        return v
    if v.verdict != INCONCLUSIVE:
        v.reasons.append(f"would have been {v.verdict}")
    v.verdict = INCONCLUSIVE
    v.reasons.insert(0, why)
    return v
