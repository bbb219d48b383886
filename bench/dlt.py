#!/usr/bin/env python3
"""dlt's load step into Iceberg: floe's destination (floe.dlt.filesystem) beside dlt's own
filesystem + iceberg path, in one run, on the same dlt-like records.

    .venv/bin/python bench/dlt.py --rows 1000000 --record docs/benchmarks.md

Records: 20 columns after dlt's flattening (ids, timestamps, amounts, low- and high-cardinality
strings, booleans, and two nested dicts that dlt turns into `address__*` / `device__*`
columns). For each contender and size:

- append: extract + normalize a package of N rows (not timed), then time `pipeline.load()`
  alone in a child process (wall, CPU, peak RSS of that process);
- upsert: the table holds N rows (loaded with append, not timed); a package of N/10 updated and
  N/10 new rows with `merge` / `upsert` on `id` is then loaded the same way. dlt's own upsert is
  stopped after --upsert-limit seconds; its figure is then a lower bound.

Uses the floe package installed in the venv unless --pyfloe DIR (e.g. bench/out/pyfloe, the
release wheel bench/python.py installs) is given; a debug build makes floe's figures slower.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from memory import machine_facts, mib, record_section  # noqa: E402

COMMON = textwrap.dedent('''
    import datetime as dt, os, sys, json
    import dlt
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    kind, root, rows, phase = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    os.environ["DLT_DATA_DIR"] = root + "/dlt_data"
    BASE = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    KINDS = ["click", "view", "buy", "scroll", "share", "like", "open", "close"]

    def record(i, version=0):
        return {
            "id": i, "user_id": (i * 7919) % 100_000, "session": f"s{i // 50}",
            "ts": BASE + dt.timedelta(seconds=i), "day": (BASE + dt.timedelta(days=i % 30)).date(),
            "amount": (i % 10_000) / 100 + version, "quantity": i % 17, "kind": KINDS[i % 8],
            "note": f"session {i % 977} page /p/{(i * 31) % 5003} v{version}", "ok": i % 3 == 0,
            "score": i / 7, "country": ["de", "fr", "us", "br", "in"][i % 5], "version": version,
            "referrer": None if i % 4 else f"https://ref{i % 100}.example.com",
            "address": {"city": f"city {i % 1000}", "zip": 10_000 + i % 90_000, "street": f"{i % 300} main st"},
            "device": {"os": ["ios", "android", "web"][i % 3], "model": f"m{i % 50}"},
        }

    def chunks(ids, version=0, size=10_000):
        batch = []
        for i in ids:
            batch.append(record(i, version))
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def destination():
        if kind == "floe":
            import floe.dlt
            return floe.dlt.filesystem(bucket_url=root + "/bucket")
        return dlt.destinations.filesystem(bucket_url=root + "/bucket")

    def pipeline():
        return dlt.pipeline("bench", destination=destination(), dataset_name="ds",
                            pipelines_dir=root + "/pipelines")

    def run_kwargs():
        return {} if kind == "floe" else {"table_format": "iceberg"}
''')

PREPARE = COMMON + textwrap.dedent('''
    p = pipeline()
    if phase == "append":
        p.extract(dlt.resource(chunks(range(rows)), name="events", write_disposition="append"), **run_kwargs())
    else:
        p.run(dlt.resource(chunks(range(rows)), name="events", write_disposition="append"), **run_kwargs())
        n = rows // 10
        ids = list(range(0, rows, 10))[:n] + list(range(rows, rows + n))   # 10% updates + 10% new
        res = dlt.resource(chunks(ids, version=1), name="events", primary_key="id",
                           write_disposition={"disposition": "merge", "strategy": "upsert"})
        p.extract(res, **run_kwargs())
    p.normalize()
''')

LOAD = COMMON + textwrap.dedent('''
    p = pipeline()
    info = p.load()
    info.raise_on_failed_jobs()
    print(json.dumps({"packages": len(info.loads_ids)}))
''')


def measure(cmd, env, limit):
    """Wall, CPU, peak RSS of one child; (None, ...) when it ran past `limit` seconds."""
    import tempfile

    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out_f, stderr=err_f, start_new_session=True)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            wall = time.perf_counter() - start
            if pid:
                break
            if limit and wall > limit:
                os.killpg(proc.pid, 9)
                _, status, usage = os.wait4(proc.pid, 0)
                return None, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024
            time.sleep(0.05)
        if os.waitstatus_to_exitcode(status) != 0:
            err_f.seek(0)
            sys.exit(f"load failed: {' '.join(map(str, cmd))}\n{err_f.read().decode()[-4000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--workdir", type=Path, default=REPO / "bench" / "out" / "dlt")
    ap.add_argument("--upsert-limit", type=float, default=600)
    ap.add_argument("--pyfloe", type=Path, help="directory holding a floe build to put first on PYTHONPATH")
    ap.add_argument("--before", type=Path,
                    help="directory holding another floe build (e.g. of the parent commit), run beside as 'floe before'")
    ap.add_argument("--record", type=Path)
    ap.add_argument("--section", default="dlt", help="the docs section to replace")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.pyfloe:
        env["PYTHONPATH"] = str(args.pyfloe.resolve())
    envs = {"floe": env, "dlt-iceberg": env}
    if args.before:
        envs = {"floe": env, "floe-before": {**env, "PYTHONPATH": str(args.before.resolve())}, "dlt-iceberg": env}
    python = sys.executable
    lines = [
        f"Command: `.venv/bin/python bench/dlt.py --rows {' '.join(map(str, args.rows))} "
        f"--upsert-limit {args.upsert_limit:g}{' --pyfloe ' + str(args.pyfloe) if args.pyfloe else ''}"
        f"{' --before <floe of the parent commit>' if args.before else ''}`  ",
        f"Machine: {machine_facts()}",
        "",
        "| rows | load step | contender | wall (s) | CPU (s) | peak RSS (MiB) | dlt's wall / floe's |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for rows in args.rows:
        for phase in ("append", "upsert"):
            results = {}
            for kind, kind_env in envs.items():
                root = args.workdir / f"{kind}-{phase}-{rows}"
                shutil.rmtree(root, ignore_errors=True)
                root.mkdir(parents=True)
                print(f"{rows:,} {phase} {kind}: preparing the package ...", file=sys.stderr)
                dest = "floe" if kind.startswith("floe") else kind
                subprocess.run([python, "-c", PREPARE, dest, root, str(rows), phase], env=kind_env, check=True)
                limit = args.upsert_limit if phase == "upsert" else None
                results[kind] = measure([python, "-c", LOAD, dest, root, str(rows), phase], kind_env, limit)
                print(f"  {kind}: {results[kind]}", file=sys.stderr)
                shutil.rmtree(root, ignore_errors=True)
            floe_wall = results["floe"][0]
            for kind, (wall, cpu, rss) in results.items():
                shown = f"> {args.upsert_limit:.0f} (stopped)" if wall is None else f"{wall:.2f}"
                ratio = "" if kind == "floe" else (
                    f"> {args.upsert_limit / floe_wall:,.0f}x" if wall is None else f"{wall / floe_wall:.1f}x")
                label = {"floe": "floe.dlt.filesystem", "floe-before": "floe.dlt.filesystem, build before",
                         "dlt-iceberg": "dlt filesystem + iceberg (pyiceberg)"}[kind]
                what = f"append {rows:,} rows" if phase == "append" else f"upsert {rows // 10:,} + {rows // 10:,} into {rows:,}"
                lines.append(f"| {rows:,} | {what} | {label} | {shown} | {cpu:.2f} | {mib(rss):.0f} | {ratio} |")
    print(record_section(args.record, args.section, "\n".join(lines)))


if __name__ == "__main__":
    main()
