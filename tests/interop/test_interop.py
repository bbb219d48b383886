"""floe writes, pyiceberg and DuckDB read: rows must come back exactly."""

import datetime as dt
import decimal
import json
import os
import sqlite3
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

UTC = dt.timezone.utc


def simple_table(ids, tag="a"):
    ids = list(ids)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": pa.array([f"{tag}-{i}" if i % 7 else None for i in ids], pa.string()),
            "amount": pa.array([decimal.Decimal(i) / 100 for i in ids], pa.decimal128(10, 2)),
            "at": pa.array(
                [dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=i) for i in ids],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


def write(path: Path, table: pa.Table, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, **kw)
    return path


def all_types_table():
    n = 50
    ids = list(range(n))

    def maybe(i, v):
        return None if i % 5 == 3 else v

    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "b": pa.array([maybe(i, i % 2 == 0) for i in ids], pa.bool_()),
            "i8": pa.array([maybe(i, i - 25) for i in ids], pa.int8()),
            "i16": pa.array([maybe(i, i * 100) for i in ids], pa.int16()),
            "i32": pa.array([maybe(i, i * 100000) for i in ids], pa.int32()),
            "u32": pa.array([maybe(i, 4_000_000_000 + i) for i in ids], pa.uint32()),
            "f32": pa.array([maybe(i, i / 4) for i in ids], pa.float32()),
            "f64": pa.array([maybe(i, i / 3) for i in ids], pa.float64()),
            "dec9": pa.array([maybe(i, decimal.Decimal(i * 1234) / 100) for i in ids], pa.decimal128(9, 2)),
            "dec18": pa.array([maybe(i, decimal.Decimal(i * 10**12 + 7) / 10**4) for i in ids], pa.decimal128(18, 4)),
            "dec38": pa.array([maybe(i, decimal.Decimal(i * 10**30 + 1) / 10**10) for i in ids], pa.decimal128(38, 10)),
            "d": pa.array([maybe(i, dt.date(2020, 1, 1) + dt.timedelta(days=i)) for i in ids], pa.date32()),
            "t": pa.array([maybe(i, dt.time(i % 24, i % 60, i % 60, i)) for i in ids], pa.time64("us")),
            "ts": pa.array([maybe(i, dt.datetime(2026, 3, 1, 12) + dt.timedelta(microseconds=i * 1001)) for i in ids], pa.timestamp("us")),
            "tstz": pa.array([maybe(i, dt.datetime(2026, 3, 1, 12, tzinfo=UTC) + dt.timedelta(minutes=i)) for i in ids], pa.timestamp("us", tz="UTC")),
            "ts_ms": pa.array([maybe(i, dt.datetime(2026, 3, 1) + dt.timedelta(milliseconds=i)) for i in ids], pa.timestamp("ms")),
            "s": pa.array([maybe(i, f"s{i}é") for i in ids], pa.string()),
            "ls": pa.array([maybe(i, "x" * i) for i in ids], pa.large_string()),
            "bin": pa.array([maybe(i, bytes([i, 0, 255])) for i in ids], pa.binary()),
            "fixed": pa.array([maybe(i, bytes([i] * 4)) for i in ids], pa.binary(4)),
            "u": pa.array([maybe(i, uuid.UUID(int=i * 7919).bytes) for i in ids], pa.uuid()),
            "st": pa.array(
                [maybe(i, {"a": i, "b": f"b{i}", "inner": {"z": float(i)}}) for i in ids],
                pa.struct([("a", pa.int32()), ("b", pa.string()), ("inner", pa.struct([("z", pa.float64())]))]),
            ),
            "l": pa.array([maybe(i, list(range(i % 4))) for i in ids], pa.list_(pa.int64())),
            "ls_struct": pa.array(
                [maybe(i, [{"x": float(j)} for j in range(i % 3)]) for i in ids],
                pa.list_(pa.struct([("x", pa.float64())])),
            ),
            "m": pa.array([maybe(i, [(f"k{j}", j) for j in range(i % 3)]) for i in ids], pa.map_(pa.string(), pa.int64())),
        }
    )


