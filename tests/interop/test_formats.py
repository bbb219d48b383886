"""Inputs other than Parquet: JSON lines (plain, gzip, zstd), CSV, Arrow IPC files and streams,
and stdin. Every table is read back with pyiceberg and DuckDB and compared row for row."""

import datetime as dt
import gzip
import json
import subprocess
from decimal import Decimal

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from conftest import FLOE_BIN

UTC = dt.timezone.utc

RECORDS = [
    {"id": 1, "name": "a", "score": 1.5, "at": "2024-01-02T03:04:05Z", "day": "2024-01-02",
     "tags": ["x", "y"], "info": {"k": 1, "v": "one"}, "flag": True},
    {"id": 2, "name": None, "score": 2, "at": "2024-01-02T03:04:05.250+02:00", "day": "2023-12-31",
     "tags": [], "info": {"k": 2, "v": None}, "flag": False},
    {"id": 3, "name": "c", "score": None, "at": None, "day": None, "tags": None, "info": None,
     "flag": None},
]

EXPECTED = [
    {"id": 1, "name": "a", "score": 1.5, "at": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
     "day": dt.date(2024, 1, 2), "tags": ["x", "y"], "info": {"k": 1, "v": "one"}, "flag": True},
    {"id": 2, "name": None, "score": 2.0,
     "at": dt.datetime(2024, 1, 2, 1, 4, 5, 250000, tzinfo=UTC), "day": dt.date(2023, 12, 31),
     "tags": [], "info": {"k": 2, "v": None}, "flag": False},
    {"id": 3, "name": "c", "score": None, "at": None, "day": None, "tags": None, "info": None,
     "flag": None},
]


def jsonl(records):
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def canon(rows):
    """DuckDB returns timestamptz in the session's zone: compare instants."""
    out = []
    for r in rows:
        r = dict(r)
        if isinstance(r.get("at"), dt.datetime):
            r["at"] = r["at"].astimezone(UTC)
        out.append(r)
    return out


def assert_rows(wh, table, expected, key="id"):
    exp = sorted(expected, key=lambda r: r[key])
    assert canon(wh.pyiceberg_rows(table, key)) == exp
    assert canon(wh.duckdb_rows(table, key)) == exp


def snapshots(wh, table):
    return len(wh.table(table).metadata.snapshots)


