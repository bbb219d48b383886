#!/usr/bin/env python3
"""Table maintenance benchmarks (run with the venv's python: pyarrow and DuckDB are used).

    .venv/bin/python bench/maintenance.py                       # 1,000 appends; 2,000 loads
    .venv/bin/python bench/maintenance.py --appends 200 --loads 300   # quicker
    .venv/bin/python bench/maintenance.py --record docs/benchmarks.md

compact: N appends of 10,000 rows each (one small file per load), then `floe compact`, beside
the rewrite path on the same input (`floe load --rewrite` of the same N files into a new table:
decode + encode the same rows). Reports files before/after, compact's wall time, throughput
as a ratio of the rewrite path's, peak RSS, and a DuckDB full scan before and after.

expire: the wall time of a one-row append on a fresh table, after L loads, and after L loads
followed by `floe expire --older-than 0s` (every commit rewrites the metadata file, which grows
with the snapshot list).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from memory import machine_facts, measure_rusage, record_section, release_binaries  # noqa: E402

ROWS_PER_LOAD = 10_000


GENERATE = """
import sys
import pyarrow as pa, pyarrow.parquet as pq
out, count, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for n in range(count):
    first = n * rows
    r = range(first, first + rows)
    pq.write_table(pa.table({
        "id": pa.array(r, pa.int64()),
        "user": pa.array([f"user-{i % 977}" for i in r]),
        "amount": pa.array([(i * 37) % 10_000 / 100 for i in r]),
        "ts": pa.array([1_764_000_000_000_000 + i * 1_000_000 for i in r], pa.timestamp("us")),
    }), f"{out}/f{n:05}.parquet", compression="zstd")
"""

SCAN = """
import statistics, sys, time
sys.path.insert(0, sys.argv[3])
from conftest import duckdb_connection
from pathlib import Path
con = duckdb_connection(Path(sys.argv[2]))
times = []
for _ in range(3):
    start = time.perf_counter()
    con.execute(f"SELECT count(*), sum(id), max(user), sum(amount), max(ts) FROM iceberg_scan('{sys.argv[1]}')").fetchall()
    times.append(time.perf_counter() - start)
print(statistics.median(times))
"""

INTEROP = Path(__file__).resolve().parents[1] / "tests" / "interop"


def small_files(out: Path, count: int, rows: int) -> list:
    """`count` Parquet files of `rows` rows, written by a child (pyarrow stays out of this
    process: a measured child's peak RSS starts from this process's size at the fork)."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", GENERATE, str(out), str(count), str(rows)], check=True)
    return sorted(out.glob("f*.parquet"))


def floe(bin_, *args, warehouse):
    return subprocess.run([bin_, *map(str, args), "--warehouse", str(warehouse)], check=True, capture_output=True, text=True).stdout


def duckdb_scan(warehouse: Path, table: str, work: Path) -> float:
    """Seconds for a DuckDB full scan (every column aggregated) of the table's current state."""
    report = json.loads(floe(FLOE, "inspect", table, "--json", warehouse=warehouse))
    out = subprocess.run([sys.executable, "-c", SCAN, report["metadata_location"], str(work), str(INTEROP)],
                         check=True, capture_output=True, text=True).stdout
    return float(out)


