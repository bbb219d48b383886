#!/usr/bin/env python3
"""Text and Arrow IPC inputs: `floe load` of JSON lines and CSV beside DuckDB reading the same
files (`read_json` / `read_csv`) and writing zstd Parquet, at two sizes; and JSON lines piped
through stdin (`cat file | floe load T - --format jsonl`) at both sizes, for flat peak RSS.

    .venv/bin/python bench/formats.py --rows 1000000 10000000 --record docs/benchmarks.md

The inputs are generated once by DuckDB (deterministic: 12 dlt-like columns, ints, a double,
a decimal, a timestamp, a date, short and free-text strings, a boolean). Every contender is
its own child process, so each peak RSS is that process's own (DuckDB's includes the
interpreter); contenders alternate, medians of --repeat runs. floe is the release CLI (built
first unless --no-build); DuckDB uses both cores, as floe does.
"""

import argparse
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from memory import machine_facts, measure_rusage, mib, record_section, release_binaries  # noqa: E402

COLUMNS = """
    i::BIGINT AS id,
    (i * 7919) % 100000 AS user_id,
    TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_microseconds(i * 1000) AS event_time,
    DATE '2026-01-01' + (i % 365)::INTEGER AS event_day,
    ['click', 'view', 'buy', 'scroll', 'share', 'like', 'open', 'close'][(i % 8) + 1] AS kind,
    'session ' || (i % 977) || ' page /p/' || ((i * 31) % 5003) AS note,
    (i % 10000) / 100.0 AS amount,
    ((i % 100000) / 100)::DECIMAL(12, 2) AS price,
    i % 3 = 0 AS flag,
    'tenant-' || (i % 50) AS tenant,
    (i * 13) % 1000 AS quantity,
    md5(i::VARCHAR)[:12] AS token
"""


def duckdb(script: str, workdir: Path):
    """Runs `script` (Python using duckdb) in a child; (wall, cpu, peak RSS)."""
    return measure_rusage([sys.executable, "-c", script], cwd=workdir)[:3]


def generate(workdir: Path, rows: int) -> dict:
    out = workdir / f"text-{rows}"
    marker = out / ".complete"
    files = {"jsonl": out / "events.jsonl", "csv": out / "events.csv"}
    if not marker.exists():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        print(f"generating {rows:,} rows of JSON lines and CSV ...", file=sys.stderr)
        select = f"SELECT {COLUMNS} FROM range({rows}) t(i)"
        script = (
            "import duckdb\n"
            f"duckdb.sql(\"\"\"COPY ({select}) TO '{files['jsonl']}' (FORMAT JSON)\"\"\")\n"
            f"duckdb.sql(\"\"\"COPY ({select}) TO '{files['csv']}' (FORMAT CSV, HEADER)\"\"\")\n"
        )
        subprocess.run([sys.executable, "-c", script], check=True)
        marker.write_text("ok")
    return files


def floe_load(floe: Path, wh: Path, path: Path, fmt: str):
    shutil.rmtree(wh, ignore_errors=True)
    result = measure_rusage([floe, "load", "bench.events", path, "--warehouse", wh, "--json", "--no-progress"])
    shutil.rmtree(wh, ignore_errors=True)
    return result[:3]


def floe_stdin(floe: Path, wh: Path, path: Path):
    shutil.rmtree(wh, ignore_errors=True)
    cmd = f"cat '{path}' | '{floe}' load bench.events - --format jsonl --warehouse '{wh}' --json --no-progress"
    # The shell's rusage covers its children: floe's peak is the largest of them (cat's is tiny).
    result = measure_rusage(["bash", "-c", cmd])
    shutil.rmtree(wh, ignore_errors=True)
    return result[:3]


def duckdb_to_parquet(workdir: Path, path: Path, reader: str):
    target = workdir / "duckdb-out.parquet"
    script = (
        "import duckdb\n"
        f"duckdb.sql(\"\"\"COPY (SELECT * FROM {reader}('{path}')) TO '{target}' "
        "(FORMAT PARQUET, COMPRESSION ZSTD)\"\"\")\n"
    )
    result = duckdb(script, workdir)
    target.unlink(missing_ok=True)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs=2, default=[1_000_000, 10_000_000], metavar=("SMALL", "LARGE"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=REPO / "bench" / "out")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--record", type=Path, help="write the results section into this markdown file")
    args = ap.parse_args()

    floe, _ = release_binaries(not args.no_build)
    args.workdir.mkdir(parents=True, exist_ok=True)
    wh = args.workdir / "wh-formats"
    results = []
    for rows in args.rows:
        files = generate(args.workdir, rows)
        contenders = {
            ("jsonl", "floe load"): lambda: floe_load(floe, wh, files["jsonl"], "jsonl"),
            ("jsonl", "floe load - (stdin)"): lambda: floe_stdin(floe, wh, files["jsonl"]),
            ("jsonl", "DuckDB read_json -> Parquet"): lambda: duckdb_to_parquet(args.workdir, files["jsonl"], "read_json"),
            ("csv", "floe load"): lambda: floe_load(floe, wh, files["csv"], "csv"),
            ("csv", "DuckDB read_csv -> Parquet"): lambda: duckdb_to_parquet(args.workdir, files["csv"], "read_csv"),
        }
        samples = {k: [] for k in contenders}
        for _ in range(args.repeat):
            for key, run in contenders.items():
                samples[key].append(run())
        for (fmt, name), runs in samples.items():
            size = files[fmt].stat().st_size
            wall = statistics.median(r[0] for r in runs)
            results.append(
                {"format": fmt, "contender": name, "rows": rows, "bytes": size, "wall": wall,
                 "cpu": statistics.median(r[1] for r in runs), "rss": statistics.median(r[2] for r in runs)}
            )

    small, large = args.rows
    lines = [
        "| input | contender | rows | input size | wall (s) | MB/s | CPU (s) | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['format']} | {r['contender']} | {r['rows']:,} | {mib(r['bytes']):,.0f} MiB | {r['wall']:.2f} "
            f"| {r['bytes'] / r['wall'] / 1e6:,.0f} | {r['cpu']:.2f} | {mib(r['rss']):.0f} |"
        )
    by = {(r["format"], r["contender"], r["rows"]): r for r in results}
    notes = []
    for fmt, duck in (("jsonl", "DuckDB read_json -> Parquet"), ("csv", "DuckDB read_csv -> Parquet")):
        for rows in args.rows:
            f, d = by[(fmt, "floe load", rows)], by[(fmt, duck, rows)]
            notes.append(f"- {fmt}, {rows:,} rows: floe takes {f['wall'] / d['wall']:.2f}x DuckDB's wall time "
                         f"at {f['rss'] / d['rss']:.2f}x its peak RSS")
    for fmt, name in (("jsonl", "floe load"), ("jsonl", "floe load - (stdin)"), ("csv", "floe load")):
        s, l = by[(fmt, name, small)], by[(fmt, name, large)]
        notes.append(f"- {fmt} {name}: peak RSS {mib(s['rss']):.0f} MiB at {small:,} rows, {mib(l['rss']):.0f} MiB at "
                     f"{large:,} rows ({mib(l['bytes']):,.0f} MiB of input): ratio {l['rss'] / s['rss']:.2f}")
    body = "\n".join(
        [
            f"Machine: {machine_facts()}. Command: `.venv/bin/python bench/formats.py --rows {small} {large}"
            f" --repeat {args.repeat}`; medians.",
            "",
            *lines,
            "",
            *notes,
        ]
    )
    print(record_section(args.record, "formats", body))


if __name__ == "__main__":
    main()
