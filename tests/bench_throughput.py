"""Benchmark (`make bench`): packets/s of the throughput analysis vs `tshark -q -z io,stat,1` on the same
files, in the same run, as a ratio; and the analysis' peak memory on a small and a 4x larger file.

The files are made here, record by record, like a tcpdump capture with snaplen 128 of one saturated
link: `tso` is 10 s of 10 Gbit/s in 64 KiB TSO super-segments (what the tap datapath hands tcpdump),
`mtu` the same rate in 1500-byte frames (what a veth datapath shows), each with an ACK every two
segments. No lab, no root: `python -m tests.bench_throughput --out bench/throughput.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

SNAPLEN = 128
REPO = Path(__file__).resolve().parent.parent


def template(payload: int, to_b: bool) -> bytes:
    """Ethernet/IPv4/TCP headers (timestamps option) of a segment with payload bytes, as tcpdump keeps them."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    a, b = ("10.0.0.100", "10.0.0.10") if to_b else ("10.0.0.10", "10.0.0.100")
    ma, mb = ("02:00:0a:00:00:64", "02:00:0a:00:00:0a") if to_b else ("02:00:0a:00:00:0a", "02:00:0a:00:00:64")
    pkt = Ether(src=ma, dst=mb) / IP(src=a, dst=b, len=52 + payload) / \
        TCP(sport=40000 if to_b else 5201, dport=5201 if to_b else 40000, flags="A",
            options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))])
    return bytes(pkt)


def make_capture(path: Path, seconds: float, gbps: float, segment: int) -> int:
    """A pcap of one saturated transfer: segments of `segment` payload bytes at gbps for seconds, ACKs
    every second segment; returns the number of records."""
    data, ack = bytearray(template(segment, True)), bytearray(template(0, False))
    wire_data, wire_ack = 14 + 52 + segment, 66
    n_data = int(gbps * 1e9 / 8 * seconds / wire_data)
    step = seconds / n_data
    rec = struct.Struct("<IIII")
    t0 = 1_700_000_000.0
    count = 0
    with open(path, "wb", buffering=1 << 22) as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, 1))
        seq = 1
        for i in range(n_data):
            t = t0 + i * step
            sec = int(t)
            usec = int((t - sec) * 1e6)
            struct.pack_into("!I", data, 38, seq & 0xFFFFFFFF)
            f.write(rec.pack(sec, usec, len(data), wire_data))
            f.write(data)
            seq += segment
            count += 1
            if i % 2:
                struct.pack_into("!I", ack, 42, seq & 0xFFFFFFFF)
                f.write(rec.pack(sec, usec, len(ack), wire_ack))
                f.write(ack)
                count += 1
    return count


def ours(path: Path) -> dict:
    """The analysis in a fresh interpreter: wall and CPU seconds, peak memory, and what it counted."""
    code = ("import json, resource, sys, time\n"
            "from experiments import throughput\n"
            "t, c = time.perf_counter(), time.process_time()\n"
            "r = throughput.analyse(sys.argv[1], bin_s=0.1)\n"
            "wall, cpu = time.perf_counter() - t, time.process_time() - c\n"
            "print(json.dumps({'wall_s': wall, 'cpu_s': cpu, 'packets': r.packets, 'wire_bytes': r.wire_bytes,"
            " 'goodput_bytes': r.summary()['tcp']['goodput_bytes'],"
            " 'max_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n")
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=REPO,
                         timeout=600, check=True)
    return json.loads(res.stdout)


def tshark(path: Path) -> dict:
    """`tshark -q -z io,stat,1 -r FILE`: wall and CPU seconds, and the frames and bytes it counted."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    res = subprocess.run(["tshark", "-q", "-n", "-z", "io,stat,1", "-r", str(path)], capture_output=True,
                         text=True, timeout=1200)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    frames = size = 0
    for line in res.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and "<>" in cells[0] and cells[1].isdigit():
            frames += int(cells[1])
            size += int(cells[2])
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "packets": frames, "wire_bytes": size, "exit": res.returncode}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench_throughput")
    ap.add_argument("--out", default="bench/throughput.json")
    ap.add_argument("--mtu-seconds", type=float, default=0.5, help="seconds of the 1500-byte-frame capture")
    args = ap.parse_args(argv)
    if not shutil.which("tshark"):
        print("tshark is missing: install it with: sudo make install", file=sys.stderr)
        return 2
    files = {"tso": (10.0, 10.0, 65160), "mtu": (args.mtu_seconds, 10.0, 1448),
             "mtu-4x": (4 * args.mtu_seconds, 10.0, 1448)}
    results = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": {"cores": os.cpu_count(), "kernel": platform.release(),
                           "load_avg_1m": os.getloadavg()[0]},
               "snaplen": SNAPLEN, "files": {}}
    with tempfile.TemporaryDirectory(prefix="weblab-bench-") as tmp:
        for name, (seconds, gbps, segment) in files.items():
            path = Path(tmp) / f"{name}.pcap"
            t = time.perf_counter()
            records = make_capture(path, seconds, gbps, segment)
            made = time.perf_counter() - t
            mine, theirs = ours(path), tshark(path)
            row = {"describes": f"{seconds:g} s of {gbps:g} Gbit/s, {segment}-byte segments, snaplen {SNAPLEN}",
                   "records": records, "file_mb": round(path.stat().st_size / 1e6, 1), "made_in_s": round(made, 2),
                   "analysis": {k: round(v, 3) if isinstance(v, float) else v for k, v in mine.items()},
                   "tshark": {k: round(v, 3) if isinstance(v, float) else v for k, v in theirs.items()}}
            row["analysis"]["packets_per_s"] = round(records / mine["wall_s"])
            row["analysis"]["packets_per_s_cpu"] = round(records / mine["cpu_s"])
            row["tshark"]["packets_per_s"] = round(records / theirs["wall_s"])
            row["tshark"]["packets_per_s_cpu"] = round(records / theirs["cpu_s"]) if theirs["cpu_s"] else None
            row["ratio_to_tshark"] = round(theirs["wall_s"] / mine["wall_s"], 2)
            row["ratio_to_tshark_cpu"] = round(theirs["cpu_s"] / mine["cpu_s"], 2) if mine["cpu_s"] else None
            row["counts_agree"] = (mine["packets"] == theirs["packets"] == records
                                   and mine["wire_bytes"] == theirs["wire_bytes"])
            results["files"][name] = row
            print(f"{name}: {records} packets ({row['file_mb']} MB): analysis {mine['wall_s']:.2f} s "
                  f"({row['analysis']['packets_per_s']:,}/s, {mine['max_rss_mb']:.0f} MB peak), tshark "
                  f"{theirs['wall_s']:.2f} s ({row['tshark']['packets_per_s']:,}/s): x{row['ratio_to_tshark']} "
                  f"(CPU x{row['ratio_to_tshark_cpu']}); counts agree: {row['counts_agree']}",
                  file=sys.stderr, flush=True)
    small, big = results["files"]["mtu"]["analysis"], results["files"]["mtu-4x"]["analysis"]
    results["memory_growth_4x_file"] = round(big["max_rss_mb"] / small["max_rss_mb"], 3)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
