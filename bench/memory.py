#!/usr/bin/env python3
"""Peak RSS and wall time of `floe load` at two input sizes: floe's memory must not grow with
the data. Standard library only.

    python3 bench/memory.py                          # 3M and 30M rows (~0.4 GB and ~4 GB)
    python3 bench/memory.py --rows 200000 2000000    # quicker
    python3 bench/memory.py --record docs/benchmarks.md

Each size gets its own generated dataset (floe-bench gen, deterministic) and a fresh warehouse;
each contender runs --repeat times, alternating, and the median is reported. The bare Parquet
rewrite (floe-bench rewrite: decode + zstd(1) encode, no Iceberg) runs beside floe as the floor.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROWS_PER_FILE = 1_000_000


# A child's peak RSS from wait4 starts at this (Python) process's own peak: exec keeps the
# larger of the old and the new memory's high-water mark. GNU time forks the command from a
# process of ~2 MB, so its %M is the command's own peak; without it, wait4's figure is used.
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None


def measure_rusage(cmd, cwd=None, env=None):
    # Output goes to files, not pipes: a chatty child cannot fill a pipe and stall while we wait.
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f, \
            tempfile.NamedTemporaryFile("r") as peak_f:
        wrapped = [GNU_TIME, "-f", "%M", "-o", peak_f.name, *cmd] if GNU_TIME else cmd
        start = time.perf_counter()
        proc = subprocess.Popen(wrapped, cwd=cwd, env=env, stdout=out_f, stderr=err_f)
        # wait4 gives this child's own rusage (not that of earlier children).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        out = out_f.read().decode()
        err = err_f.read().decode()
        peak_kb = usage.ru_maxrss
        if GNU_TIME:
            lines = peak_f.read().split()
            peak_kb = int(lines[-1]) if lines and lines[-1].isdigit() else peak_kb
    if proc.returncode != 0:
        sys.exit(f"command failed: {' '.join(map(str, cmd))}\n{err[-4000:]}")
    return wall, usage.ru_utime + usage.ru_stime, peak_kb * 1024, out


def dataset(workdir: Path, bench_bin: Path, rows: int) -> Path:
    data = workdir / f"data-{rows}"
    marker = data / ".complete"
    if not marker.exists():
        shutil.rmtree(data, ignore_errors=True)
        files = max(1, rows // ROWS_PER_FILE)
        print(f"generating {rows:,} rows in {files} files ...", file=sys.stderr)
        subprocess.run([bench_bin, "gen", "--out", data, "--rows", str(rows), "--files", str(files)], check=True)
        marker.write_text("ok")
    return data


def release_binaries(build: bool = True) -> tuple[Path, Path]:
    """The release `floe` and `floe-bench` binaries, built first unless told not to."""
    if build:
        subprocess.run(["cargo", "build", "--release", "-p", "floe-cli", "-p", "floe-bench"], cwd=REPO, check=True)
    return REPO / "target" / "release" / "floe", REPO / "target" / "release" / "floe-bench"


def machine_facts() -> str:
    """Date, cores, RAM and platform, for the record of a benchmark run."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return f"{datetime.date.today().isoformat()}, {os.cpu_count()} cores, {ram:.0f} GiB RAM, {platform.platform()}"


def record_section(path: Path, name: str, body: str) -> str:
    """Replaces the text between `<!-- name:begin -->` and `<!-- name:end -->` in the markdown
    file `path` (appending the section if it is not there yet); returns the section."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = f"{begin}\n{body}\n{end}"
    if path is None:
        return section
    text = path.read_text() if path.exists() else ""
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text + "\n" + section + "\n"
    path.write_text(text)
    return section


def mib(n):
    return n / (1 << 20)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs=2, default=[3_000_000, 30_000_000], metavar=("SMALL", "LARGE"))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=REPO / "bench" / "out")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--record", type=Path, help="write the results section into this markdown file")
    ap.add_argument("--partition-by", help="create the table with this partition spec (e.g. 'bucket(10000, user_id)')")
    ap.add_argument("--rewrite", action="store_true", help="pass --rewrite to floe (decode and encode every row)")
    ap.add_argument("--section", default="memory", help="marker name of the section written by --record")
    args = ap.parse_args()

    floe, bench = release_binaries(not args.no_build)
    args.workdir.mkdir(parents=True, exist_ok=True)

    results = []
    for rows in args.rows:
        data = dataset(args.workdir, bench, rows)
        input_bytes = sum(p.stat().st_size for p in data.glob("*.parquet"))
        runs = {"floe load": [], "bare rewrite": []}
        for rep in range(args.repeat):
            wh = args.workdir / f"wh-{rows}"
            shutil.rmtree(wh, ignore_errors=True)
            extra = ["--partition-by", args.partition_by] if args.partition_by else []
            extra += ["--rewrite"] if args.rewrite else []
            wall, cpu, rss, out = measure_rusage([floe, "load", "bench.events", data, "--warehouse", wh, "--json", "--no-progress", *extra])
            summary = json.loads(out)
            files_added = summary["files_added"]
            assert summary["rows_written"] == rows, summary
            runs["floe load"].append((wall, cpu, rss))
            shutil.rmtree(wh, ignore_errors=True)
            rw = args.workdir / f"rewrite-{rows}"
            shutil.rmtree(rw, ignore_errors=True)
            files = sorted(data.glob("*.parquet"))
            runs["bare rewrite"].append(measure_rusage([bench, "rewrite", "--out", rw, *files])[:3])
            shutil.rmtree(rw, ignore_errors=True)
        for name, samples in runs.items():
            wall = statistics.median(s[0] for s in samples)
            cpu = statistics.median(s[1] for s in samples)
            rss = statistics.median(s[2] for s in samples)
            results.append({"contender": name, "rows": rows, "input_bytes": input_bytes, "wall": wall, "cpu": cpu, "rss": rss,
                            "files": files_added if name == "floe load" else len(list(data.glob("*.parquet")))})

    small, large = args.rows
    lines = [
        "| contender | rows | input | wall (s) | CPU (s) | rows/s | peak RSS (MiB) | files written |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['contender']} | {r['rows']:,} | {mib(r['input_bytes']):,.0f} MiB | {r['wall']:.1f} | {r['cpu']:.1f} "
            f"| {r['rows'] / r['wall']:,.0f} | {mib(r['rss']):.0f} | {r['files']:,} |"
        )
    by = {(r["contender"], r["rows"]): r for r in results}
    f_small, f_large = by[("floe load", small)], by[("floe load", large)]
    ratio = f_large["rss"] / f_small["rss"]
    lines.append("")
    lines.append(f"- floe peak RSS, large / small input: **{ratio:.2f}** ({mib(f_large['rss']):.0f} MiB vs {mib(f_small['rss']):.0f} MiB)")
    for rows in args.rows:
        f, b = by[("floe load", rows)], by[("bare rewrite", rows)]
        lines.append(f"- {rows:,} rows: floe throughput / bare rewrite = **{b['wall'] / f['wall']:.2f}x**")
    table = "\n".join(lines)

    cmd = "python3 bench/memory.py " + " ".join(
        [f"--rows {small} {large}", f"--repeat {args.repeat}"]
        + ([f"--partition-by '{args.partition_by}'"] if args.partition_by else [])
        + (["--rewrite"] if args.rewrite else [])
        + ([f"--section {args.section}"] if args.section != "memory" else [])
    )
    print(record_section(args.record, args.section, f"Command: `{cmd}`  \nMachine: {machine_facts()}\n\n{table}"))


if __name__ == "__main__":
    main()
