#!/usr/bin/env python3
"""floe beside the alternatives, on the same data in the same run.

    python3 bench/run.py                                   # everything, ~15 min on 2 cores
    python3 bench/run.py --scenarios append history --record docs/benchmarks.md

Data: deterministic dlt-like rows from `floe-bench gen` (20 columns: int64 key, timestamptz,
low-cardinality strings, decimal(10,3), ~100-byte strings, floats, bools, nullable columns),
1M rows per file. Every contender gets a fresh SQLite-catalog warehouse; contenders alternate
within each repetition (A B C A B C ...) and the median of --repeat runs is reported, with the
process's wall time, CPU time (user + system) and peak RSS.

Contenders:
- floe (release build), `floe load`: these inputs are zstd Parquet with the table's types, so
  floe copies their column chunks byte for byte (splice, see crates/floe/src/write/splice.rs);
- floe --rewrite: the same load decoding and encoding every row (what any other input takes);
- bare rewrite: `floe-bench rewrite`, arrow-rs decode + zstd(1) encode with floe's row-group
  settings and no Iceberg: the floor for a loader that re-encodes every row;
- pyiceberg whole-table: read every file into one Arrow table, `table.append` (or `overwrite`);
- pyiceberg streamed: `txn.append` per 10k-row batch inside one transaction (what a pipeline
  that cannot hold the load in memory does with pyiceberg), at --streamed-batches batches.

Scenarios:
- append: at --rows and --scale x --rows (memory flatness, linear time); pyiceberg
  whole-table runs at 1x only (its memory grows with the data);
- streamed: floe, pyiceberg streamed and pyiceberg whole-table on the same --streamed-batches x
  10k rows (4M rows by default, the size of the reference figures);
- replace: replace a table's contents with the 1x data;
- s3: floe's 1x and 10x appends into a REST catalog over S3 (SeaweedFS, as in the tests);
- history: the cost of appending one small file to a table with no history and with --history
  earlier snapshots (floe must not get slower as history grows).
Upsert and many-partition loads have their own scripts (bench/merge.py, bench/memory.py).
pyiceberg comes from the test venv (.venv, pinned in tests/interop/requirements.txt).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from memory import dataset, machine_facts, measure_rusage, mib, record_section, release_binaries  # noqa: E402

PY = REPO / ".venv" / "bin" / "python"

PYICEBERG = r"""
import glob, sys
import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog

mode, wh, data, batches = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cat = SqlCatalog("default", uri=f"sqlite:///{wh}/catalog.db", warehouse=f"file://{wh}")
cat.create_namespace_if_not_exists("bench")
files = sorted(glob.glob(f"{data}/*.parquet"))
schema = pq.read_schema(files[0])
table = cat.create_table_if_not_exists("bench.events", schema=schema)
if mode == "whole":
    table.append(pa.concat_tables([pq.read_table(f) for f in files]))
elif mode == "overwrite":
    table.overwrite(pa.concat_tables([pq.read_table(f) for f in files]))
elif mode == "streamed":
    n = 0
    with table.transaction() as txn:
        for f in files:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=10_000):
                txn.append(pa.Table.from_batches([batch]))
                n += 1
                if n == batches:
                    break
            if n == batches:
                break
