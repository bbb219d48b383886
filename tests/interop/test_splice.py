"""Splicing: Parquet inputs with the table's codec and types have their column chunks copied
into the table's data files instead of being decoded and encoded again. Whatever path a file
takes, readers we did not write must see exactly the input's rows."""

import datetime as dt
import decimal
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

UTC = dt.timezone.utc
ROWS = 120_000


def events(first, n):
    ids = list(range(first, first + n))
    return pa.table(
        {
            # pyarrow writes non-nullable fields as REQUIRED columns.
            "id": pa.array(ids, pa.int64()),
            "name": pa.array([None if i % 11 == 0 else f"name-{i:08d}-{'x' * (i % 40)}" for i in ids]),
            # pyarrow stores decimals as fixed bytes; Iceberg tables get INT64 (re-encoded).
            "amount": pa.array([decimal.Decimal(i % 100000) / 1000 for i in ids], pa.decimal128(10, 3)),
            "at": pa.array(
                [dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=i) for i in ids],
                pa.timestamp("us", tz="UTC"),
            ),
            "score": pa.array([math.nan if i % 13 == 0 else i / 7 for i in ids], pa.float64()),
            "tags": pa.array([[f"t{i % 3}", f"u{i % 5}"] if i % 4 else None for i in ids], pa.list_(pa.string())),
            "point": pa.array([{"x": i, "y": float(i) / 2} for i in ids], pa.struct([("x", pa.int32()), ("y", pa.float64())])),
        },
        schema=pa.schema(
            [
                pa.field("id", pa.int64(), nullable=False),
                pa.field("name", pa.string()),
                pa.field("amount", pa.decimal128(10, 3)),
                pa.field("at", pa.timestamp("us", tz="UTC")),
                pa.field("score", pa.float64()),
                pa.field("tags", pa.list_(pa.string())),
                pa.field("point", pa.struct([("x", pa.int32()), ("y", pa.float64())])),
            ]
        ),
    )


def write(path: Path, table: pa.Table, compression="zstd", row_group_size=60_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression=compression, row_group_size=row_group_size)
    return path


def key(row):
    return row["id"]


def normalize(rows):
    """NaN != NaN: compare floats through their repr."""
    out = []
    for r in rows:
        r = dict(r)
        if isinstance(r.get("score"), float) and math.isnan(r["score"]):
            r["score"] = "nan"
        out.append(r)
    return sorted(out, key=key)


def expected_rows(*tables):
    return normalize([r for t in tables for r in t.to_pylist()])


def test_compatible_parquet_is_copied_and_reads_back_exactly(wh):
    src = events(0, ROWS)
    write(wh.root / "in" / "a.parquet", src)
    out = wh.floe("load", "s.events", wh.root / "in" / "a.parquet")
    assert out["rows_written"] == ROWS
    assert out["rows_copied"] == ROWS
    assert out["files_added"] == 1

    want = expected_rows(src)
    assert normalize(wh.pyiceberg_rows("s.events")) == want
    assert normalize(wh.duckdb_rows("s.events")) == want

    # The same input re-encoded gives the same rows.
    again = wh.floe("load", "s.rewritten", wh.root / "in" / "a.parquet", "--rewrite")
    assert again["rows_copied"] == 0
    assert normalize(wh.pyiceberg_rows("s.rewritten")) == want

    # The data file is a proper Iceberg data file: field ids on every column, the table's
    # types (decimal(10,3) as INT64), the input's row groups kept.
    [task] = list(wh.table("s.events").scan().plan_files())
    local = task.file.file_path.removeprefix("file://")
    meta = pq.ParquetFile(local).metadata
    columns = {meta.schema.column(i).path: meta.schema.column(i) for i in range(len(meta.schema))}
    assert columns["amount"].physical_type == "INT64"
    assert columns["amount"].logical_type.type == "DECIMAL"
    assert meta.num_row_groups == 2
    # Field ids sit in the Arrow view of the Parquet schema.
    fields = pq.read_schema(local)
    for f in fields:
        assert f.metadata and b"PARQUET:field_id" in f.metadata, f
    # A REQUIRED input column stays required in the file; the table's column is optional.
    assert not fields.field("id").nullable
    assert not wh.table("s.events").schema().find_field("id").required