def normalize(v):
    """Reader-neutral values: UUIDs as bytes, maps as sorted pairs."""
    if isinstance(v, uuid.UUID):
        return v.bytes
    if isinstance(v, dict):
        return {k: normalize(x) for k, x in v.items()}
    if isinstance(v, list):
        if v and all(isinstance(x, tuple) and len(x) == 2 for x in v):
            return sorted((k, normalize(x)) for k, x in v)
        return [normalize(x) for x in v]
    return v


def rows_of(table: pa.Table):
    return sorted((normalize(r) for r in table.to_pylist()), key=lambda r: r["id"])


def test_all_types_round_trip_through_pyiceberg_and_duckdb(wh):
    src = all_types_table()
    write(wh.root / "in" / "all.parquet", src)
    out = wh.floe("load", "types.all", wh.root / "in" / "all.parquet")
    assert out["rows_written"] == src.num_rows
    assert out["operation"] == "append"
    expected = rows_of(src)

    table = wh.table("types.all")
    schema = {f.name: str(f.field_type) for f in table.schema().fields}
    assert schema["i8"] == "int" and schema["u32"] == "long"
    assert schema["dec9"] == "decimal(9, 2)" and schema["dec38"] == "decimal(38, 10)"
    assert schema["ts"] == "timestamp" and schema["tstz"] == "timestamptz" and schema["t"] == "time"
    assert schema["u"] == "uuid" and schema["fixed"] == "fixed[4]"
    got = [normalize(r) for r in wh.pyiceberg_rows("types.all")]
    # pyiceberg 0.12 reads a null list<struct> back as [] even from files it wrote itself
    # (checked with its own append); the data file floe wrote holds the null (DuckDB sees it).
    pyiceberg_expected = [dict(r, ls_struct=r["ls_struct"] or []) for r in expected]
    assert got == pyiceberg_expected

    duck = [normalize(r) for r in wh.duckdb_rows("types.all")]
    assert len(duck) == len(expected)
    for d, e in zip(duck, expected):
        if isinstance(d["u"], str):  # DuckDB hands UUIDs to Arrow as text
            d["u"] = uuid.UUID(d["u"]).bytes
        for k in e:
            assert d[k] == e[k], f"duckdb column {k} differs for id {e['id']}: {d[k]!r} != {e[k]!r}"


def test_data_files_are_done_right(wh):
    # pyiceberg's inspect.files() cannot render uuid bounds; the uuid column is covered above.
    src = all_types_table().drop_columns(["u"])
    write(wh.root / "in" / "all.parquet", src)
    wh.floe("load", "types.files", wh.root / "in" / "all.parquet")
    table = wh.table("types.files")
    files = table.inspect.files().to_pylist()
    assert len(files) == 1
    f = files[0]
    assert f["record_count"] == src.num_rows
    assert f["file_format"] == "PARQUET"
    ids = {fld.name: fld.field_id for fld in table.schema().fields}
    assert dict(f["value_counts"])[ids["id"]] == src.num_rows
    assert dict(f["null_value_counts"])[ids["b"]] == src.column("b").null_count
    lower, upper = dict(f["lower_bounds"]), dict(f["upper_bounds"])
    assert int.from_bytes(lower[ids["id"]], "little") == 0
    assert int.from_bytes(upper[ids["id"]], "little") == src.num_rows - 1

    path = f["file_path"].removeprefix("file://")
    meta = pq.ParquetFile(path)
    arrow_schema = meta.schema_arrow
    assert arrow_schema.field("id").metadata[b"PARQUET:field_id"] == str(ids["id"]).encode()
    physical = {meta.schema.column(i).path: meta.schema.column(i).physical_type for i in range(len(meta.schema))}
    assert physical["dec9"] == "INT32"
    assert physical["dec18"] == "INT64"
    assert physical["dec38"] == "FIXED_LEN_BYTE_ARRAY"
    assert meta.metadata.row_group(0).column(0).compression == "ZSTD"


