#!/usr/bin/env python3
"""The rewrite path against its 2-core floor, on dlt-shaped inputs.

    .venv/bin/python bench/rewrite.py --rows 4000000 --scale 10 --repeat 3 --record docs/benchmarks.md

Inputs: what dlt writes and most real loads therefore take through the rewrite path: snappy
Parquet, 10,000 rows per file, 5,000-row row groups (`floe-bench gen --compression snappy`,
the 20-column dlt-like rows), at --rows and --scale x --rows.

Contenders, alternating within each repetition, median of --repeat:
- floe load: `floe load` into a fresh embedded warehouse (snappy inputs are decoded and
  re-encoded with zstd(1): the rewrite path);
- arrow-rs rewrite, 2 cores: `floe-bench rewrite --threads 2`, a reader thread decoding and two
  encoder threads encoding the columns of each row group, same codec, dictionary and
  row-group limits, no Iceberg (the floor #13 names);
- arrow-rs rewrite, 1 thread: `floe-bench rewrite`, decode and encode on one thread.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from memory import machine_facts, measure_rusage, mib, record_section, release_binaries  # noqa: E402

ROWS_PER_FILE = 10_000
ROWS_PER_GROUP = 5_000


def dataset(workdir: Path, bench_bin: Path, rows: int) -> Path:
    data = workdir / f"dlt-{rows}"
    marker = data / ".complete"
    if not marker.exists():
        shutil.rmtree(data, ignore_errors=True)
        files = max(1, rows // ROWS_PER_FILE)
        print(f"generating {rows:,} rows in {files} snappy files ...", file=sys.stderr)
        subprocess.run([bench_bin, "gen", "--out", data, "--rows", str(rows), "--files", str(files),
                        "--batch", str(ROWS_PER_GROUP), "--compression", "snappy"], check=True)
        marker.touch()
    return data


def inputs(data: Path) -> list[Path]:
    return sorted(data.glob("*.parquet"))


def contenders(floe: Path, bench_bin: Path, data: Path, rows: int, out: Path, before: Path | None):
    def floe_load(binary):
        def run():
            wh = out / "warehouse"
            shutil.rmtree(wh, ignore_errors=True)
            result = measure_rusage([binary, "load", "bench.events", data, "--warehouse", wh, "--json", "--no-progress"])
            summary = json.loads(result[3])
            assert summary["rows_written"] == rows, summary
            assert summary["rows_copied"] == 0, summary
            shutil.rmtree(wh, ignore_errors=True)
            return result[:3]
        return run

    def rewrite(threads):
        def run():
            target = out / f"rewrite-{threads}"
            shutil.rmtree(target, ignore_errors=True)
            result = measure_rusage([bench_bin, "rewrite", "--threads", str(threads), "--out", target, *inputs(data)])
            shutil.rmtree(target, ignore_errors=True)
            return result[:3]
        return run

    runs = {"floe load": floe_load(floe)}
    if before:
        runs["floe load, build before"] = floe_load(before)
    runs["arrow-rs rewrite, 2 cores"] = rewrite(2)
    runs["arrow-rs rewrite, 1 thread"] = rewrite(1)
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=REPO / "bench" / "out" / "rewrite")
    ap.add_argument("--before", type=Path, help="another floe binary to run beside this one (e.g. the parent commit's)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--record", type=Path)
    args = ap.parse_args()
    floe, bench_bin = release_binaries(not args.no_build)
    lines = [
        f"Command: `.venv/bin/python bench/rewrite.py --rows {args.rows} --scale {args.scale} --repeat {args.repeat}"
        + (" --before <floe of the parent commit>" if args.before else "") + "`  ",
        f"Machine: {machine_facts()}",
        "",
        "| rows | input MB | contender | wall (s) | CPU (s) | peak RSS (MiB) | wall vs 2-core rewrite |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    summary = []
    peaks = {}
    for rows in (args.rows, args.rows * args.scale):
        data = dataset(args.workdir, bench_bin, rows)
        size = sum(p.stat().st_size for p in inputs(data)) / 1e6
        runs = {name: [] for name in contenders(floe, bench_bin, data, rows, args.workdir, args.before)}
        for _ in range(args.repeat):
            for name, run in contenders(floe, bench_bin, data, rows, args.workdir, args.before).items():
                runs[name].append(run())
        med = {name: tuple(statistics.median(x[i] for x in r) for i in range(3)) for name, r in runs.items()}
        floor = med["arrow-rs rewrite, 2 cores"][0]
        for name, (wall, cpu, rss) in med.items():
            lines.append(f"| {rows:,} | {size:,.0f} | {name} | {wall:.2f} | {cpu:.2f} | {mib(rss):.0f} | {wall / floor:.2f}x |")
        peaks[rows] = med["floe load"][2]
        summary.append(f"- {rows:,} rows: floe load wall / 2-core rewrite = **{med['floe load'][0] / floor:.2f}x** "
                       f"(target <= 1.15x), peak RSS {mib(med['floe load'][2]):.0f} MiB (target <= 100 MB)")
        print("\n".join(lines[-len(med):]), file=sys.stderr)
    big = args.rows * args.scale
    summary.append(f"- floe peak RSS {args.scale}x / 1x = **{peaks[big] / peaks[args.rows]:.2f}** (target <= 1.10)")
    print(record_section(args.record, "rewrite-floor", "\n".join(lines + [""] + summary)))


if __name__ == "__main__":
    main()