def bench_compact(appends: int, work: Path) -> str:
    files = small_files(work / "inputs", appends, ROWS_PER_LOAD)
    wh = work / "wh"
    start = time.perf_counter()
    for f in files:
        floe(FLOE, "load", "b.events", f, warehouse=wh)
    loads_s = time.perf_counter() - start
    before = json.loads(floe(FLOE, "inspect", "b.events", "--json", warehouse=wh))["files"]
    scan_before = duckdb_scan(wh, "b.events", work)
    wall, cpu, rss, out = measure_rusage([FLOE, "compact", "b.events", "--json", "--warehouse", str(wh)])
    summary = json.loads(out)
    after = json.loads(floe(FLOE, "inspect", "b.events", "--json", warehouse=wh))["files"]
    scan_after = duckdb_scan(wh, "b.events", work)
    rewrite_wall, _, rewrite_rss, _ = measure_rusage([FLOE, "load", "b.rewrite", *files, "--rewrite", "--writers", "1", "--warehouse", str(work / "wh2")])
    rows = summary["rows_written"]
    assert rows == appends * ROWS_PER_LOAD, summary
    return "\n".join(
        [
            f"{appends:,} appends of {ROWS_PER_LOAD:,} rows ({rows:,} rows; the appends took {loads_s:.1f} s):",
            "",
            "| | files | MiB | compact wall | rows/s | peak RSS | DuckDB full scan |",
            "|---|---:|---:|---:|---:|---:|---:|",
            f"| before | {before['data_files']:,} | {before['data_bytes'] / 2**20:.1f} | | | | {scan_before:.2f} s |",
            f"| after `floe compact` | {after['data_files']:,} | {after['data_bytes'] / 2**20:.1f} | {wall:.2f} s | {rows / wall:,.0f} | {rss / 2**20:.0f} MiB | {scan_after:.2f} s |",
            f"| rewrite path (`floe load --rewrite --writers 1`, same files) | | | {rewrite_wall:.2f} s | {rows / rewrite_wall:,.0f} | {rewrite_rss / 2**20:.0f} MiB | |",
            "",
            f"compact throughput = {rewrite_wall / wall:.2f}x the rewrite path's; full scan {scan_before / scan_after:.1f}x faster after.",
        ]
    )


def tiny_append_ms(tables, tiny: Path, repeat: int = 15) -> list:
    """Median wall time (ms) of a one-row append into each of `tables` ((warehouse, name)),
    alternating between them so drift and noise hit all alike."""
    times = [[] for _ in tables]
    for _ in range(repeat):
        for i, (wh, table) in enumerate(tables):
            start = time.perf_counter()
            floe(FLOE, "load", table, tiny, warehouse=wh)
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) * 1000 for t in times]


def bench_expire(loads: int, work: Path) -> str:
    tiny = small_files(work / "tiny", 1, 1)[0]
    fresh = (work / "fresh", "b.t")
    floe(FLOE, "load", "b.t", tiny, warehouse=fresh[0])
    long = (work / "long", "b.t")
    for _ in range(loads):
        floe(FLOE, "load", "b.t", tiny, warehouse=long[0])
    fresh_ms, long_ms = tiny_append_ms([fresh, long], tiny)
    wall, _, rss, _ = measure_rusage([FLOE, "expire", "b.t", "--older-than", "0s", "--warehouse", str(long[0])])
    fresh_again, expired_ms = tiny_append_ms([fresh, long], tiny)
    return "\n".join(
        [
            "A one-row append (`floe load`, process start included; median of 15, alternating with a fresh table):",
            "",
            "| table | tiny append | fresh table, same rounds | ratio |",
            "|---|---:|---:|---:|",
            f"| after {loads:,} loads | {long_ms:.1f} ms | {fresh_ms:.1f} ms | {long_ms / fresh_ms:.2f}x |",
            f"| after {loads:,} loads, then `floe expire --older-than 0s` ({wall:.2f} s, {rss / 2**20:.0f} MiB) | {expired_ms:.1f} ms | {fresh_again:.1f} ms | {expired_ms / fresh_again:.2f}x |",
        ]
    )


def main():
    global FLOE
    ap = argparse.ArgumentParser()
    ap.add_argument("--appends", type=int, default=1000)
    ap.add_argument("--loads", type=int, default=2000)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--record", type=Path)
    args = ap.parse_args()
    FLOE, _ = release_binaries(build=not args.no_build)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "c").mkdir()
        (work / "e").mkdir()
        compact = bench_compact(args.appends, work / "c")
        print(compact, file=sys.stderr)
        expire = bench_expire(args.loads, work / "e")
    body = "\n".join(
        [
            "## Maintenance: compact and expire (bench/maintenance.py)",
            "",
            f"`.venv/bin/python bench/maintenance.py --appends {args.appends} --loads {args.loads}` ({machine_facts()}), release build.",
            "",
            "### compact",
            "",
            compact,
            "",
            "### expire",
            "",
            expire,
        ]
    )
    print(record_section(args.record, "maintenance", body))


FLOE = None

if __name__ == "__main__":
    main()