def test_append_then_replace_one_snapshot_each(wh):
    write(wh.root / "a" / "1.parquet", simple_table(range(0, 100)))
    write(wh.root / "a" / "2.parquet", simple_table(range(100, 250)))
    write(wh.root / "b.parquet", simple_table(range(1000, 1010), tag="b"))

    first = wh.floe("load", "ns.t", wh.root / "a")
    assert first["rows_written"] == 250 and first["table_created"] is True
    second = wh.floe("load", "ns.t", wh.root / "a" / "1.parquet")
    assert second["operation"] == "append" and second["rows_written"] == 100

    table = wh.table("ns.t")
    snaps = table.snapshots()
    assert len(snaps) == 2
    s = table.current_snapshot().summary
    assert s["operation"].value == "append"
    assert s["added-records"] == "100" and s["total-records"] == "350"
    assert s["floe.load-id"] == second["load_id"]
    assert len(wh.pyiceberg_rows("ns.t")) == 350

    rep = wh.floe("load", "ns.t", wh.root / "b.parquet", "--mode", "replace")
    assert rep["operation"] == "overwrite"
    assert rep["files_removed"] == first["files_added"] + second["files_added"]
    table = wh.table("ns.t")
    assert len(table.snapshots()) == 3
    s = table.current_snapshot().summary
    assert s["operation"].value == "overwrite"
    assert s["deleted-records"] == "350" and s["added-records"] == "10" and s["total-records"] == "10"
    assert s["total-data-files"] == "1"
    expected = rows_of(simple_table(range(1000, 1010), tag="b"))
    assert wh.pyiceberg_rows("ns.t") == expected
    assert wh.duckdb_rows("ns.t") == expected


def test_rerun_with_same_load_id_is_a_noop(wh):
    write(wh.root / "x.parquet", simple_table(range(10)))
    a = wh.floe("load", "ns.idem", wh.root / "x.parquet", "--load-id", "run-42")
    b = wh.floe("load", "ns.idem", wh.root / "x.parquet", "--load-id", "run-42")
    assert a["skipped"] is False and b["skipped"] is True
    assert b["snapshot_id"] == a["snapshot_id"]
    assert len(wh.table("ns.idem").snapshots()) == 1
    assert len(wh.pyiceberg_rows("ns.idem")) == 10
    c = wh.floe("load", "ns.idem", wh.root / "x.parquet", "--load-id", "run-43")
    assert c["skipped"] is False
    assert len(wh.pyiceberg_rows("ns.idem")) == 20


def test_small_manifests_merge_and_readers_agree(wh):
    """Many small appends: once commit.manifest.min-count-to-merge small manifests pile up they
    are merged into one; every reader still sees every row, and older snapshots still read."""
    write(wh.root / "0.parquet", simple_table(range(0, 10)))
    wh.floe("load", "ns.many", wh.root / "0.parquet")
    with wh.table("ns.many").transaction() as txn:
        txn.set_properties({"commit.manifest.min-count-to-merge": "4"})
    for n in range(1, 9):
        write(wh.root / f"{n}.parquet", simple_table(range(n * 10, n * 10 + 10)))
        wh.floe("load", "ns.many", wh.root / f"{n}.parquet")
    table = wh.table("ns.many")
    assert len(table.current_snapshot().manifests(table.io)) < 5
    assert [r["id"] for r in wh.pyiceberg_rows("ns.many")] == list(range(90))
    assert [r["id"] for r in wh.duckdb_rows("ns.many")] == list(range(90))
    third = sorted(table.snapshots(), key=lambda s: s.sequence_number)[2].snapshot_id
    assert sorted(r["id"] for r in table.scan(snapshot_id=third).to_arrow().to_pylist()) == list(range(30))
    # Merged entries keep their status history: nothing is reported as added twice.
    assert table.current_snapshot().summary["total-records"] == "90"


