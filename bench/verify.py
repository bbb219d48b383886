#!/usr/bin/env python3
"""What verifying copied pages costs: the copy path with its page checks, beside the same load
by a floe binary built without them, and `cp` of the same bytes, in one run.

    python3 bench/verify.py --unverified /tmp/floe-unverified --rows 4000000 10000000 \
        --record docs/benchmarks.md

`--unverified` is a release `floe` built from the commit before page verification (copy
path checked page headers only): build it with `git worktree`/`git stash` and
`cargo build --release -p floe-cli`, then copy the binary aside. Data: `floe-bench gen` (zstd,
the table's types, 1M rows per file), so every row takes the copy path. Contenders alternate
(A B C A B C ...); medians of --repeat runs of wall time, CPU time and peak RSS. `--before`
adds another floe binary (e.g. the previous verified build) as one more contender.
"""

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from memory import dataset, machine_facts, measure_rusage, mib, record_section, release_binaries  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--unverified", type=Path, required=True, help="a release floe without page verification")
    ap.add_argument("--before", type=Path, help="another floe binary to run alongside (e.g. the previous build)")
    ap.add_argument("--before-label", default="floe before (verified copy)")
    ap.add_argument("--rows", type=int, nargs="+", default=[4_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=REPO / "bench" / "out")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--record", type=Path)
    args = ap.parse_args()
    floe, bench = release_binaries(not args.no_build)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    lines = [
        f"Command: `python3 bench/verify.py --unverified <floe before verification>"
        f"{' --before <previous floe>' if args.before else ''} --rows {' '.join(map(str, args.rows))} --repeat {args.repeat}`  ",
        f"Machine: {machine_facts()}",
        "",
        "| rows | input MB | contender | wall (s) | CPU (s) | peak RSS (MiB) | vs unverified | vs cp |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for rows in args.rows:
        data = dataset(work, bench, rows)
        size = sum(p.stat().st_size for p in data.glob("*.parquet"))
        wh = work / "wh-verify"
        copy_dir = work / "cp-out"

        def load(binary):
            def run():
                shutil.rmtree(wh, ignore_errors=True)
                wh.mkdir(parents=True)
                wall, cpu, rss, out = measure_rusage(
                    [binary, "load", "bench.events", data, "--warehouse", wh, "--json", "--no-progress"])
                summary = json.loads(out)
                assert summary["rows_copied"] == rows, summary
                return wall, cpu, rss
            return run

        def cp():
            shutil.rmtree(copy_dir, ignore_errors=True)
            copy_dir.mkdir(parents=True)
            wall, cpu, rss, _ = measure_rusage(["sh", "-c", f"cp {data}/*.parquet {copy_dir}/ && sync -f {copy_dir}"])
            return wall, cpu, rss

        contenders = {"floe (verified copy)": load(floe)}
        if args.before:
            contenders[args.before_label] = load(args.before)
        contenders |= {"floe before (unverified copy)": load(args.unverified), "cp": cp}
        samples = {name: [] for name in contenders}
        for _ in range(args.repeat):
            for name, run in contenders.items():
                samples[name].append(run())
        med = {name: [statistics.median(s[i] for s in runs) for i in range(3)] for name, runs in samples.items()}
        base, floor = med["floe before (unverified copy)"][0], med["cp"][0]
        for name, (wall, cpu, rss) in med.items():
            # Throughput ratio: the other contender's wall time over this one's.
            lines.append(f"| {rows:,} | {size / 1e6:,.0f} | {name} | {wall:.2f} | {cpu:.2f} | {mib(rss):.0f} "
                         f"| {base / wall:.2f}x | {floor / wall:.2f}x |")
        shutil.rmtree(copy_dir, ignore_errors=True)
    section = record_section(args.record, "verify", "\n".join(lines))
    print(section)


if __name__ == "__main__":
    main()
