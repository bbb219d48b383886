"""Partitioned tables: every transform (checked against pyiceberg's own transforms), dynamic
partition overwrite, tables whose spec evolved, and many partitions under an open-file cap."""

import datetime as dt
import decimal
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from test_interop import UTC, rows_of, write


def mixed_table(n=120):
    ids = list(range(n))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "i": pa.array([(i * 37) % 1000 - 500 for i in ids], pa.int32()),
            "name": pa.array([f"name-{i % 13:02}-{i}" if i % 11 else None for i in ids], pa.string()),
            "d": pa.array([dt.date(2019, 12, 25) + dt.timedelta(days=i * 9) for i in ids], pa.date32()),
            "ts": pa.array([dt.datetime(2025, 12, 31, 20) + dt.timedelta(minutes=i * 97) for i in ids], pa.timestamp("us")),
            "tstz": pa.array([dt.datetime(2024, 2, 28, 22, tzinfo=UTC) + dt.timedelta(hours=i * 5) for i in ids], pa.timestamp("us", tz="UTC")),
            "dec": pa.array([decimal.Decimal(i * 123 - 5000) / 100 for i in ids], pa.decimal128(9, 2)),
            "bin": pa.array([bytes([i % 7, i % 5]) for i in ids], pa.binary()),
            "u": pa.array([uuid.UUID(int=i * 1_000_003).bytes for i in ids], pa.uuid()),
            "cat": pa.array([["red", "green", "blue"][i % 3] for i in ids], pa.string()),
        }
    )


TRANSFORMS = [
    ("identity(cat)", "cat", "identity"),
    ("i", "i", "identity"),
    ("year(d)", "d", "year"),
    ("month(ts)", "ts", "month"),
    ("day(tstz)", "tstz", "day"),
    ("hour(ts)", "ts", "hour"),
    ("hour(tstz)", "tstz", "hour"),
    ("year(tstz)", "tstz", "year"),
    ("month(d)", "d", "month"),
    ("bucket(16, id)", "id", "bucket[16]"),
    ("bucket(7, i)", "i", "bucket[7]"),
    ("bucket(8, name)", "name", "bucket[8]"),
    ("bucket(4, d)", "d", "bucket[4]"),
    ("bucket(5, ts)", "ts", "bucket[5]"),
    ("bucket(3, dec)", "dec", "bucket[3]"),
    ("bucket(6, bin)", "bin", "bucket[6]"),
    ("bucket(9, u)", "u", "bucket[9]"),
    ("truncate(3, i)", "i", "truncate[3]"),
    ("truncate(100, id)", "id", "truncate[100]"),
    ("truncate(7, name)", "name", "truncate[7]"),
    ("truncate(50, dec)", "dec", "truncate[50]"),
    ("truncate(1, bin)", "bin", "truncate[1]"),
    ("void(cat)", "cat", "void"),
]


def live_files(table):
    """(path, first partition value, spec id) of every live data file, read from the manifests
    (pyiceberg's inspect.files() cannot render uuid bounds)."""
    out = []
    for manifest in table.current_snapshot().manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            df = entry.data_file
            out.append((df.file_path.removeprefix("file://"), df.partition[0] if len(df.partition) else None, df.spec_id))
    return out


def pyiceberg_transform(text, source_type):
    from pyiceberg.transforms import parse_transform

    return parse_transform(text).transform(source_type)