def test_empty_input(wh):
    write(wh.root / "x.parquet", simple_table(range(10)))
    write(wh.root / "empty.parquet", simple_table([]))
    wh.floe("load", "ns.e", wh.root / "x.parquet")
    out = wh.floe("load", "ns.e", wh.root / "empty.parquet")
    assert out["snapshot_id"] is None and out["rows_written"] == 0
    assert "nothing changed" in out["message"]
    assert len(wh.table("ns.e").snapshots()) == 1
    out = wh.floe("load", "ns.e", wh.root / "empty.parquet", "--mode", "replace")
    assert out["operation"] == "overwrite" and out["rows_removed"] == 10
    table = wh.table("ns.e")
    assert len(table.snapshots()) == 2
    assert table.scan().to_arrow().num_rows == 0
    assert wh.duckdb_rows("ns.e") == []


@pytest.mark.parametrize("version", [1, 2])
def test_tables_created_by_pyiceberg(wh, version):
    cat = wh.catalog()
    cat.create_namespace("py")
    src = simple_table(range(0, 20), tag="py")
    table = cat.create_table(f"py.v{version}", schema=src.schema, properties={"format-version": str(version)})
    table.append(src)
    write(wh.root / "more.parquet", simple_table(range(20, 30), tag="floe"))

    out = wh.floe("load", f"py.v{version}", wh.root / "more.parquet")
    assert out["table_created"] is False
    expected = rows_of(pa.concat_tables([src, simple_table(range(20, 30), tag="floe")]))
    assert wh.pyiceberg_rows(f"py.v{version}") == expected
    assert wh.duckdb_rows(f"py.v{version}") == expected

    # pyiceberg's own overwrite must remove the files floe appended.
    table = wh.table(f"py.v{version}")
    table.overwrite(simple_table(range(100, 105), tag="over"))
    assert wh.pyiceberg_rows(f"py.v{version}") == rows_of(simple_table(range(100, 105), tag="over"))

    # And floe's replace removes pyiceberg's files.
    wh.floe("load", f"py.v{version}", wh.root / "more.parquet", "--mode", "replace")
    assert wh.pyiceberg_rows(f"py.v{version}") == rows_of(simple_table(range(20, 30), tag="floe"))
    assert wh.duckdb_rows(f"py.v{version}") == rows_of(simple_table(range(20, 30), tag="floe"))


def test_pyiceberg_delete_finds_floe_files(wh):
    write(wh.root / "x.parquet", simple_table(range(50)))
    wh.floe("load", "ns.del", wh.root / "x.parquet")
    table = wh.table("ns.del")
    table.delete("id < 10")
    assert [r["id"] for r in wh.pyiceberg_rows("ns.del")] == list(range(10, 50))


def test_partitioned_table_from_pyiceberg(wh):
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform

    cat = wh.catalog()
    cat.create_namespace("p")
    src = pa.table({"id": pa.array(range(30), pa.int64()), "cat": pa.array([f"c{i % 3}" for i in range(30)])})
    schema = cat.create_table("p.tmp", schema=src.schema).schema()
    cat.drop_table("p.tmp")
    spec = PartitionSpec(PartitionField(source_id=schema.find_field("cat").field_id, field_id=1000, transform=IdentityTransform(), name="cat"))
    cat.create_table("p.t", schema=schema, partition_spec=spec)
    write(wh.root / "p.parquet", src)
    out = wh.floe("load", "p.t", wh.root / "p.parquet")
    assert out["files_added"] == 3
    files = wh.table("p.t").inspect.files().to_pylist()
    assert sorted(f["partition"]["cat"] for f in files) == ["c0", "c1", "c2"]
    assert wh.pyiceberg_rows("p.t") == rows_of(src)
    assert wh.duckdb_rows("p.t") == rows_of(src)