def test_copied_files_have_bounds_that_prune(wh):
    write(wh.root / "a.parquet", events(0, ROWS))
    write(wh.root / "b.parquet", events(ROWS, ROWS))
    wh.floe("load", "s.pruned", wh.root / "a.parquet")
    out = wh.floe("load", "s.pruned", wh.root / "b.parquet")
    assert out["rows_copied"] == ROWS
    tbl = wh.table("s.pruned")
    assert len(list(tbl.scan().plan_files())) == 2
    assert len(list(tbl.scan(row_filter=f"id >= {ROWS + 10}").plan_files())) == 1
    assert len(list(tbl.scan(row_filter="name = 'name-00000005-xxxxx'").plan_files())) == 1
    got = tbl.scan(row_filter=f"id >= {ROWS + 10} and id < {ROWS + 20}").to_arrow()
    assert sorted(got.column("id").to_pylist()) == list(range(ROWS + 10, ROWS + 20))

    files = tbl.inspect.files().to_pylist()
    schema = tbl.schema()
    score_id = schema.find_field("score").field_id
    for f in files:
        lower = dict(f["lower_bounds"])
        upper = dict(f["upper_bounds"])
        # NaN is never a bound (the column holds NaNs).
        assert score_id in lower and score_id in upper
        assert not math.isnan(f["readable_metrics"]["score"]["lower_bound"])
        assert not math.isnan(f["readable_metrics"]["score"]["upper_bound"])
        nulls = dict(f["null_value_counts"])
        assert nulls[schema.find_field("name").field_id] > 0
        assert nulls[schema.find_field("id").field_id] == 0
        assert f["readable_metrics"]["amount"]["lower_bound"] is not None
    # DuckDB agrees on a filtered read.
    con_rows = [r for r in wh.duckdb_rows("s.pruned") if r["id"] < 5]
    assert [r["id"] for r in con_rows] == [0, 1, 2, 3, 4]


def test_mixed_inputs_land_in_one_snapshot(wh):
    big = events(0, ROWS)
    snappy = events(ROWS, 50_000)
    small_groups = events(ROWS + 50_000, 20_000)
    write(wh.root / "in" / "1.parquet", big)
    write(wh.root / "in" / "2.parquet", snappy, compression="snappy")
    write(wh.root / "in" / "3.parquet", small_groups, row_group_size=1_000)
    out = wh.floe("load", "s.mixed", wh.root / "in")
    assert out["rows_written"] == ROWS + 70_000
    assert out["rows_copied"] == ROWS
    tbl = wh.table("s.mixed")
    assert len(tbl.metadata.snapshots) == 1
    want = expected_rows(big, snappy, small_groups)
    assert normalize(wh.pyiceberg_rows("s.mixed")) == want
    assert normalize(wh.duckdb_rows("s.mixed")) == want

    # A later file without a column is decoded (the column reads as null), one with an extra
    # column is copied after the table gains it.
    fewer = events(500_000, ROWS).drop_columns(["tags"])
    more = events(700_000, ROWS).append_column("extra", pa.array(["e"] * ROWS))
    write(wh.root / "fewer.parquet", fewer)
    write(wh.root / "more.parquet", more)
    assert wh.floe("load", "s.mixed", wh.root / "fewer.parquet")["rows_copied"] == 0
    out = wh.floe("load", "s.mixed", wh.root / "more.parquet")
    assert out["rows_copied"] == ROWS
    assert out["schema_changes"]
    rows = {r["id"]: r for r in wh.pyiceberg_rows("s.mixed")}
    assert rows[500_001]["tags"] is None and rows[500_001]["extra"] is None
    assert rows[700_001]["extra"] == "e" and rows[700_001]["tags"] == ["t2", "u1"]
    assert rows[1]["extra"] is None


def test_replace_copies_too(wh):
    write(wh.root / "a.parquet", events(0, ROWS))
    write(wh.root / "b.parquet", events(10_000_000, ROWS))
    wh.floe("load", "s.rep", wh.root / "a.parquet")
    out = wh.floe("load", "s.rep", wh.root / "b.parquet", "--mode", "replace")
    assert out["rows_copied"] == ROWS
    ids = [r["id"] for r in wh.duckdb_rows("s.rep")]
    assert ids == list(range(10_000_000, 10_000_000 + ROWS))


def test_damaged_column_chunk_is_refused(wh):
    path = write(wh.root / "damaged.parquet", events(0, ROWS))
    meta = pq.ParquetFile(path).metadata
    column = meta.row_group(1).column(1)  # "name", second row group
    offset = column.dictionary_page_offset or column.data_page_offset
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * 32)
    proc = wh.floe("load", "s.damaged", path, ok=False)
    assert proc.returncode != 0
    # The page check of the copy path names the column (decoding would not get that far).
    assert "damaged.parquet" in proc.stderr and "row group 1" in proc.stderr
    assert "column 'name'" in proc.stderr
    assert "panicked" not in proc.stderr
    # No table was created and no file was left behind.
    cat = wh.catalog()
    tables = cat.list_tables("s") if ("s",) in cat.list_namespaces() else []
    assert ("s", "damaged") not in tables
    data = wh.dir / "s" / "damaged" / "data"
    assert not data.exists() or not any(data.iterdir())


