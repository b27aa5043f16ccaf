"""PNG plots drawn from raw data only (Agg backend): timelines, load curves, packet sequences, bars, CDFs, scan matrices."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from experiments.capture import PacketEvent  # noqa: E402
from experiments.stats import Request  # noqa: E402

Window = tuple[float, float, str]  # (t_start, t_end, label) in wall-clock seconds
COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown"]
STATE_COLOURS = {"open": "#cf222e", "closed": "#8c959f", "filtered": "#1a7f37", "open|filtered": "#bf8700",
                 "no-route": "#d0d7de"}


def _save(fig: plt.Figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return out


def availability(rows: Sequence[Request], windows: Sequence[Window], out: Path, title: str,
                 bin_s: float = 0.25, marks: Sequence[tuple[float, str]] = ()) -> Path:
    """Success of each request (dots) and per-bin success rate over time, fault windows shaded."""
    fig, ax = plt.subplots(figsize=(9, 3.6))
    if rows:
        t0 = rows[0].t_send
        xs = [r.t_send - t0 for r in rows]
        ax.scatter(xs, [1.04 if r.ok else -0.04 for r in rows], s=4, marker="|",
                   c=["tab:green" if r.ok else "tab:red" for r in rows], label="each request (ok / failed)")
        nbins = int(xs[-1] / bin_s) + 1
        ok, n = [0] * nbins, [0] * nbins
        for x, r in zip(xs, rows):
            b = min(int(x / bin_s), nbins - 1)
            n[b] += 1
            ok[b] += r.ok
        centres = [(i + 0.5) * bin_s for i in range(nbins) if n[i]]
        ax.step(centres, [ok[i] / n[i] for i in range(nbins) if n[i]], where="mid", color="black",
                label=f"success rate per {bin_s * 1000:.0f} ms")
        for i, (a, z, label) in enumerate(windows):
            ax.axvspan(a - t0, z - t0, color="tab:red", alpha=0.15, label=label if i < 4 else None)
        for t, label in marks:
            ax.axvline(t - t0, color="tab:blue", ls="--", lw=1)
            ax.text(t - t0, 0.5, label, rotation=90, va="center", ha="right", fontsize=8, color="tab:blue")
    ax.set_ylim(-0.1, 1.1)
    ax.set_xlabel("time since first request (s)")
    ax.set_ylabel("success")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, out)


def load_curves(points: Sequence[dict], out: Path, title: str) -> Path:
    """Achieved throughput and p50/p99 latency against offered load."""
    pts = sorted(points, key=lambda p: p["offered"])
    off = [p["offered"] for p in pts]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    a1.plot(off, off, ls=":", color="grey", label="ideal (achieved = offered)")
    a1.plot(off, [p["achieved"] for p in pts], marker="o", label="achieved")
    a1.set_xlabel("offered load (req/s)")
    a1.set_ylabel("throughput (ok req/s)")
    a1.legend(fontsize=8)
    a2.plot(off, [p["p50"] * 1000 for p in pts], marker="o", label="p50")
    a2.plot(off, [p["p99"] * 1000 for p in pts], marker="s", label="p99")
    a2.set_yscale("log")
    a2.set_xlabel("offered load (req/s)")
    a2.set_ylabel("latency from scheduled send (ms)")
    a2.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, out)


def sequence(events: Sequence[PacketEvent], client: str, server: str, out: Path, title: str) -> Path:
    """A packet-sequence (ladder) diagram: one arrow per segment between client and server."""
    height = max(3.0, 0.42 * len(events) + 1.2)
    fig, ax = plt.subplots(figsize=(8, height))
    xc, xs = 0.15, 0.85
    for x, name in ((xc, f"client\n{client}"), (xs, f"server\n{server}")):
        ax.plot([x, x], [0, len(events) + 0.5], color="black", lw=1)
        ax.text(x, -0.4, name, ha="center", va="bottom", fontsize=9, weight="bold")
    t0 = events[0].time if events else 0.0
    for i, ev in enumerate(events, 1):
        to_server = ev.dst == server
        a, b = (xc, xs) if to_server else (xs, xc)
        colour = "tab:blue" if ev.kind in ("SYN", "SYN-ACK", "ACK") else "tab:green" if ev.kind == "DATA" else "tab:grey"
        ax.annotate("", xy=(b, i + 0.3), xytext=(a, i), arrowprops={"arrowstyle": "->", "color": colour})
        ax.text(0.5, i + 0.05, f"#{ev.frame} {ev.label}", ha="center", va="bottom", fontsize=8)
        ax.text(0.01, i, f"{(ev.time - t0) * 1000:.2f} ms", fontsize=7, va="center", color="grey")
    ax.set_ylim(len(events) + 1, -1)
    ax.set_xlim(0, 1)
    ax.axis("off")
    ax.set_title(title)
    return _save(fig, out)


def table(rows: Sequence[Sequence[object]], columns: Sequence[str], out: Path, title: str,
          highlight: Sequence[int] = ()) -> Path:
    """A table as a figure (pcap evidence); rows whose index is in highlight are shaded red."""
    fig, ax = plt.subplots(figsize=(11, 0.45 * (len(rows) + 2) + 0.6))
    ax.axis("off")
    cells = [[str(c) for c in r] for r in rows] or [["(none)"] + [""] * (len(columns) - 1)]
    t = ax.table(cellText=cells, colLabels=list(columns), loc="center", cellLoc="left")
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    t.auto_set_column_width(list(range(len(columns))))
    for i in highlight:
        for j in range(len(columns)):
            t[(i + 1, j)].set_facecolor("#f8c9c4")
    ax.set_title(title, fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, metadata={"Software": None}, bbox_inches="tight")  # the table may overhang the axes
    plt.close(fig)
    return out


def grouped_bars(groups: dict[str, dict[str, float]], out: Path, title: str, ylabel: str,
                 log: bool = False, ref: float | None = None, ref_label: str = "") -> Path:
    """One group of bars per key of groups (e.g. a URL), one bar per series (e.g. a mode); ref: a
    horizontal reference line (e.g. a fair share)."""
    names = list(groups)
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(5, 2.2 * len(names)), 3.6))
    for k, s in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(names))]
        ys = [groups[n].get(s, 0.0) or 0.0 for n in names]
        bars = ax.bar(xs, ys, width, label=s, color=COLOURS[k % len(COLOURS)])
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    if ref is not None:
        ax.axhline(ref, ls=":", color="grey", label=ref_label or None)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, out)


def series_timeline(series: dict[str, tuple[Sequence[float], Sequence[float]]], out: Path, title: str,
                    ylabel: str, t0: float, windows: Sequence[Window] = (),
                    marks: Sequence[tuple[float, str]] = (), hlines: Sequence[tuple[float, str]] = (),
                    log: bool = False, styles: dict[str, str] | None = None) -> Path:
    """Lines (or dots, style '.') over wall-clock time, with shaded windows, vertical marks, thresholds."""
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for name, (xs, ys) in series.items():
        style = (styles or {}).get(name, "-")
        xs = [x - t0 for x in xs]
        if style == ".":
            ax.scatter(xs, ys, s=4, label=name)
        else:
            ax.plot(xs, ys, style, label=name, lw=1.2)
    shown: set[str] = set()
    for a, z, label in windows:  # one legend entry per kind of window
        ax.axvspan(a - t0, z - t0, color="tab:red", alpha=0.12, label=None if label in shown else label)
        shown.add(label)
    for y, label in hlines:
        ax.axhline(y, color="grey", ls=":", lw=1)
        ax.text(0, y, label, fontsize=7, va="bottom", color="grey")
    for t, label in marks:
        ax.axvline(t - t0, color="tab:blue", ls="--", lw=0.8)
        ax.text(t - t0, ax.get_ylim()[1], label, rotation=90, va="top", ha="right", fontsize=7, color="tab:blue")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, out)


def cdf(series: dict[str, Sequence[float]], out: Path, title: str, xlabel: str, log_x: bool = False,
        bounds: Sequence[tuple[float, str]] = ()) -> Path:
    """Empirical CDF of each series (e.g. latency in ms), with vertical bounds (targets, percentiles)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for j, (name, values) in enumerate(series.items()):
        xs = sorted(values)
        if xs:
            ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", label=f"{name} (n={len(xs)})",
                    color=COLOURS[j % len(COLOURS)], marker="o" if len(xs) <= 50 else None, ms=3)
    for x, label in bounds:
        ax.axvline(x, color="tab:red", ls="--", lw=1, label=label)
    if log_x:
        ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction <= x")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out)