def test_target_file_size_rolls_files(wh):
    big = pa.table({"id": pa.array(range(300_000), pa.int64()), "s": pa.array([f"{i:0>64}" for i in range(300_000)])})
    write(wh.root / "big.parquet", big, row_group_size=50_000)
    out = wh.floe("load", "ns.roll", wh.root / "big.parquet", "--target-file-size", "1MiB", "--compression", "snappy")
    assert out["files_added"] > 1
    files = wh.table("ns.roll").inspect.files().to_pylist()
    assert sum(f["record_count"] for f in files) == 300_000
    path = files[0]["file_path"].removeprefix("file://")
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "SNAPPY"
    assert len(wh.duckdb_rows("ns.roll")) == 300_000


def test_table_properties_are_honoured(wh):
    cat = wh.catalog()
    cat.create_namespace("props")
    src = simple_table(range(1000))
    cat.create_table(
        "props.t",
        schema=src.schema,
        properties={"write.parquet.compression-codec": "gzip", "write.target-file-size-bytes": "1"},
    )
    write(wh.root / "a.parquet", src, row_group_size=100)
    out = wh.floe("load", "props.t", wh.root / "a.parquet", "--batch-rows", "100")
    assert out["files_added"] > 1
    path = wh.table("props.t").inspect.files().to_pylist()[0]["file_path"].removeprefix("file://")
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "GZIP"


def data_files_on_disk(wh):
    return sorted(p for p in wh.dir.rglob("*.parquet"))


def test_bad_input_leaves_table_unchanged(wh):
    write(wh.root / "good.parquet", simple_table(range(10)))
    wh.floe("load", "ns.bad", wh.root / "good.parquet")
    before = wh.table("ns.bad").metadata_location
    files_before = data_files_on_disk(wh)

    corrupt = wh.root / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet at all")
    proc = wh.floe("load", "ns.bad", wh.root / "good.parquet", corrupt, ok=False)
    assert proc.returncode != 0
    assert "corrupt.parquet" in proc.stderr
    assert "panicked" not in proc.stderr

    wrong = pa.table({"id": pa.array(["x"]), "name": pa.array(["y"]), "amount": pa.array([decimal.Decimal("1.00")], pa.decimal128(10, 2)), "at": pa.array([None], pa.timestamp("us", tz="UTC"))})
    write(wh.root / "wrong.parquet", wrong)
    proc = wh.floe("load", "ns.bad", wh.root / "good.parquet", wh.root / "wrong.parquet", ok=False)
    assert proc.returncode != 0
    assert "'id'" in proc.stderr and "wrong.parquet" in proc.stderr

    extra = simple_table(range(3)).append_column("surprise", pa.array([1, 2, 3]))
    write(wh.root / "extra.parquet", extra)
    proc = wh.floe("load", "ns.bad", wh.root / "extra.parquet", "--schema-evolution", "strict", ok=False)
    assert proc.returncode != 0 and "surprise" in proc.stderr

    assert wh.table("ns.bad").metadata_location == before
    assert data_files_on_disk(wh) == files_before, "a failed load left data files behind"
    assert len(wh.pyiceberg_rows("ns.bad")) == 10


def test_bad_names_and_catalogs(wh):
    write(wh.root / "x.parquet", simple_table(range(3)))
    proc = wh.floe("load", "no_namespace", wh.root / "x.parquet", ok=False)
    assert proc.returncode != 0 and "no_namespace" in proc.stderr
    proc = wh.floe("load", "ns.t", wh.root / "missing.parquet", ok=False)
    assert proc.returncode != 0 and "missing.parquet" in proc.stderr
    # A catalog that cannot be opened: its directory would have to live inside a file.
    blocker = wh.root / "blocker"
    blocker.write_text("not a directory")
    proc = run_floe(["load", "ns.t", wh.root / "x.parquet", "--warehouse", blocker / "wh"], wh.root, {})
    assert proc.returncode != 0 and "catalog 'default'" in proc.stderr and "panicked" not in proc.stderr