@pytest.mark.parametrize("mode", ["copy-on-write", "merge-on-read"])
def test_upsert_copies_the_load_when_every_row_wins(wh, mode):
    base = events(0, ROWS)
    changed = events(ROWS // 2, ROWS)
    changed = changed.set_column(1, "name", pa.array([f"new-{i}-{'y' * (i % 50)}" for i in range(ROWS)]))
    write(wh.root / "base.parquet", base)
    # Two files of one row group each (row groups must not be small to be copied).
    write(wh.root / "load" / "1.parquet", changed.slice(0, ROWS // 2), row_group_size=ROWS)
    write(wh.root / "load" / "2.parquet", changed.slice(ROWS // 2), row_group_size=ROWS)
    wh.floe("load", "s.up", wh.root / "base.parquet")
    out = wh.floe("load", "s.up", wh.root / "load", "--mode", "merge", "--key", "id", "--merge-mode", mode)
    assert (out["rows_updated"], out["rows_inserted"]) == (ROWS // 2, ROWS // 2)
    assert out["rows_copied"] == ROWS
    want = {r["id"]: r for r in base.to_pylist()}
    want.update({r["id"]: r for r in changed.to_pylist()})
    want = normalize(want.values())
    assert normalize(wh.pyiceberg_rows("s.up")) == want
    assert normalize(wh.duckdb_rows("s.up")) == want


@pytest.mark.parametrize("mode", ["copy-on-write", "merge-on-read"])
def test_upsert_with_hard_deletes_and_duplicates_reads_the_winners_again(wh, mode):
    base = events(0, ROWS)
    write(wh.root / "base.parquet", base)
    wh.floe("load", "s.hd", wh.root / "base.parquet")
    # Keys ROWS-1000 .. ROWS+999, each twice (the later copy wins); every 10th is a delete.
    ids = [i for i in range(ROWS - 1000, ROWS + 1000)] * 2
    load = events(0, len(ids)).set_column(0, "id", pa.array(ids, pa.int64()))
    load = load.set_column(1, "name", pa.array([f"v{k}-{i}" for k, i in enumerate(ids)]))
    load = load.append_column("deleted", pa.array([k >= 2000 and i % 10 == 0 for k, i in enumerate(ids)]))
    # Big enough row groups to be copyable, if every row won (they do not).
    load = pa.concat_tables([load] * 30)
    ids = ids * 30
    load = load.set_column(1, "name", pa.array([f"v{k}-{i}" for k, i in enumerate(ids)]))
    write(wh.root / "load.parquet", load)
    out = wh.floe("load", "s.hd", wh.root / "load.parquet", "--mode", "merge", "--key", "id",
                  "--merge-mode", mode, "--hard-delete-column", "deleted")
    assert out["rows_copied"] == 0
    want = {r["id"]: dict(r, deleted=None) for r in base.to_pylist()}
    last = {}
    for r in load.to_pylist():
        last[r["id"]] = r
    for i, r in last.items():
        if r["deleted"]:
            want.pop(i, None)
        else:
            want[i] = r
    want = normalize(want.values())
    assert normalize(wh.pyiceberg_rows("s.hd")) == want
    assert normalize(wh.duckdb_rows("s.hd")) == want


@pytest.mark.parametrize("path", ["copy", "rewrite"])
def test_metrics_modes_apply_to_copied_and_reencoded_files(wh, tmp_path, path):
    """write.metadata.metrics.*: `none` keeps a (PII) column out of the manifests, the default
    truncate(16) cuts string bounds; readers still see every row and filter correctly."""
    src = write(tmp_path / "in" / "a.parquet", events(0, ROWS))
    extra = ["--rewrite"] if path == "rewrite" else []
    out = wh.floe("load", "m.events", src, *extra,
                  "--table-property", "write.metadata.metrics.column.name=none",
                  "--table-property", "write.metadata.metrics.column.id=counts")
    assert (out["rows_copied"] == ROWS) == (path == "copy")
    table = wh.table("m.events")
    schema = table.schema()
    name_id, id_id, amount_id = (schema.find_field(c).field_id for c in ("name", "id", "amount"))
    files = table.inspect.files().to_pylist()
    assert files

    def keys(metric):
        return {k for k, _ in (metric or [])}

    for f in files:
        for metric in ("column_sizes", "value_counts", "null_value_counts", "lower_bounds", "upper_bounds"):
            assert name_id not in keys(f[metric]), metric
        assert id_id in keys(f["value_counts"]) and id_id not in keys(f["lower_bounds"])
        assert amount_id in keys(f["lower_bounds"]), "other columns keep their bounds"
    # bounds of other columns are kept, so filters still prune and answer exactly
    got = table.scan(row_filter="id >= 1000 and id < 1010").to_arrow().num_rows
    assert got == 10
    from conftest import duckdb_connection

    con = duckdb_connection(tmp_path)
    n = con.execute(f"SELECT count(*) FROM iceberg_scan('{table.metadata_location}') WHERE name = 'name-00000005-xxxxx'").fetchone()[0]
    assert n == 1
