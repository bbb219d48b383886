#!/usr/bin/env python3
"""Merge memory against the number of files in the table: an upsert of a few keys into a
table of 1,000 and of 100,000 small data files (and position deletes on some of them), peak RSS
of the merge alone; then an upsert of keys spread over the whole table.

    .venv/bin/python bench/merge_files.py --files 1000 100000 --record docs/benchmarks.md

The table: `--files` partitions (identity on `part`), 10 rows each, one data file per
partition, written by one floe load; then a merge-on-read upsert touching one row in every
tenth partition, so a tenth of the files carry position deletes. Measured: an upsert of 10
keys that all live in partition 0 (the merge reads the manifests and delete files of the whole
table, keeps only the files that may hold a load key); then `floe match` of one key in every
tenth file (the merge's matching alone, read only: with keys spread over the whole range and no
partition values to prune by, every file's keys are compared; the matched rows go to a Parquet
file) and the upsert of those keys (their partition values leave a tenth of the table's files
as candidates, held while the merge scans their keys). The spread match and upsert sort every
candidate file's keys within the merge's budget (a quarter of --memory-limit per sort, 256 MiB
by default), so their peak follows the table's key count until that budget fills; both run
again with `--memory-limit 64MiB` (--limit) to show that the limit, not the file count, bounds
them.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from memory import machine_facts, measure_rusage, mib, record_section, release_binaries  # noqa: E402


GENERATE = """
import sys
import pyarrow as pa, pyarrow.parquet as pq
files, work = int(sys.argv[1]), sys.argv[2]
n = files * 10
pq.write_table(pa.table({"id": pa.array(range(n), pa.int64()), "part": pa.array([i // 10 for i in range(n)], pa.int64()),
                         "v": pa.array([f"value {i}" for i in range(n)])}), f"{work}/base.parquet")
ids = list(range(5, n, 100))
pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "part": pa.array([i // 10 for i in ids], pa.int64()),
                         "v": pa.array(["changed"] * len(ids))}), f"{work}/mor.parquet")
pq.write_table(pa.table({"id": pa.array(range(10), pa.int64()), "part": pa.array([0] * 10, pa.int64()),
                         "v": pa.array(["new"] * 10)}), f"{work}/upsert.parquet")
spread = list(range(3, n, 100))
pq.write_table(pa.table({"id": pa.array(spread, pa.int64()), "part": pa.array([i // 10 for i in spread], pa.int64()),
                         "v": pa.array(["spread"] * len(spread))}), f"{work}/spread.parquet")
print(len(ids))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, nargs="+", default=[1_000, 100_000])
    ap.add_argument("--workdir", type=Path, default=REPO / "bench" / "out" / "merge-files")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--record", type=Path)
    ap.add_argument("--limit", default="64MiB", help="the --memory-limit of the spread match and upsert's second runs")
    args = ap.parse_args()
    floe, _ = release_binaries(not args.no_build)
    floe = Path(os.environ.get("FLOE_BIN", floe))
    lines = [
        f"Command: `.venv/bin/python bench/merge_files.py --files {' '.join(map(str, args.files))}`  ",
        f"Machine: {machine_facts()}",
        "",
        "| table data files | files with deletes | upsert of 10 keys: wall (s) | peak RSS (MiB) "
        "| keys in every 10th file | match: wall (s) | peak RSS (MiB) | upsert: wall (s) | peak RSS (MiB) "
        f"| match at {args.limit}: wall (s) | peak RSS (MiB) | upsert at {args.limit}: wall (s) | peak RSS (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rss, match_rss, limited_rss = {}, {}, {}
    for files in args.files:
        work = args.workdir / str(files)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        wh = work / "wh"
        # In a child: a child's peak RSS (wait4) starts from this process's size at the fork.
        deletes = int(subprocess.run([sys.executable, "-c", GENERATE, str(files), work], check=True,
                                     capture_output=True, text=True).stdout)
        run = lambda *a: subprocess.run([floe, *map(str, a), "--warehouse", wh, "--json", "--no-progress"],
                                        check=True, capture_output=True, text=True)
        print(f"{files:,} files: writing the table ...", file=sys.stderr)
        run("load", "b.t", work / "base.parquet", "--partition-by", "identity(part)", "--max-open-files", "64")
        run("load", "b.t", work / "mor.parquet", "--mode", "merge", "--key", "id", "--merge-mode", "merge-on-read")
        wall, _, peak, out = measure_rusage([floe, "load", "b.t", work / "upsert.parquet", "--mode", "merge", "--key", "id",
                                             "--warehouse", wh, "--json", "--no-progress"])
        summary = json.loads(out)
        assert summary["rows_updated"] == 10, summary
        rss[files] = peak

        def spread(*limit):
            match_wall, _, match_peak, out = measure_rusage([floe, "match", "b.t", work / "spread.parquet", "--key", "id",
                                                             "--columns", "id,v", "-o", work / "matched.parquet",
                                                             "--warehouse", wh, "--json", *limit])
            assert json.loads(out)["rows"] == files // 10, out
            upsert_wall, _, upsert_peak, out = measure_rusage([floe, "load", "b.t", work / "spread.parquet", "--mode",
                                                               "merge", "--key", "id", "--warehouse", wh, "--json",
                                                               "--no-progress", *limit])
            assert json.loads(out)["rows_updated"] == files // 10, out
            return f"{match_wall:.2f} | {mib(match_peak):.0f} | {upsert_wall:.2f} | {mib(upsert_peak):.0f}", match_peak

        default, match_rss[files] = spread()
        # The second upsert updates the same keys, now in the files the first one rewrote.
        limited, limited_rss[files] = spread("--memory-limit", args.limit)
        lines.append(f"| {files:,} | {deletes:,} | {wall:.2f} | {mib(peak):.0f} | {files // 10:,} | {default} "
                     f"| {limited} |")
        shutil.rmtree(work, ignore_errors=True)
    if len(args.files) >= 2:
        small, large = args.files[0], args.files[-1]
        lines += ["", f"Peak RSS at {large:,} files / at {small:,} files: upsert of 10 keys "
                      f"{rss[large] / rss[small]:.2f}, match of keys in every 10th file "
                      f"{match_rss[large] / match_rss[small]:.2f} (at {args.limit}: "
                      f"{limited_rss[large] / limited_rss[small]:.2f})"]
    print(record_section(args.record, "merge-files", "\n".join(lines)))


if __name__ == "__main__":
    main()