def run_floe(args, cwd, env):
    import subprocess
    from conftest import FLOE_BIN

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYICEBERG_")}
    full_env.update(env)
    return subprocess.run([FLOE_BIN, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=full_env)


def test_named_catalogs_from_yaml_and_env(tmp_path):
    write(tmp_path / "x.parquet", simple_table(range(5)))
    lake = tmp_path / "lake"
    (tmp_path / ".pyiceberg.yaml").write_text(
        f"catalog:\n  lake:\n    type: sql\n    uri: sqlite:///{lake}/catalog.db\n    warehouse: file://{lake}\n"
    )
    env = {"HOME": str(tmp_path)}
    proc = run_floe(["load", "ns.t", "x.parquet", "--catalog", "lake", "--json"], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows_written"] == 5
    assert (lake / "catalog.db").exists()

    # Environment variables define (or override) catalogs the same way pyiceberg reads them.
    other = tmp_path / "other"
    env2 = {
        "HOME": str(tmp_path / "nohome"),
        "PYICEBERG_CATALOG__ENVCAT__TYPE": "sql",
        "PYICEBERG_CATALOG__ENVCAT__URI": f"sqlite:///{other}/catalog.db",
        "PYICEBERG_CATALOG__ENVCAT__WAREHOUSE": f"file://{other}",
        "PYICEBERG_DEFAULT_CATALOG": "envcat",
    }
    proc = run_floe(["load", "ns.t", tmp_path / "x.parquet", "--json"], tmp_path.parent, env2)
    assert proc.returncode == 0, proc.stderr
    assert (other / "catalog.db").exists()
    from pyiceberg.catalog.sql import SqlCatalog

    cat = SqlCatalog("envcat", uri=f"sqlite:///{other}/catalog.db", warehouse=f"file://{other}")
    assert cat.load_table("ns.t").scan().to_arrow().num_rows == 5

    env3 = {"HOME": str(tmp_path / "nohome"), "PYICEBERG_CATALOG__R__URI": "http://127.0.0.1:1"}
    proc = run_floe(["load", "ns.t", "x.parquet", "--catalog", "r"], tmp_path, env3)
    assert proc.returncode == 1 and "catalog 'r'" in proc.stderr and "configuration" in proc.stderr, proc.stderr

    env4 = {"HOME": str(tmp_path / "nohome"), "PYICEBERG_CATALOG__H__URI": "thrift://127.0.0.1:1"}
    proc = run_floe(["load", "ns.t", "x.parquet", "--catalog", "h"], tmp_path, env4)
    assert proc.returncode != 0 and "not support" in proc.stderr

    proc = run_floe(["load", "ns.t", "x.parquet", "--catalog", "nope"], tmp_path, {"HOME": str(tmp_path / "nohome")})
    assert proc.returncode != 0 and "nope" in proc.stderr


def test_default_catalog_is_embedded_and_pyiceberg_compatible(tmp_path):
    write(tmp_path / "x.parquet", simple_table(range(5)))
    proc = run_floe(["load", "a.b.t", "x.parquet", "--json"], tmp_path, {"HOME": str(tmp_path / "nohome")})
    assert proc.returncode == 0, proc.stderr
    db = tmp_path / "warehouse" / "catalog.db"
    cols = [r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(iceberg_tables)")]
    assert cols == ["catalog_name", "table_namespace", "table_name", "metadata_location", "previous_metadata_location", "iceberg_type"]
    from pyiceberg.catalog.sql import SqlCatalog

    cat = SqlCatalog("default", uri=f"sqlite:///{db}", warehouse=f"file://{tmp_path / 'warehouse'}")
    assert cat.load_table("a.b.t").scan().to_arrow().num_rows == 5