@pytest.mark.parametrize("spec,column,transform", TRANSFORMS, ids=[t[0] for t in TRANSFORMS])
def test_every_transform_matches_pyiceberg(wh, spec, column, transform):
    src = mixed_table()
    write(wh.root / "in.parquet", src)
    out = wh.floe("load", "part.t", wh.root / "in.parquet", "--partition-by", spec, "--max-open-files", "64")
    table = wh.table("part.t")
    pfield = table.spec().fields[0]
    assert str(pfield.transform) == transform
    source_type = table.schema().find_field(column).field_type
    fn = pyiceberg_transform(transform, source_type)

    files = live_files(table)
    assert out["files_added"] == len(files)
    seen = set()
    for path, recorded, _ in files:
        data = pq.read_table(path, columns=[column])
        values = data.column(column).to_pylist()
        if column == "u":
            values = [uuid.UUID(bytes=v) if v is not None else None for v in values]
        computed = {fn(v) for v in values}
        assert len(computed) == 1, f"file {path} spans partitions {computed}"
        expected = computed.pop()
        if transform.startswith("day") and expected is not None and isinstance(recorded, dt.date):
            expected = dt.date(1970, 1, 1) + dt.timedelta(days=expected)
        assert recorded == expected, f"{spec}: manifest says {recorded!r}, pyiceberg computes {expected!r}"
        assert recorded not in seen, "two files for one partition value"
        seen.add(recorded)

    got = wh.pyiceberg_rows("part.t")
    assert [r["id"] for r in got] == list(range(src.num_rows))
    assert [dict(r, u=None) for r in got] == [dict(r, u=None) for r in rows_of(src)]
    duck = wh.duckdb_rows("part.t")
    assert [r["id"] for r in duck] == list(range(src.num_rows))


def test_partition_filters_prune_and_read_exactly(wh):
    from pyiceberg.expressions import EqualTo, GreaterThanOrEqual

    src = mixed_table(300)
    write(wh.root / "in.parquet", src)
    wh.floe("load", "part.prune", wh.root / "in.parquet", "--partition-by", "cat, month(tstz)")
    table = wh.table("part.prune")
    all_files = len(list(table.scan().plan_files()))
    red = table.scan(row_filter=EqualTo("cat", "red"))
    assert len(list(red.plan_files())) < all_files
    assert sorted(r["id"] for r in red.to_arrow().to_pylist()) == [i for i in range(300) if i % 3 == 0]
    late = table.scan(row_filter=GreaterThanOrEqual("tstz", "2024-05-01T00:00:00+00:00"))
    assert len(list(late.plan_files())) < all_files
    expected = sorted(r["id"] for r in src.to_pylist() if r["tstz"] >= dt.datetime(2024, 5, 1, tzinfo=UTC))
    assert sorted(r["id"] for r in late.to_arrow().to_pylist()) == expected
    con = __import__("conftest").duckdb_connection(wh.root)
    n = con.execute(f"SELECT count(*) FROM iceberg_scan('{table.metadata_location}') WHERE cat = 'red'").fetchone()[0]
    assert n == 100


def test_replace_partitions_touches_only_the_loads_partitions(wh):
    src = mixed_table(90)
    write(wh.root / "all.parquet", src)
    wh.floe("load", "part.dpo", wh.root / "all.parquet", "--partition-by", "cat")
    fix = pa.table({c: src.column(c) for c in src.column_names}).filter(pa.compute.equal(src.column("cat"), "green")).slice(0, 5)
    fix = fix.set_column(0, "id", pa.array([1000 + i for i in range(5)], pa.int64()))
    write(wh.root / "fix.parquet", fix)
    out = wh.floe("load", "part.dpo", wh.root / "fix.parquet", "--mode", "replace", "--replace-partitions")
    assert out["operation"] == "overwrite" and out["mode"] == "replace-partitions"
    assert out["rows_removed"] == 30 and out["files_removed"] == 1
    table = wh.table("part.dpo")
    assert table.current_snapshot().summary["replace-partitions"] == "true"
    ids = [r["id"] for r in wh.pyiceberg_rows("part.dpo")]
    expected = sorted([i for i in range(90) if i % 3 != 1] + [1000 + i for i in range(5)])
    assert ids == expected
    assert [r["id"] for r in wh.duckdb_rows("part.dpo")] == expected
    # Empty input replaces nothing.
    write(wh.root / "empty.parquet", fix.slice(0, 0))
    out = wh.floe("load", "part.dpo", wh.root / "empty.parquet", "--mode", "replace", "--replace-partitions")
    assert out["snapshot_id"] is None
    assert [r["id"] for r in wh.pyiceberg_rows("part.dpo")] == expected