def histogram(values: Sequence[float], out: Path, title: str, xlabel: str, bins: int = 10) -> Path:
    """A histogram of values."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if values:
        ax.hist(list(values), bins=bins, color="tab:blue", edgecolor="black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"count (n={len(values)})")
    ax.set_title(title)
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


def panels(panels: dict[str, dict[str, tuple[Sequence[float], Sequence[float], str]]], out: Path, xlabel: str,
           ylabel: str) -> Path:
    """Stacked axes sharing x, one per key of panels (its title), each with named (xs, ys, style) series;
    style is a matplotlib format, or 'step' for a step line."""
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.1 * len(panels)), sharex=True, squeeze=False)
    for ax, (title, series) in zip(axes[:, 0], panels.items()):
        for k, (name, (xs, ys, style)) in enumerate(series.items()):
            if style == "step":
                ax.step(xs, ys, where="post", lw=1.6, color="black", label=name)
            else:
                ax.plot(xs, ys, style, ms=3, lw=1.1, label=name, color=COLOURS[k % len(COLOURS)])
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.3)  # room for the legend above the lines
        ax.legend(fontsize=7, loc="upper center", ncol=3)
    axes[-1, 0].set_xlabel(xlabel)
    return _save(fig, out)


def stacked_bars(bars: dict[str, dict[str, float]], out: Path, title: str, ylabel: str) -> Path:
    """One bar per key of bars, stacked from its parts (same part names across bars), totals on top."""
    names = list(bars)
    parts = list(dict.fromkeys(p for b in bars.values() for p in b))
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(names) + 2), 4))
    bottom = [0.0] * len(names)
    for k, part in enumerate(parts):
        ys = [bars[n].get(part, 0.0) for n in names]
        ax.bar(range(len(names)), ys, 0.6, bottom=bottom, label=part, color=COLOURS[k % len(COLOURS)])
        bottom = [b + y for b, y in zip(bottom, ys)]
    for i, total in enumerate(bottom):
        ax.text(i, total, f"{total:.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, out)


def attack_timeline(t0: float, lanes: dict[str, Sequence[tuple[float, bool]]],
                    series: dict[str, tuple[Sequence[float], Sequence[float]]], out: Path, title: str,
                    windows: Sequence[Window] = (), ylabel: str = "frames per 0.25 s") -> Path:
    """An attack over time: event lanes on top (each a dot per event, red when it went the attacker's way:
    a lie sent, a poisoned cache, a credential seen), counts below (what crossed the attacker, probe success)."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 1.6 + 0.42 * max(1, len(lanes)) + 2.6), sharex=True,
                                      gridspec_kw={"height_ratios": [max(1, len(lanes)), 3]})
    for i, (name, points) in enumerate(lanes.items()):
        xs = [t - t0 for t, _ in points]
        top.scatter(xs, [i] * len(xs), s=14, marker="|" if len(xs) > 40 else "o",
                    c=["tab:red" if bad else "tab:green" for _, bad in points])
    top.set_yticks(range(len(lanes)), list(lanes), fontsize=8)
    top.set_ylim(-0.7, len(lanes) - 0.3)
    top.set_title(title)
    for name, (xs, ys) in series.items():
        bottom.plot([x - t0 for x in xs], ys, "-", lw=1.2, label=name, drawstyle="steps-post")
    shown: dict[str, str] = {}
    for a, z, label in windows:  # one colour per kind of window (an attack phase)
        colour = shown.setdefault(label, COLOURS[(len(shown) + 1) % len(COLOURS)])
        for ax in (top, bottom):
            ax.axvspan(a - t0, z - t0, color=colour, alpha=0.10,
                       label=None if (ax is top or (a, z) != next(w[:2] for w in windows if w[2] == label)) else label)
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel(ylabel)
    if series or windows:
        bottom.legend(fontsize=8, loc="upper left")
    return _save(fig, out)


def binned(times: Sequence[float], t0: float, t1: float, width: float = 0.25) -> tuple[list[float], list[float]]:
    """Counts of events per bin from t0 to t1: (bin starts, counts), for a timeline's lower panel."""
    n = max(1, int((t1 - t0) / width) + 1)
    counts = [0.0] * n
    for t in times:
        i = int((t - t0) / width)
        if 0 <= i < n:
            counts[i] += 1
    return [t0 + i * width for i in range(n)], counts
