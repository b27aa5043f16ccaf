"""More PNG plots drawn from raw data only: per-backend bars, CDFs, who-served-when timelines, scan matrices."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown"]
STATE_COLOURS = {"open": "#cf222e", "closed": "#8c959f", "filtered": "#1a7f37", "open|filtered": "#bf8700",
                 "no-route": "#d0d7de"}


def _save(fig: plt.Figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return out


def grouped_bars(groups: dict[str, dict[str, float]], out: Path, title: str, ylabel: str,
                 ref: float | None = None, ref_label: str = "") -> Path:
    """One group of bars per key of groups (e.g. per algorithm), one bar per inner key (e.g. per backend)."""
    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(groups) + 2), 3.6))
    inner = sorted({k for g in groups.values() for k in g})
    width = 0.8 / max(1, len(inner))
    for j, name in enumerate(inner):
        xs = [i + j * width for i in range(len(groups))]
        ys = [g.get(name, 0.0) for g in groups.values()]
        bars = ax.bar(xs, ys, width, label=name, color=COLOURS[j % len(COLOURS)])
        for b, y in zip(bars, ys):
            ax.text(b.get_x() + b.get_width() / 2, y, f"{y:.3g}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks([i + width * (len(inner) - 1) / 2 for i in range(len(groups))], list(groups))
    if ref is not None:
        ax.axhline(ref, ls=":", color="grey", label=ref_label or None)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, out)


def cdf(series: dict[str, Sequence[float]], out: Path, title: str, xlabel: str, log_x: bool = False,
        marks: Sequence[tuple[float, str]] = ()) -> Path:
    """Empirical CDF of each series (e.g. latency in ms)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for j, (name, values) in enumerate(series.items()):
        xs = sorted(values)
        if xs:
            ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", label=f"{name} (n={len(xs)})",
                    color=COLOURS[j % len(COLOURS)])
    for x, label in marks:
        ax.axvline(x, ls="--", lw=1, color="grey")
        ax.text(x, 0.05, label, rotation=90, fontsize=8, va="bottom", ha="right")
    if log_x:
        ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction <= x")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out)


def served_timeline(points: Sequence[tuple[float, str, bool]], servers: Sequence[str], out: Path, title: str,
                    windows: Sequence[tuple[float, float, str]] = (), marks: Sequence[tuple[float, str]] = (),
                    t0: float | None = None) -> Path:
    """Each request as a dot on the row of the server that answered it (failures on their own row)."""
    rows = list(servers) + ["failed"]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.5 * len(rows)))
    base = t0 if t0 is not None else (min(p[0] for p in points) if points else 0.0)
    for j, name in enumerate(rows):
        xs = [t - base for t, who, ok in points if (name == "failed" and not ok) or (ok and who == name)]
        ax.scatter(xs, [j] * len(xs), s=6, marker="|", color="tab:red" if name == "failed" else COLOURS[j % len(COLOURS)])
    for i, (a, z, label) in enumerate(windows):
        ax.axvspan(a - base, z - base, color=("tab:red", "tab:grey", "tab:olive")[i % 3], alpha=0.14,
                   label=label if i < 4 else None)
    for t, label in marks:
        ax.axvline(t - base, ls="--", lw=1, color="tab:blue")
        ax.text(t - base, len(rows) - 0.6, label, rotation=90, fontsize=7, va="top", ha="right", color="tab:blue")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    if windows:
        ax.legend(fontsize=8, loc="upper left")
    return _save(fig, out)


def scan_matrix(cells: dict[tuple[str, str], str], out: Path, title: str) -> Path:
    """Rows = 'source -> target', columns = 'proto/port', each cell coloured by the scan state."""
    rows = sorted({r for r, _ in cells})
    cols = sorted({c for _, c in cells}, key=lambda c: (c.split("/")[0], int(c.split("/")[1])))
    fig, ax = plt.subplots(figsize=(1.2 + 0.62 * len(cols), 1.0 + 0.42 * len(rows)))
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            st = cells.get((r, c), "")
            ax.add_patch(plt.Rectangle((j, i), 1, 1, color=STATE_COLOURS.get(st, "white"), ec="white"))
            ax.text(j + 0.5, i + 0.5, {"open": "OPEN", "open|filtered": "o|f", "no-route": "-"}.get(st, st[:4]),
                    ha="center", va="center", fontsize=6, color="white" if st in ("open", "filtered") else "black")
    ax.set_xlim(0, len(cols))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([j + 0.5 for j in range(len(cols))], cols, rotation=60, fontsize=7)
    ax.set_yticks([i + 0.5 for i in range(len(rows))], rows, fontsize=7)
    ax.set_title(title, fontsize=9)
    return _save(fig, out)