def test_jsonl_creates_a_table_with_inferred_types(wh, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(jsonl(RECORDS))
    out = wh.floe("load", "db.events", path)
    assert out["table_created"] and out["rows_written"] == 3
    fields = {f["name"]: f["type"] for f in out["inferred_schema"]["fields"]}
    assert fields["at"] == "timestamptz" and fields["day"] == "date"
    assert fields["id"] == "long" and fields["score"] == "double"
    assert fields["info"]["type"] == "struct" and fields["tags"]["type"] == "list"
    schema = wh.table("db.events").schema()
    assert [f.name for f in schema.fields] == list(RECORDS[0])
    assert_rows(wh, "db.events", EXPECTED)


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_compressed_jsonl_is_recognised_by_its_bytes(wh, tmp_path, codec):
    raw = jsonl(RECORDS)
    if codec == "gzip":
        data = gzip.compress(raw)
    else:
        import zstandard  # noqa: PLC0415  (installed with the test requirements)

        data = zstandard.ZstdCompressor().compress(raw)
    # dlt names its gzip'd load files plain .jsonl: the bytes decide, not the name.
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    wh.floe("load", "db.events", path)
    assert_rows(wh, "db.events", EXPECTED)


def existing_table(wh, tmp_path):
    """A table whose types JSON cannot carry: int, decimal, timestamptz, a struct."""
    schema = pa.schema([
        pa.field("id", pa.int32(), nullable=False),
        pa.field("amount", pa.decimal128(20, 4)),
        pa.field("at", pa.timestamp("us", tz="UTC")),
        pa.field("info", pa.struct([pa.field("k", pa.int32())])),
    ])
    first = pa.table({
        "id": pa.array([0], pa.int32()),
        "amount": pa.array([Decimal("0.0001")], pa.decimal128(20, 4)),
        "at": pa.array([dt.datetime(2020, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
        "info": pa.array([{"k": 0}], pa.struct([pa.field("k", pa.int32())])),
    }, schema=schema)
    pq.write_table(first, tmp_path / "first.parquet")
    wh.floe("load", "db.t", tmp_path / "first.parquet")


def test_jsonl_into_an_existing_table_is_parsed_as_its_types(wh, tmp_path):
    existing_table(wh, tmp_path)
    path = tmp_path / "more.jsonl"
    # Decimals from text and from numbers never pass through a float; a struct gains a field.
    path.write_text(
        '{"id": 1, "amount": "12345678901234.5678", "at": "2024-05-06T07:08:09.123456Z", "info": {"k": 5, "extra": "new"}}\n'
        '\n'
        '{"id": 2, "amount": 0.1, "at": "2024-05-06 07:08:09+01:00", "info": null, "note": "n"}\n'
    )
    out = wh.floe("load", "db.t", path)
    assert out["rows_written"] == 2
    assert sorted(out["schema_changes"]) == [
        "added column 'info.extra' (string)", "added column 'note' (string)"
    ], out["schema_changes"]
    types = {f.name: str(f.field_type) for f in wh.table("db.t").schema().fields}
    assert types["id"] == "int" and types["amount"] == "decimal(20, 4)"
    rows = wh.pyiceberg_rows("db.t")
    assert rows[1]["amount"] == Decimal("12345678901234.5678")
    assert rows[2]["amount"] == Decimal("0.1000")
    assert rows[1]["at"] == dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert rows[2]["at"] == dt.datetime(2024, 5, 6, 6, 8, 9, tzinfo=UTC)
    assert rows[1]["info"] == {"k": 5, "extra": "new"} and rows[2]["note"] == "n"
    assert canon(wh.duckdb_rows("db.t")) == canon(rows)


def test_a_bad_line_names_file_and_line_and_changes_nothing(wh, tmp_path):
    existing_table(wh, tmp_path)
    before = snapshots(wh, "db.t")
    bad = tmp_path / "bad.jsonl"
    lines = [json.dumps({"id": i, "amount": "1.5"}) for i in range(1, 2001)]
    lines[1499] = '{"id": 1500, "amount": "1.5"'  # truncated object on line 1500
    bad.write_text("\n".join(lines) + "\n")
    proc = wh.floe("load", "db.t", bad, ok=False)
    assert proc.returncode != 0
    assert "bad.jsonl" in proc.stderr and "line 1500" in proc.stderr, proc.stderr
    # A value the table's type cannot hold, on line 7.
    lines = [json.dumps({"id": i}) for i in range(1, 10)]
    lines[6] = json.dumps({"id": "seven"})
    bad.write_text("\n".join(lines) + "\n")
    proc = wh.floe("load", "db.t", bad, ok=False)
    assert proc.returncode != 0
    assert "line 7" in proc.stderr and "'id'" in proc.stderr, proc.stderr
    assert snapshots(wh, "db.t") == before
    assert len(wh.pyiceberg_rows("db.t")) == 1


def test_a_column_after_the_sample_fails_until_the_sample_covers_it(wh, tmp_path):
    path = tmp_path / "late.jsonl"
    rows = [{"id": i} for i in range(1, 6)] + [{"id": 6, "late": "x"}]
    path.write_bytes(jsonl(rows))
    proc = wh.floe("load", "db.late", path, "--infer-rows", "3", ok=False)
    assert proc.returncode != 0
    assert "line 6" in proc.stderr and "--infer-rows" in proc.stderr, proc.stderr
    wh.floe("load", "db.late", path, "--infer-rows", "10")
    assert wh.pyiceberg_rows("db.late")[-1] == {"id": 6, "late": "x"}


def test_csv_with_header_nulls_and_tsv(wh, tmp_path):
    (tmp_path / "a.csv").write_text(
        "id,name,amount,day,at\n"
        "1,alice,1.25,2024-01-02,2024-01-02T03:04:05\n"
        '2,"b, with comma",NA,2024-01-03,\n'
        "3,,3,NA,2024-01-04 00:00:00.5\n"
    )
    out = wh.floe("load", "db.c", tmp_path / "a.csv", "--null", "NA", "--null", "")
    assert out["rows_written"] == 3
    types = {f.name: str(f.field_type) for f in wh.table("db.c").schema().fields}
    assert types == {"id": "long", "name": "string", "amount": "double", "day": "date",
                     "at": "timestamp"}
    expected = [
        {"id": 1, "name": "alice", "amount": 1.25, "day": dt.date(2024, 1, 2),
         "at": dt.datetime(2024, 1, 2, 3, 4, 5)},
        {"id": 2, "name": "b, with comma", "amount": None, "day": dt.date(2024, 1, 3), "at": None},
        {"id": 3, "name": None, "amount": 3.0, "day": None,
         "at": dt.datetime(2024, 1, 4, 0, 0, 0, 500000)},
    ]
    assert wh.pyiceberg_rows("db.c") == expected
    assert wh.duckdb_rows("db.c") == expected
    # A tab-separated file with the columns in another order appends by name.
    (tmp_path / "b.tsv").write_text("name\tid\nzed\t4\n")
    wh.floe("load", "db.c", tmp_path / "b.tsv")
    assert wh.pyiceberg_rows("db.c")[-1]["name"] == "zed"


def test_csv_bad_value_names_line_and_column(wh, tmp_path):
    (tmp_path / "ok.csv").write_text("id,n\n1,10\n")
    wh.floe("load", "db.c", tmp_path / "ok.csv")
    (tmp_path / "bad.csv").write_text("id,n\n2,20\n3,x3\n")
    proc = wh.floe("load", "db.c", tmp_path / "bad.csv", ok=False)
    assert proc.returncode != 0
    assert "bad.csv" in proc.stderr and "line 3" in proc.stderr and "'n'" in proc.stderr, proc.stderr
    assert wh.pyiceberg_rows("db.c") == [{"id": 1, "n": 10}]


def arrow_table():
    return pa.table({
        "id": pa.array([1, 2, 3], pa.int64()),
        "name": ["a", None, "c"],
        "at": pa.array([dt.datetime(2024, 1, 1, tzinfo=UTC), None,
                        dt.datetime(2024, 1, 3, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
    })


@pytest.mark.parametrize("kind", ["file", "stream", "stream-zstd-buffers"])
def test_arrow_ipc_files_and_streams(wh, tmp_path, kind):
    table = arrow_table()
    path = tmp_path / "t.arrow"
    options = ipc.IpcWriteOptions(compression="zstd" if "zstd" in kind else None)
    writer = (ipc.new_file if kind == "file" else ipc.new_stream)(path, table.schema, options=options)
    for batch in table.to_batches(max_chunksize=2):
        writer.write_batch(batch)
    writer.close()
    wh.floe("load", "db.ipc", path)
    expected = table.to_pylist()
    assert canon(wh.pyiceberg_rows("db.ipc")) == expected
    assert canon(wh.duckdb_rows("db.ipc")) == expected


def run_stdin(wh, data, *args):
    cmd = [FLOE_BIN, "load", *map(str, args), "--warehouse", str(wh.dir), "--json"]
    proc = subprocess.run(cmd, input=data, capture_output=True, cwd=wh.root)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def test_stdin_jsonl_gzip_and_ipc_stream(wh):
    out = run_stdin(wh, gzip.compress(jsonl(RECORDS)), "db.s", "-", "--format", "jsonl",
                    "--infer-rows", "2")
    assert out["rows_written"] == 3
    assert_rows(wh, "db.s", EXPECTED)
    sink = pa.BufferOutputStream()
    table = arrow_table()
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    run_stdin(wh, sink.getvalue().to_pybytes(), "db.i", "-", "--format", "ipc")
    assert canon(wh.pyiceberg_rows("db.i")) == table.to_pylist()


def test_stdin_without_format_is_refused(wh):
    proc = subprocess.run([FLOE_BIN, "load", "db.x", "-", "--warehouse", str(wh.dir)],
                          input=b"{}", capture_output=True, cwd=wh.root)
    assert proc.returncode != 0 and b"--format" in proc.stderr


def test_merge_from_jsonl(wh, tmp_path):
    (tmp_path / "a.jsonl").write_bytes(jsonl([{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]))
    wh.floe("load", "db.m", tmp_path / "a.jsonl")
    (tmp_path / "b.jsonl").write_bytes(jsonl([{"id": 2, "v": "B"}, {"id": 3, "v": "c"}]))
    out = wh.floe("load", "db.m", tmp_path / "b.jsonl", "--mode", "merge", "--key", "id")
    assert out["rows_inserted"] == 1 and out["rows_updated"] == 1
    expected = [{"id": 1, "v": "a"}, {"id": 2, "v": "B"}, {"id": 3, "v": "c"}]
    assert wh.pyiceberg_rows("db.m") == expected
    assert wh.duckdb_rows("db.m") == expected


def test_dry_run_prints_the_schema_and_touches_nothing(wh, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(jsonl(RECORDS))
    proc = subprocess.run([FLOE_BIN, "load", "db.events", str(path), "--dry-run",
                           "--warehouse", str(wh.dir)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["inferred"] is True
    assert [f["name"] for f in out["schema"]["fields"]] == list(RECORDS[0])
    assert not (wh.dir / "catalog.db").exists()


def test_explicit_schema_file(wh, tmp_path):
    schema = {"type": "struct", "schema-id": 0, "fields": [
        {"id": 1, "name": "id", "required": True, "type": "int"},
        {"id": 2, "name": "price", "required": False, "type": "decimal(9, 2)"},
    ]}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    (tmp_path / "p.jsonl").write_text('{"id": 1, "price": "19.99"}\n{"id": 2, "price": 5}\n')
    out = wh.floe("load", "db.p", tmp_path / "p.jsonl", "--schema", tmp_path / "schema.json")
    assert "inferred_schema" not in out
    types = {f.name: str(f.field_type) for f in wh.table("db.p").schema().fields}
    assert types == {"id": "int", "price": "decimal(9, 2)"}
    assert wh.pyiceberg_rows("db.p") == [
        {"id": 1, "price": Decimal("19.99")}, {"id": 2, "price": Decimal("5.00")}
    ]


def test_python_loads_text_files_with_options(wh, tmp_path):
    import floe

    (tmp_path / "a.txt").write_text("id;name\n1;x\n2;NULL\n")
    summary = floe.load("db.py_csv", tmp_path / "a.txt", format="csv", warehouse=wh.dir,
                        csv={"delimiter": ";", "nulls": ["NULL"]})
    assert summary.rows_written == 2 and summary.inferred_schema["fields"][0]["name"] == "id"
    assert wh.pyiceberg_rows("db.py_csv") == [{"id": 1, "name": "x"}, {"id": 2, "name": None}]
    (tmp_path / "b.jsonl").write_text('{"id": 1, "price": "1.10"}\n')
    schema = pa.schema([pa.field("id", pa.int32(), nullable=False),
                        pa.field("price", pa.decimal128(9, 2))])
    summary = floe.load("db.py_json", tmp_path / "b.jsonl", schema=schema, warehouse=wh.dir)
    assert summary.inferred_schema is None and "inferred_schema" not in summary.to_dict()
    assert wh.pyiceberg_rows("db.py_json") == [{"id": 1, "price": Decimal("1.10")}]
    # A column outside an explicit schema is an error, never dropped.
    iceberg = {"type": "struct", "fields": [
        {"id": 1, "name": "id", "required": False, "type": "long"}]}
    with pytest.raises(floe.BadInputError, match="'price'"):
        floe.load("db.py_json2", tmp_path / "b.jsonl", schema=iceberg, warehouse=wh.dir)
    iceberg["fields"].append({"id": 2, "name": "price", "required": False, "type": "string"})
    floe.load("db.py_json2", tmp_path / "b.jsonl", schema=json.dumps(iceberg), warehouse=wh.dir)
    assert wh.pyiceberg_rows("db.py_json2") == [{"id": 1, "price": "1.10"}]


def test_python_bad_line_raises_bad_input(wh, tmp_path):
    import floe

    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n{"id": 2,\n')
    with pytest.raises(floe.BadInputError, match="line 2"):
        floe.load("db.bad", tmp_path / "bad.jsonl", warehouse=wh.dir)
    with pytest.raises(floe.InvalidOptionError, match="csv"):
        floe.load("db.bad", tmp_path / "bad.jsonl", warehouse=wh.dir, csv={"sep": ","})
    assert not wh.catalog().table_exists("db.bad")


def dlt_load_files(tmp_path, fmt):
    """The load files real dlt writes for one resource (gzip'd JSON lines, or Parquet)."""
    import os

    import dlt

    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"

    @dlt.resource(name="items", primary_key="id")
    def items():
        for i in range(50):
            yield {"id": i, "name": f"n{i}" if i % 7 else None,
                   "price": Decimal(f"{i}.25"), "ok": i % 2 == 0, "score": i * 1.5,
                   "at": dt.datetime(2024, 1, 1, 3, 4, 5, 123456, tzinfo=UTC) + dt.timedelta(hours=i),
                   "day": dt.date(2024, 1, 1) + dt.timedelta(days=i), "meta": {"a": i, "b": {"c": "d"}}}

    bucket = tmp_path / f"bucket_{fmt}"
    pipeline = dlt.pipeline(f"formats_{fmt}", pipelines_dir=str(tmp_path / "pipelines"),
                            destination=dlt.destinations.filesystem(bucket_url=str(bucket)),
                            dataset_name="ds")
    pipeline.run(items(), loader_file_format=fmt).raise_on_failed_jobs()
    files = sorted((bucket / "ds" / "items").glob(f"*.{fmt}*"))
    assert files
    return files


def without_dlt_ids(rows):
    return [{k: v for k, v in r.items() if k not in ("_dlt_id", "_dlt_load_id")} for r in rows]


def test_dlt_jsonl_load_files_land_as_dlts_parquet_does(wh, tmp_path):
    parquet = dlt_load_files(tmp_path, "parquet")
    jsonl_files = dlt_load_files(tmp_path, "jsonl")
    assert all(f.name.endswith(".jsonl.gz") for f in jsonl_files)
    wh.floe("load", "db.from_parquet", *parquet)
    reference = without_dlt_ids(wh.pyiceberg_rows("db.from_parquet"))
    # The Parquet table's schema, given to a JSON lines load: the same table.
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(wh.table("db.from_parquet").schema().model_dump_json())
    wh.floe("load", "db.from_jsonl", *jsonl_files, "--schema", schema_file)
    assert wh.table("db.from_jsonl").schema() == wh.table("db.from_parquet").schema()
    assert without_dlt_ids(wh.pyiceberg_rows("db.from_jsonl")) == reference
    assert without_dlt_ids(wh.duckdb_rows("db.from_jsonl")) == without_dlt_ids(
        wh.duckdb_rows("db.from_parquet"))
    # Into the existing table, the JSON lines are parsed as its types (decimal text, timestamps).
    out = wh.floe("load", "db.from_parquet", *jsonl_files)
    assert out["schema_changes"] == [] and out["rows_written"] == 50
    both = without_dlt_ids(wh.pyiceberg_rows("db.from_parquet"))
    assert both[0::2] == reference and both[1::2] == reference


def stdin_load(wh, table, chunk, repeats):
    """`floe load TABLE - --format jsonl` fed `chunk` `repeats` times through a pipe while it
    runs (the input never exists as a file); returns (summary, peak RSS in bytes)."""
    import os
    import threading

    cmd = [FLOE_BIN, "load", table, "-", "--format", "jsonl", "--warehouse", str(wh.dir), "--json", "--no-progress"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=wh.root)

    def feed():
        for _ in range(repeats):
            proc.stdin.write(chunk)
        proc.stdin.close()

    writer = threading.Thread(target=feed)
    writer.start()
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    writer.join()
    assert os.waitstatus_to_exitcode(status) == 0, err.decode()
    return json.loads(out), usage.ru_maxrss * 1024


def test_stdin_jsonl_streams_in_flat_memory(wh):
    """1 GiB of JSON lines through stdin peaks at about the RSS of 100 MiB: the stream is read
    in bounded batches, never gathered (bench/formats.py pipes 2.3 GiB the same way)."""
    lines = [
        {"id": i, "user": f"user-{i % 977}", "amount": i / 100, "at": f"2026-01-01T00:{i % 60:02}:00Z",
         "note": f"page /p/{(i * 31) % 5003} of session {i % 977}", "ok": i % 3 == 0}
        for i in range(8_000)
    ]
    chunk = jsonl(lines)
    repeats = (100 << 20) // len(chunk)  # ~1 MiB a chunk
    small, small_rss = stdin_load(wh, "db.small", chunk, repeats)
    large, large_rss = stdin_load(wh, "db.large", chunk, repeats * 10)
    assert small["rows_written"] == 8_000 * repeats and large["rows_written"] == 80_000 * repeats
    assert large_rss < small_rss * 1.15, (small_rss >> 20, large_rss >> 20)
    from conftest import duckdb_connection

    loc = wh.table("db.large").metadata_location
    counts = duckdb_connection(wh.root).execute(
        f"SELECT count(*), count(DISTINCT id), min(id), max(id), sum(id) FROM iceberg_scan('{loc}')").fetchone()
    assert counts == (large["rows_written"], 8_000, 0, 7_999, 10 * repeats * sum(range(8_000)))
