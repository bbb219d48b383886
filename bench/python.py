#!/usr/bin/env python3
"""floe in-process from Python: a generated pyarrow RecordBatchReader loaded by `floe.load`,
beside pyiceberg's `Table.append(RecordBatchReader)` on the same stream and the `floe` CLI on
the same rows written as Parquet first, in one run.

    .venv/bin/python bench/python.py --rows 1000000 10000000 --record docs/benchmarks.md

Builds a release wheel of crates/floe-py (maturin, the workspace target/) and the release CLI
unless --no-build, and installs the wheel into bench/out/pyfloe (not into the venv, which
keeps the test suite's debug build). Each contender is its own child process, so peak RSS is
that load's alone (interpreter and pyarrow included); contenders alternate, medians of
--repeat runs. The stream: 64Ki-row batches of a fixed template (int64 id, timestamptz, int64
user id, double amount, a low-cardinality and a free-text string), id and time shifted per
batch, generated while the load runs. The CLI's Parquet is that stream written by pyarrow
with snappy and one row group per batch, the shape of dlt's files, so the CLI takes the
rewrite path (decode + encode), as real files do.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from memory import machine_facts, measure_rusage, mib, record_section, release_binaries  # noqa: E402

STREAM = textwrap.dedent('''
    import pyarrow as pa
    import pyarrow.compute as pc

    BATCH = 65536

    def template():
        n = BATCH
        ids = pa.array(range(n), pa.int64())
        ts = pa.array([1_767_225_600_000_000 + i * 1_000 for i in range(n)], pa.int64())
        users = pa.array([(i * 7919) % 100_000 for i in range(n)], pa.int64())
        amount = pa.array([(i % 10_000) / 100 for i in range(n)], pa.float64())
        kinds = ["click", "view", "buy", "scroll", "share", "like", "open", "close"]
        kind = pa.array([kinds[i % 8] for i in range(n)], pa.string())
        note = pa.array([f"session {i % 977} page /p/{(i * 31) % 5003}" for i in range(n)], pa.string())
        return ids, ts, users, amount, kind, note

    SCHEMA = pa.schema([("id", pa.int64()), ("ts", pa.timestamp("us", tz="UTC")), ("user_id", pa.int64()),
                        ("amount", pa.float64()), ("kind", pa.string()), ("note", pa.string())])

    def reader(rows):
        ids, ts, users, amount, kind, note = template()
        def batches():
            done = 0
            while done < rows:
                n = min(BATCH, rows - done)
                shift = pa.scalar(done, pa.int64())
                cols = [pc.add(ids, shift), pc.add(ts, pc.multiply(shift, 1_000)).cast(SCHEMA.field("ts").type),
                        users, amount, kind, note]
                yield pa.RecordBatch.from_arrays([c.slice(0, n) for c in cols], schema=SCHEMA)
                done += n
        return pa.RecordBatchReader.from_batches(SCHEMA, batches())
''')

ALONE = STREAM + textwrap.dedent('''
    import json, sys
    rows = int(sys.argv[1])
    print(json.dumps({"rows": sum(b.num_rows for b in reader(rows))}))
''')

FLOE = STREAM + textwrap.dedent('''
    import json, sys
    import floe
    rows, wh = int(sys.argv[1]), sys.argv[2]
    summary = floe.load("bench.events", reader(rows), warehouse=wh)
    print(json.dumps({"rows": summary.rows_written}))
''')

PYICEBERG = STREAM + textwrap.dedent('''
    import json, sys
    from pyiceberg.catalog.sql import SqlCatalog
    rows, wh = int(sys.argv[1]), sys.argv[2]
    catalog = SqlCatalog("bench", uri=f"sqlite:///{wh}/catalog.db", warehouse=f"file://{wh}")
    catalog.create_namespace("bench")
    table = catalog.create_table("bench.events", schema=SCHEMA)
    table.append(reader(rows))
    print(json.dumps({"rows": int(table.refresh().current_snapshot().summary["total-records"])}))
''')

WRITE_PARQUET = STREAM + textwrap.dedent('''
    import sys
    import pyarrow.parquet as pq
    rows, out = int(sys.argv[1]), sys.argv[2]
    with pq.ParquetWriter(out, SCHEMA, compression="snappy") as w:
        for b in reader(rows):
            w.write_batch(b, row_group_size=BATCH)
''')


def build(work: Path, python: str) -> Path:
    """A release wheel of floe-py installed into work/pyfloe; returns that directory."""
    wheels = work / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    maturin = Path(python).parent / "maturin"
    subprocess.run([maturin, "build", "--release", "-m", REPO / "crates/floe-py/Cargo.toml", "-o", wheels],
                   cwd=REPO, check=True)
    target = work / "pyfloe"
    shutil.rmtree(target, ignore_errors=True)
    wheel = next(wheels.glob("floe-*.whl"))
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target, wheel], check=True)
    return target


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=REPO / "bench" / "out")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--record", type=Path)
    args = ap.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    floe_cli, _ = release_binaries(not args.no_build)
    pyfloe = work / "pyfloe" if args.no_build else build(work, python)
    env = dict(os.environ, PYTHONPATH=str(pyfloe))
    wh = work / "wh-python"

    def fresh():
        shutil.rmtree(wh, ignore_errors=True)
        wh.mkdir(parents=True)

    def script(code, rows):
        def run():
            fresh()
            wall, cpu, rss, out = measure_rusage([python, "-c", code, str(rows), wh], env=env)
            assert json.loads(out)["rows"] == rows, out
            return wall, cpu, rss
        return run

    def cli(parquet, rows):
        def run():
            fresh()
            wall, cpu, rss, out = measure_rusage(
                [floe_cli, "load", "bench.events", parquet, "--warehouse", wh, "--json", "--no-progress"])
            assert json.loads(out)["rows_written"] == rows, out
            return wall, cpu, rss
        return run

    lines = [
        f"Command: `.venv/bin/python bench/python.py --rows {' '.join(map(str, args.rows))} --repeat {args.repeat}`  ",
        f"Machine: {machine_facts()}",
        "",
        "| rows | contender | wall (s) | CPU (s) | rows/s | peak RSS (MiB) | wall vs floe CLI |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    rss_of = {}
    for rows in args.rows:
        parquet = work / f"stream-{rows}.parquet"
        if not parquet.exists():
            subprocess.run([python, "-c", WRITE_PARQUET, str(rows), parquet], check=True)
        contenders = {
            "the stream alone, consumed without loading": script(ALONE, rows),
            "floe.load(RecordBatchReader)": script(FLOE, rows),
            "floe load (CLI, same rows as snappy Parquet)": cli(parquet, rows),
            "pyiceberg 0.12 Table.append(RecordBatchReader)": script(PYICEBERG, rows),
        }
        samples = {name: [] for name in contenders}
        for _ in range(args.repeat):
            for name, run in contenders.items():
                samples[name].append(run())
        med = {name: [statistics.median(s[i] for s in runs) for i in range(3)] for name, runs in samples.items()}
        base = med["floe load (CLI, same rows as snappy Parquet)"][0]
        for name, (wall, cpu, rss) in med.items():
            rss_of[(name, rows)] = rss
            lines.append(f"| {rows:,} | {name} | {wall:.2f} | {cpu:.2f} | {rows / wall:,.0f} | {mib(rss):.0f} "
                         f"| {wall / base:.2f}x |")
    if len(args.rows) >= 2:
        small, large = args.rows[0], args.rows[-1]
        lines.append("")
        for name in contenders:
            lines.append(f"- {name}: peak RSS at {large:,} / at {small:,} rows = "
                         f"{rss_of[(name, large)] / rss_of[(name, small)]:.2f}")
        share = {r: rss_of[("floe.load(RecordBatchReader)", r)] - rss_of[("the stream alone, consumed without loading", r)]
                 for r in (small, large)}
        lines.append(f"- floe's own share of floe.load's peak (minus the stream alone): {mib(share[small]):.0f} MiB at "
                     f"{small:,} rows, {mib(share[large]):.0f} MiB at {large:,} rows")
    shutil.rmtree(wh, ignore_errors=True)
    print(record_section(args.record, "python", "\n".join(lines)))


if __name__ == "__main__":
    main()
