#!/usr/bin/env python3
"""floe on Ray: a generated dataset loaded through `floe.ray.IcebergSink` with 2 write tasks at
a time, beside one `floe.load` process reading the same generated stream, and Ray's own
`Dataset.write_iceberg` (pyiceberg) with 2 write tasks, on this 2-core machine, in one run.
Two scenarios: an append of --rows rows into a new table, and an upsert of 10% of that many
rows (half updates of the newest ids, half new ids) into the appended table.

    .venv/bin/python bench/ray.py --rows 10000000 --record docs/benchmarks.md

Builds a release wheel of crates/floe-py unless --no-build (as bench/python.py does, into
bench/out/pyfloe; the Ray workers inherit its PYTHONPATH). Every contender is its own driver
process with its own `ray.init(num_cpus=2)`; the rows are generated inside the job (Ray:
`range` + `map_batches`, materialized in the object store before the timed write; single
process: the same batches from a generator, generated while the load runs), 64Ki rows a batch,
6 columns (as bench/python.py). Reported: wall time of the write (from the driver; Ray
start-up and generation excluded), the driver's peak RSS, the largest peak RSS of any Ray
worker process (VmHWM: it counts the object store's shared pages a worker maps, so also its
peak private memory, RssAnon sampled every 20 ms), and the table's snapshot count.
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
from python import build  # noqa: E402

COMMON = textwrap.dedent('''
    import json, os, resource, sys, time
    import pyarrow as pa
    import pyarrow.compute as pc

    BATCH = 65536
    KINDS = ["click", "view", "buy", "scroll", "share", "like", "open", "close"]
    SCHEMA = pa.schema([("id", pa.int64()), ("ts", pa.timestamp("us", tz="UTC")), ("user_id", pa.int64()),
                        ("amount", pa.float64()), ("kind", pa.string()), ("note", pa.string())])

    def make(ids):
        """The generated columns for an int64 array of ids."""
        ids = ids.cast(pa.int64())
        ts = pc.add(pc.multiply(ids, 1_000), 1_767_225_600_000_000).cast(SCHEMA.field("ts").type)
        users = pc.multiply(ids, 7919)
        users = pc.subtract(users, pc.multiply(pc.divide(users, 100_000), 100_000))
        mod = lambda a, n: pc.subtract(a, pc.multiply(pc.divide(a, n), n))
        amount = pc.divide(mod(ids, 10_000).cast(pa.float64()), 100.0)
        kind = pc.take(pa.array(KINDS), mod(ids, 8))
        note = pc.binary_join_element_wise("session ", mod(ids, 977).cast(pa.string()), " page /p/",
                                           mod(pc.multiply(ids, 31), 5003).cast(pa.string()), "")
        return pa.table([ids, ts, users, amount, kind, note], schema=SCHEMA)

    import threading

    def ray_workers():
        """(pid, /proc status lines) of every Ray worker process on this machine."""
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")[0]
                if cmd.startswith(b"ray::"):
                    yield pid, open(f"/proc/{pid}/status").read().splitlines()
            except OSError:
                pass

    def field(lines, name):
        return next((int(l.split()[1]) * 1024 for l in lines if l.startswith(name + ":")), 0)

    class Sampler:
        """Peak RssAnon (private memory) of the Ray workers, sampled every 20 ms."""

        def __init__(self):
            self.peak, self._stop = 0, threading.Event()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

        def _run(self):
            while not self._stop.wait(0.02):
                for _, lines in ray_workers():
                    self.peak = max(self.peak, field(lines, "RssAnon"))

        def stop(self):
            self._stop.set()
            self._thread.join()
            hwm = max((field(lines, "VmHWM") for _, lines in ray_workers()), default=0)
            return hwm, self.peak

    def report(rows, snapshots, wall, workers=(0, 0)):
        print(json.dumps({"rows": rows, "snapshots": snapshots, "wall": wall,
                          "driver_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                          "worker_rss": workers[0], "worker_private": workers[1]}))

    rows, wh, scenario = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    MIN_ROWS = int(sys.argv[4]) or None
    CHANGES = rows // 10  # the upsert: ids from rows - CHANGES / 2, half of them new

    def generated(first, n):
        """n generated rows from id `first`, materialized in Ray's object store."""
        import ray
        return ray.data.range(n, override_num_blocks=max(2, n // 500_000)).map_batches(
            lambda b: make(pc.add(b["id"], first)), batch_format="pyarrow", batch_size=BATCH).materialize()

    def timed(write):
        """Runs write() with the workers' memory sampled; (wall, (worker VmHWM, private peak))."""
        sampler = Sampler()
        t = time.perf_counter()
        write()
        wall = time.perf_counter() - t
        return wall, sampler.stop()

    def start_ray():
        import ray
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
''')

FLOE_SINK = COMMON + textwrap.dedent('''
    import ray, floe.ray
    from pyiceberg.catalog.sql import SqlCatalog
    start_ray()
    sink = lambda **kw: floe.ray.IcebergSink("bench.events", warehouse=wh, min_rows_per_write=MIN_ROWS, **kw)
    base = generated(0, rows)
    if scenario == "append":
        wall, workers = timed(lambda: base.write_datasink(sink(), concurrency=2))
    else:
        base.write_datasink(sink(), concurrency=2)
        changes = generated(rows - CHANGES // 2, CHANGES)
        wall, workers = timed(lambda: changes.write_datasink(sink(mode="merge", key="id"), concurrency=2))
    ray.shutdown()
    table = SqlCatalog("default", uri=f"sqlite:///{wh}/catalog.db", warehouse=f"file://{wh}").load_table("bench.events")
    report(int(table.current_snapshot().summary["total-records"]), len(table.snapshots()), wall, workers)
''')

RAY_ICEBERG = COMMON + textwrap.dedent('''
    import ray
    from ray.data import SaveMode
    from pyiceberg.catalog.sql import SqlCatalog
    os.makedirs(wh, exist_ok=True)
    props = {"uri": f"sqlite:///{wh}/catalog.db", "warehouse": f"file://{wh}"}
    catalog = SqlCatalog("default", **props)
    catalog.create_namespace("bench")
    catalog.create_table("bench.events", schema=SCHEMA)
    start_ray()
    kwargs = {"catalog_kwargs": {"name": "default", "type": "sql", **props}, "concurrency": 2}
    base = generated(0, rows)
    if scenario == "append":
        wall, workers = timed(lambda: base.write_iceberg("bench.events", **kwargs))
    else:
        base.write_iceberg("bench.events", **kwargs)
        changes = generated(rows - CHANGES // 2, CHANGES)
        wall, workers = timed(lambda: changes.write_iceberg(
            "bench.events", mode=SaveMode.UPSERT, upsert_kwargs={"join_cols": ["id"]}, **kwargs))
    ray.shutdown()
    table = catalog.load_table("bench.events")
    report(int(table.current_snapshot().summary["total-records"]), len(table.snapshots()), wall, workers)
''')

FLOE_PROCESS = COMMON + textwrap.dedent('''
    import floe
    def reader(first, n):
        def batches():
            for start in range(first, first + n, BATCH):
                yield from make(pa.array(range(start, min(first + n, start + BATCH)), pa.int64())).to_batches()
        return pa.RecordBatchReader.from_batches(SCHEMA, batches())
    if scenario == "append":
        t = time.perf_counter()
        summary = floe.load("bench.events", reader(0, rows), warehouse=wh)
    else:
        floe.load("bench.events", reader(0, rows), warehouse=wh)
        t = time.perf_counter()
        summary = floe.load("bench.events", reader(rows - CHANGES // 2, CHANGES), mode="merge", key="id", warehouse=wh)
    wall = time.perf_counter() - t
    from pyiceberg.catalog.sql import SqlCatalog
    table = SqlCatalog("default", uri=f"sqlite:///{wh}/catalog.db", warehouse=f"file://{wh}").load_table("bench.events")
    report(int(table.current_snapshot().summary["total-records"]), len(table.snapshots()), wall)
''')

CONTENDERS = {
    "floe.ray.IcebergSink": FLOE_SINK,
    "floe.ray.IcebergSink, min_rows_per_write": FLOE_SINK,
    "floe.load, one process": FLOE_PROCESS,
    "Ray write_iceberg (pyiceberg)": RAY_ICEBERG,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--min-rows-per-write", type=int, default=2_500_000,
                    help="the second floe sink contender's min_rows_per_write (the first takes Ray's default)")
    ap.add_argument("--scenarios", nargs="+", default=["append", "upsert"], choices=["append", "upsert"])
    ap.add_argument("--workdir", type=Path, default=REPO / "bench" / "out")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--record", type=Path)
    args = ap.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    if not args.no_build:
        release_binaries(True)
    pyfloe = work / "pyfloe" if args.no_build else build(work, python)
    env = dict(os.environ, PYTHONPATH=str(pyfloe), RAY_USAGE_STATS_ENABLED="0")
    wh = work / "wh-ray"
    changes = args.rows // 10
    lines = [
        f"Command: `.venv/bin/python bench/ray.py --rows {args.rows} --repeat {args.repeat} "
        f"--min-rows-per-write {args.min_rows_per_write}` (medians; 2 write tasks at a time)  ",
        f"Machine: {machine_facts()}; Ray {ray_version(python)}, pyiceberg {pyiceberg_version(python)}",
        "",
        "| scenario | contender | wall (s) | rows/s | driver peak RSS (MiB) | worker peak RSS (MiB) "
        "| worker peak private (MiB) | snapshots | wall vs floe sink |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in args.scenarios:
        written = args.rows if scenario == "append" else changes
        expected = args.rows if scenario == "append" else args.rows + changes // 2
        samples = {name: [] for name in CONTENDERS}
        for _ in range(args.repeat):
            for name, code in CONTENDERS.items():
                shutil.rmtree(wh, ignore_errors=True)
                min_rows = args.min_rows_per_write if name.endswith("min_rows_per_write") else 0
                cmd = [python, "-c", code, str(args.rows), wh, scenario, str(min_rows)]
                _, _, _, out = measure_rusage(cmd, env=env)
                got = json.loads(out.strip().splitlines()[-1])
                assert got["rows"] == expected, (name, got)
                samples[name].append(got)
        shutil.rmtree(wh, ignore_errors=True)
        keys = ("wall", "driver_rss", "worker_rss", "worker_private", "snapshots")
        med = {name: {k: statistics.median(s[k] for s in runs) for k in keys} for name, runs in samples.items()}
        base = med["floe.ray.IcebergSink"]["wall"]
        for name, m in med.items():
            worker = f"{mib(m['worker_rss']):.0f} | {mib(m['worker_private']):.0f}" if m["worker_rss"] else "- | -"
            lines.append(f"| {scenario} | {name} | {m['wall']:.2f} | {written / m['wall']:,.0f} | {mib(m['driver_rss']):.0f} "
                         f"| {worker} | {m['snapshots']:.0f} | {m['wall'] / base:.2f}x |")
    print(record_section(args.record, "ray", "\n".join(lines)))


def ray_version(python):
    return subprocess.run([python, "-c", "import ray; print(ray.__version__)"], capture_output=True, text=True).stdout.strip()


def pyiceberg_version(python):
    return subprocess.run([python, "-c", "import pyiceberg; print(pyiceberg.__version__)"], capture_output=True,
                          text=True).stdout.strip()


if __name__ == "__main__":
    main()