table = cat.load_table("bench.events")
print(len(table.snapshots()))
"""


def floe_load(floe, wh, data, *extra):
    wall, cpu, rss, out = measure_rusage([floe, "load", "bench.events", data, "--warehouse", wh, "--json", "--no-progress", *extra])
    return wall, cpu, rss, json.loads(out)


def run_alternating(contenders, repeat):
    """contenders: name -> callable returning (wall, cpu, rss, note). A B A B, median of each."""
    samples = {name: [] for name in contenders}
    notes = {}
    for _ in range(repeat):
        for name, run in contenders.items():
            wall, cpu, rss, note = run()
            samples[name].append((wall, cpu, rss))
            notes[name] = note
    return {
        name: {
            "wall": statistics.median(s[0] for s in runs),
            "cpu": statistics.median(s[1] for s in runs),
            "rss": statistics.median(s[2] for s in runs),
            "note": notes[name],
        }
        for name, runs in samples.items()
    }


def table_lines(title, results):
    lines = [f"**{title}**", "", "| contender | wall (s) | CPU (s) | peak RSS (MiB) | notes |", "|---|---:|---:|---:|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['wall']:.2f} | {r['cpu']:.2f} | {mib(r['rss']):.0f} | {r['note']} |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the 1x dataset")
    ap.add_argument("--scale", type=int, default=10, help="size of the large append dataset, in multiples of --rows")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--streamed-batches", type=int, default=400)
    ap.add_argument("--history", type=int, default=1000)
    ap.add_argument("--scenarios", nargs="+", default=["append", "streamed", "replace", "history"],
                    choices=["append", "streamed", "replace", "history", "s3"])
    ap.add_argument("--workdir", type=Path, default=REPO / "bench" / "out")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--record", type=Path, help="write the results section into this markdown file")
    args = ap.parse_args()

    floe, bench = release_binaries(not args.no_build)
    if not PY.exists():
        sys.exit("pyiceberg is needed: run scripts/test.sh once to create .venv")
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    wh = work / "wh-run"

    def fresh():
        shutil.rmtree(wh, ignore_errors=True)
        wh.mkdir(parents=True)
        return wh

    def contender_floe(data, *extra, prepare=None):
        def run():
            fresh()
            if prepare:
                prepare()
            wall, cpu, rss, s = floe_load(floe, wh, data, *extra)
            copied = f", {s['rows_copied']:,} rows copied" if s.get("rows_copied") else ""
            return wall, cpu, rss, f"{s['rows_written']:,} rows, {s['files_added']} files, {s['operation']}{copied}"
        return run

    def contender_rewrite(data):
        def run():
            out = work / "rewrite-out"
            shutil.rmtree(out, ignore_errors=True)
            wall, cpu, rss, _ = measure_rusage([bench, "rewrite", "--out", out, *sorted(data.glob("*.parquet"))])
            shutil.rmtree(out, ignore_errors=True)
            return wall, cpu, rss, "no Iceberg"
        return run

    def contender_pyiceberg(mode, data, batches=0, prepare=None):
        def run():
            fresh()
            if prepare:
                prepare()
            wall, cpu, rss, out = measure_rusage([PY, "-c", PYICEBERG, mode, wh, data, str(batches)])
            snapshots = out.split()[-1]
            return wall, cpu, rss, f"{snapshots} snapshots"
        return run

    sections = []
    ratios = []
    small = dataset(work, bench, args.rows)

    if "append" in args.scenarios:
        large = dataset(work, bench, args.rows * args.scale)
        # floe copies the column chunks of these zstd inputs (splice); `--rewrite` makes it
        # decode and encode every row, like the bare rewrite and pyiceberg do.
        r1 = run_alternating({
            "floe": contender_floe(small),
            "floe --rewrite": contender_floe(small, "--rewrite"),
            "bare rewrite": contender_rewrite(small),
            "pyiceberg whole-table append": contender_pyiceberg("whole", small),
        }, args.repeat)
        r10 = run_alternating({
            "floe": contender_floe(large),
            "floe --rewrite": contender_floe(large, "--rewrite"),
            "bare rewrite": contender_rewrite(large),
        }, args.repeat)
        sections += table_lines(f"append, {args.rows:,} rows (1x)", r1) + [""]
        sections += table_lines(f"append, {args.rows * args.scale:,} rows ({args.scale}x)", r10) + [""]
        for name in ("floe", "floe --rewrite"):
            f1, f10 = r1[name], r10[name]
            ratios += [
                f"`{name}` append throughput vs bare rewrite: **{r1['bare rewrite']['wall'] / f1['wall']:.2f}x** (1x), "
                f"**{r10['bare rewrite']['wall'] / f10['wall']:.2f}x** ({args.scale}x); target >= 1.0x",
                f"`{name}` append vs pyiceberg whole-table: **{r1['pyiceberg whole-table append']['wall'] / f1['wall']:.1f}x** faster at "
                f"**{f1['rss'] / r1['pyiceberg whole-table append']['rss']:.2f}** of its RSS; target >= 2x at <= 0.10",
                f"`{name}` peak RSS: {mib(f1['rss']):.0f} MiB (1x), {mib(f10['rss']):.0f} MiB ({args.scale}x), "
                f"ratio **{f10['rss'] / f1['rss']:.2f}**; targets <= 150 MB and <= 1.15",
                f"`{name}` wall {args.scale}x / 1x: **{f10['wall'] / f1['wall']:.1f}** (linear = {args.scale})",
            ]

    if "streamed" in args.scenarios:
        rows = args.streamed_batches * 10_000
        data = dataset(work, bench, rows)
        # pyiceberg streamed takes minutes: one run of it; the others get --repeat runs.
        streamed = run_alternating({
            f"pyiceberg txn.append x {args.streamed_batches}": contender_pyiceberg("streamed", data, args.streamed_batches),
        }, 1)
        r = run_alternating({
            "floe": contender_floe(data),
            "floe --rewrite": contender_floe(data, "--rewrite"),
            "pyiceberg whole-table append": contender_pyiceberg("whole", data),
        }, args.repeat)
        r.update(streamed)
        sections += table_lines(f"streamed append, {args.streamed_batches} batches of 10k rows = {rows:,} rows "
                                f"(pyiceberg streamed: one run; others: median of {args.repeat})", r) + [""]
        whole = r["pyiceberg whole-table append"]
        for name in ("floe", "floe --rewrite"):
            ratios.append(f"`{name}` vs pyiceberg streamed ({args.streamed_batches} batches): "
                          f"**{r[f'pyiceberg txn.append x {args.streamed_batches}']['wall'] / r[name]['wall']:.0f}x**; target >= 20x")
            ratios.append(f"`{name}` vs pyiceberg whole-table append at {rows:,} rows: **{whole['wall'] / r[name]['wall']:.1f}x** faster "
                          f"at **{r[name]['rss'] / whole['rss']:.2f}** of its RSS; target >= 2x at <= 0.10")

    if "replace" in args.scenarios:
        def seed_floe():
            floe_load(floe, wh, small)
        r = run_alternating({
            "floe --mode replace": contender_floe(small, "--mode", "replace", prepare=seed_floe),
            "floe --mode replace --rewrite": contender_floe(small, "--mode", "replace", "--rewrite", prepare=seed_floe),
            "pyiceberg overwrite": contender_pyiceberg("overwrite", small, prepare=seed_floe),
        }, args.repeat)
        sections += table_lines(f"replace a {args.rows:,}-row table with {args.rows:,} rows", r) + [""]
        for name in ("floe --mode replace", "floe --mode replace --rewrite"):
            ratios.append(f"`{name}` vs pyiceberg overwrite: **{r['pyiceberg overwrite']['wall'] / r[name]['wall']:.1f}x**, "
                          f"floe RSS {mib(r[name]['rss']):.0f} MiB")

    if "s3" in args.scenarios:
        # The same 1x and 10x appends into a REST catalog over S3 (SeaweedFS on 127.0.0.1): the
        # multipart uploads must keep memory as flat as local files do.
        sys.path.insert(0, str(REPO / "tests" / "interop"))
        os.environ.setdefault("WEED_BIN", str(REPO / ".venv" / "bin" / "weed"))
        from seaweed import SeaweedServer

        large = dataset(work, bench, args.rows * args.scale)
        results = {}
        with SeaweedServer() as server:
            env = dict(os.environ)
            env["PYICEBERG_HOME"] = str(work)
            for key, value in server.catalog_props().items():
                env["PYICEBERG_CATALOG__LAKE__" + key.upper().replace(".", "__").replace("-", "_")] = value
            for label, data in ((f"1x ({args.rows:,} rows)", small), (f"{args.scale}x ({args.rows * args.scale:,} rows)", large)):
                runs = []
                for rep in range(args.repeat):
                    name = f"bench.s3_{len(results)}_{rep}"
                    wall, cpu, rss, out = measure_rusage(
                        [floe, "load", name, data, "--catalog", "lake", "--json", "--no-progress"], env=env)
                    runs.append((wall, cpu, rss))
                results[label] = {k: statistics.median(x[i] for x in runs) for i, k in enumerate(("wall", "cpu", "rss"))}
        lines = ["**append into a REST catalog over S3** (SeaweedFS `weed mini` on 127.0.0.1)", "",
                 "| input | wall (s) | CPU (s) | peak RSS (MiB) |", "|---|---:|---:|---:|"]
        for label, r in results.items():
            lines.append(f"| {label} | {r['wall']:.2f} | {r['cpu']:.2f} | {mib(r['rss']):.0f} |")
        sections += lines + [""]
        first, last = list(results.values())
        ratios.append(f"S3 append peak RSS {args.scale}x / 1x: **{last['rss'] / first['rss']:.2f}** "
                      f"({mib(first['rss']):.0f} vs {mib(last['rss']):.0f} MiB)")

    if "history" in args.scenarios:
        tiny = work / "tiny"
        if not (tiny / ".complete").exists():
            shutil.rmtree(tiny, ignore_errors=True)
            subprocess.run([bench, "gen", "--out", tiny, "--rows", "1000", "--files", "1"], check=True)
            (tiny / ".complete").write_text("ok")
        hist = work / "wh-history"
        shutil.rmtree(hist, ignore_errors=True)
        samples = {}
        done = 0
        for depth in (1, args.history):
            while done < depth:
                subprocess.run([floe, "load", "bench.events", tiny, "--warehouse", hist, "--no-progress"], check=True, capture_output=True)
                done += 1
            runs = []
            for _ in range(max(5, args.repeat)):
                wall, cpu, rss, _ = floe_load(floe, hist, tiny)
                runs.append((wall, cpu, rss))
                done += 1
            samples[depth] = {k: statistics.median(x[i] for x in runs) for i, k in enumerate(("wall", "cpu", "rss"))}
        shutil.rmtree(hist, ignore_errors=True)
        lines = ["**commit cost with a long history** (append 1,000 rows; median of 5)", "",
                 "| earlier snapshots | wall (s) | CPU (s) | peak RSS (MiB) |", "|---:|---:|---:|---:|"]
        for depth, s in samples.items():
            lines.append(f"| {depth:,} | {s['wall']:.3f} | {s['cpu']:.3f} | {mib(s['rss']):.0f} |")
        sections += lines + [""]
        ratios.append(f"append of one small file, {args.history:,} vs 1 earlier snapshots: wall ratio "
                      f"**{samples[args.history]['wall'] / samples[1]['wall']:.2f}** (1.0 = history costs nothing)")

    cmd = "python3 bench/run.py " + " ".join(
        [f"--rows {args.rows}", f"--scale {args.scale}", f"--repeat {args.repeat}",
         f"--streamed-batches {args.streamed_batches}", f"--history {args.history}", "--scenarios", *args.scenarios])
    pyiceberg_version = subprocess.run([PY, "-c", "import pyiceberg; print(pyiceberg.__version__)"],
                                       capture_output=True, text=True).stdout.strip()
    facts = f"{machine_facts()}, pyiceberg {pyiceberg_version}"
    body = "\n".join([f"Command: `{cmd}`  ", f"Machine: {facts}", ""] + sections + ["Ratios:", ""] + [f"- {r}" for r in ratios])
    print(record_section(args.record, "harness", body))


if __name__ == "__main__":
    main()
