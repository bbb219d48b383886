#!/usr/bin/env python3
"""Upsert benchmark: 10% updates + 10% inserts into a table of N rows, floe (copy-on-write and
merge-on-read) beside pyiceberg's `upsert` on the same data.

    python3 bench/merge.py                                   # 10M-row table, 2M-row load
    python3 bench/merge.py --rows 2000000 --record docs/benchmarks.md

Every contender gets a fresh warehouse holding the same base table (loaded by floe, not timed),
then runs the same upsert once; wall time, CPU time and peak RSS of the upsert process are
reported. floe runs with a --memory-limit far below the load's size, so its sorts spill: the
RSS column shows memory staying bounded. pyiceberg needs the test venv (scripts/test.sh).
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from memory import dataset, machine_facts, measure_rusage, mib, record_section, release_binaries  # noqa: E402

PYICEBERG_UPSERT = r"""
import sys, glob
import pyarrow.parquet as pq
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
wh, data = sys.argv[1], sys.argv[2]
cat = SqlCatalog("default", uri=f"sqlite:///{wh}/catalog.db", warehouse=f"file://{wh}")
table = cat.load_table("bench.events")
df = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(f"{data}/*.parquet"))])
df = df.cast(table.schema().as_arrow())
res = table.upsert(df, join_cols=["id"])
print(res.rows_updated, res.rows_inserted)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows in the base table")
    ap.add_argument("--memory-limit", default="64MiB")
    ap.add_argument("--workdir", type=Path, default=REPO / "bench" / "out")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--skip-pyiceberg", action="store_true")
    ap.add_argument("--pyiceberg-timeout", type=int, default=1800)
    ap.add_argument("--record", type=Path)
    args = ap.parse_args()
    floe, bench = release_binaries(not args.no_build)
    args.workdir.mkdir(parents=True, exist_ok=True)
    base = dataset(args.workdir, bench, args.rows)
    n_load = args.rows // 5
    load = args.workdir / f"upsert-{args.rows}"
    if not (load / ".complete").exists():
        shutil.rmtree(load, ignore_errors=True)
        # ids [0.9N, 1.1N): the first half updates the table's last 10%, the second half is new.
        subprocess.run([bench, "gen", "--out", load, "--rows", str(n_load), "--files", str(max(1, n_load // 1_000_000)),
                        "--first-id", str(args.rows - n_load // 2), "--seed", "99"], check=True)
        (load / ".complete").write_text("ok")

    def fresh_table():
        wh = args.workdir / "wh-merge"
        shutil.rmtree(wh, ignore_errors=True)
        subprocess.run([floe, "load", "bench.events", base, "--warehouse", wh, "--no-progress"], check=True, capture_output=True)
        return wh

    results = []
    # The load is zstd Parquet and every row wins (no duplicates, no deletes), so floe copies
    # its column chunks; `--rewrite` makes it decode and encode the winners instead.
    for mode, extra in [("copy-on-write", []), ("merge-on-read", []), ("copy-on-write", ["--rewrite"]),
                        ("merge-on-read", ["--rewrite"])]:
        wh = fresh_table()
        wall, cpu, rss, out = measure_rusage([floe, "load", "bench.events", load, "--warehouse", wh, "--mode", "merge",
                                             "--key", "id", "--merge-mode", mode, "--memory-limit", args.memory_limit,
                                             "--json", "--no-progress", *extra])
        s = json.loads(out)
        assert (s["rows_updated"], s["rows_inserted"]) == (n_load // 2, n_load - n_load // 2), s
        label = f"floe merge ({mode}{', --rewrite' if extra else ''})"
        results.append((label, wall, cpu, rss, f"spill runs {s['spill_runs']}, files rewritten {s['files_rewritten']}, "
                                               f"delete files {s['delete_files_added']}, rows copied {s.get('rows_copied', 0):,}"))
    py = REPO / ".venv" / "bin" / "python"
    if not args.skip_pyiceberg and py.exists():
        wh = fresh_table()
        try:
            start = time.perf_counter()
            wall, cpu, rss, out = measure_rusage([py, "-c", PYICEBERG_UPSERT, wh, load])
            results.append(("pyiceberg upsert (one call)", wall, cpu, rss, f"updated/inserted: {out.strip()}"))
        except SystemExit as e:
            results.append(("pyiceberg upsert (one call)", float("nan"), float("nan"), 0, f"failed: {str(e)[:200]}"))
    shutil.rmtree(args.workdir / "wh-merge", ignore_errors=True)

    lines = ["| contender | wall (s) | CPU (s) | peak RSS (MiB) | notes |", "|---|---:|---:|---:|---|"]
    for name, wall, cpu, rss, note in results:
        lines.append(f"| {name} | {wall:.1f} | {cpu:.1f} | {mib(rss):.0f} | {note} |")
    floe_runs = [r for r in results if r[0].startswith("floe")]
    for name, wall, _, rss, _ in results[len(floe_runs):]:
        if wall == wall:
            lines.append("")
            for label, fwall, _, frss, _ in floe_runs:
                lines.append(f"- {label} vs {name}: **{wall / fwall:.1f}x** faster; {name} peaked at "
                             f"{mib(rss) / max(1, mib(frss)):.1f}x its memory")
    cmd = f"python3 bench/merge.py --rows {args.rows} --memory-limit {args.memory_limit}"
    facts = machine_facts()
    body = (f"Command: `{cmd}`  \nMachine: {facts}  \n"
            f"Table: {args.rows:,} rows; load: {n_load:,} rows ({n_load // 2:,} updates, {n_load - n_load // 2:,} inserts)\n\n"
            + "\n".join(lines))
    print(record_section(args.record, "merge", body))


if __name__ == "__main__":
    main()