def test_partition_spec_evolved_by_pyiceberg(wh):
    from pyiceberg.transforms import BucketTransform, IdentityTransform

    src = mixed_table(60)
    cat = wh.catalog()
    cat.create_namespace("evo")
    table = cat.create_table("evo.t", schema=src.schema)
    with table.update_spec() as update:
        update.add_field("cat", IdentityTransform(), "cat")
    table = cat.load_table("evo.t")
    table.append(src.slice(0, 30))
    with table.update_spec() as update:
        update.add_field("id", BucketTransform(4), "id_bucket")
    table = cat.load_table("evo.t")
    old_spec = table.specs()[1]
    assert table.spec().spec_id != old_spec.spec_id

    write(wh.root / "b.parquet", src.slice(30, 30))
    wh.floe("load", "evo.t", wh.root / "b.parquet")
    table = wh.table("evo.t")
    by_spec = {}
    for path, _, spec_id in live_files(table):
        by_spec.setdefault(spec_id, []).append(path)
    assert set(by_spec) == {old_spec.spec_id, table.spec().spec_id}
    assert [r["id"] for r in wh.pyiceberg_rows("evo.t")] == list(range(60))
    assert [r["id"] for r in wh.duckdb_rows("evo.t")] == list(range(60))

    # Dynamic overwrite replaces only current-spec partitions present in the load.
    write(wh.root / "c.parquet", src.slice(30, 1))
    wh.floe("load", "evo.t", wh.root / "c.parquet", "--mode", "replace", "--replace-partitions")
    rows = wh.pyiceberg_rows("evo.t")
    assert 30 in [r["id"] for r in rows] and all(i in [r["id"] for r in rows] for i in range(30))

    # Full replace removes files of every spec.
    write(wh.root / "d.parquet", src.slice(0, 3))
    out = wh.floe("load", "evo.t", wh.root / "d.parquet", "--mode", "replace")
    assert [r["id"] for r in wh.pyiceberg_rows("evo.t")] == [0, 1, 2]
    assert all(spec_id == wh.table("evo.t").spec().spec_id for _, _, spec_id in live_files(wh.table("evo.t")))
    assert out["files_removed"] > 0


def test_many_partitions_with_an_open_file_cap(wh):
    n = 20_000
    src = pa.table({"id": pa.array(range(n), pa.int64()), "k": pa.array([i % 2000 for i in range(n)], pa.int64())})
    write(wh.root / "many.parquet", src, row_group_size=5000)
    out = wh.floe("load", "part.many", wh.root / "many.parquet", "--partition-by", "k", "--max-open-files", "8")
    files = live_files(wh.table("part.many"))
    # At most the 8 fan-out files before the load switched to clustering, then one per partition.
    assert out["files_added"] == len(files)
    assert 2000 <= len(files) <= 2008
    for path, k, _ in files:
        assert set(pq.read_table(path, columns=["k"]).column("k").to_pylist()) == {k}
    assert [r["id"] for r in wh.pyiceberg_rows("part.many")] == list(range(n))


def test_bad_partition_specs_are_clear_errors(wh):
    write(wh.root / "in.parquet", mixed_table(5))
    for spec, message in [("day(nope)", "no column 'nope'"), ("day(name)", "cannot partition column 'name'"), ("bucket(x, id)", "not a positive number"), ("year(id)", "cannot partition column 'id'")]:
        proc = wh.floe("load", "part.bad", wh.root / "in.parquet", "--partition-by", spec, ok=False)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert not (wh.dir / "part" / "bad").exists()


def test_a_column_named_like_the_internal_partition_column(wh):
    """floe tags batches with `_partition` internally; a table column of that name is data."""
    src = pa.table({"id": pa.array(range(40), pa.int64()), "_partition": pa.array([f"p{i % 3}" for i in range(40)])})
    write(wh.root / "in.parquet", src)
    out = wh.floe("load", "part.clash", wh.root / "in.parquet", "--partition-by", "identity(_partition), bucket(2, id)")
    assert out["files_added"] == 6
    got = wh.pyiceberg_rows("part.clash")
    assert got == src.to_pylist()
