"""Schema evolution: new columns and safe widening, committed atomically with the data."""

import decimal
from pathlib import Path

import pyarrow as pa
import pytest

from test_interop import write


def users_v1(ids):
    ids = list(ids)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "age": pa.array([20 + i % 50 for i in ids], pa.int32()),
            "score": pa.array([i / 2 for i in ids], pa.float32()),
            "balance": pa.array([decimal.Decimal(i) / 100 for i in ids], pa.decimal128(10, 2)),
            "address": pa.array([{"city": f"c{i}"} for i in ids], pa.struct([("city", pa.string())])),
        }
    )


def users_v2(ids):
    """Columns reordered, types widened, a nested field and a top-level column added."""
    ids = list(ids)
    return pa.table(
        {
            "email": pa.array([f"u{i}@x.io" for i in ids], pa.string()),
            "address": pa.array(
                [{"city": f"c{i}", "zip": f"{i:05}"} for i in ids],
                pa.struct([("city", pa.string()), ("zip", pa.string())]),
            ),
            "balance": pa.array([decimal.Decimal(i) / 100 for i in ids], pa.decimal128(14, 2)),
            "score": pa.array([i / 2 for i in ids], pa.float64()),
            "age": pa.array([20 + i % 50 for i in ids], pa.int64()),
            "id": pa.array(ids, pa.int64()),
        }
    )


def metadata_files(wh, table):
    location = Path(wh.table(table).metadata.location.removeprefix("file://"))
    return sorted(location.glob("metadata/*.metadata.json"))


def test_new_columns_and_widening_land_with_the_data(wh):
    write(wh.root / "v1.parquet", users_v1(range(5)))
    write(wh.root / "v2.parquet", users_v2(range(5, 8)))
    wh.floe("load", "app.users", wh.root / "v1.parquet")
    before = wh.table("app.users")
    old_schema_id = before.metadata.current_schema_id
    versions_before = len(metadata_files(wh, "app.users"))

    out = wh.floe("load", "app.users", wh.root / "v2.parquet")
    changes = " | ".join(out["schema_changes"])
    for expected in ["added column 'email'", "added column 'address.zip'", "'age' widened from int to long",
                     "'score' widened from float to double", "'balance' widened from decimal(10, 2) to decimal(14, 2)"]:
        assert expected in changes, changes

    table = wh.table("app.users")
    # One new metadata version holding both the schema and the snapshot that uses it.
    assert len(metadata_files(wh, "app.users")) == versions_before + 1
    assert table.metadata.current_schema_id != old_schema_id
    assert table.current_snapshot().schema_id == table.metadata.current_schema_id
    assert out["schema_id"] == table.metadata.current_schema_id
    types = {f.name: str(f.field_type) for f in table.schema().fields}
    assert types["age"] == "long" and types["score"] == "double" and types["balance"] == "decimal(14, 2)"
    # Existing field ids never move; new ones are fresh.
    old_ids = {f.name: f.field_id for f in before.schema().fields}
    new_ids = {f.name: f.field_id for f in table.schema().fields}
    assert all(new_ids[k] == v for k, v in old_ids.items())
    assert new_ids["email"] > max(before.metadata.last_column_id, *old_ids.values())

    rows = wh.pyiceberg_rows("app.users")
    assert [r["email"] for r in rows] == [None] * 5 + ["u5@x.io", "u6@x.io", "u7@x.io"]
    assert rows[0]["address"] == {"city": "c0", "zip": None}
    assert rows[6]["address"] == {"city": "c6", "zip": "00006"}
    duck = wh.duckdb_rows("app.users")
    assert [r["email"] for r in duck] == [r["email"] for r in rows]
    assert [r["age"] for r in duck] == [r["age"] for r in rows]


def test_strict_refuses_and_changes_nothing(wh):
    write(wh.root / "v1.parquet", users_v1(range(5)))
    write(wh.root / "v2.parquet", users_v2(range(5, 8)))
    wh.floe("load", "app.users", wh.root / "v1.parquet")
    before = wh.table("app.users").metadata_location
    proc = wh.floe("load", "app.users", wh.root / "v2.parquet", "--schema-evolution", "strict", ok=False)
    assert proc.returncode != 0
    assert "strict" in proc.stderr and "v2.parquet" in proc.stderr
    assert wh.table("app.users").metadata_location == before
    # The same data without changes loads fine under strict.
    out = wh.floe("load", "app.users", wh.root / "v1.parquet", "--schema-evolution", "strict")
    assert out["schema_changes"] == []


@pytest.mark.parametrize(
    "column,bad,message",
    [
        ("age", pa.array(["x"] * 3), "column 'age' cannot change from int to string"),
        ("score", pa.array([1, 2, 3], pa.int64()), "column 'score' cannot change from float to long"),
        ("balance", pa.array([decimal.Decimal("1.000")] * 3, pa.decimal128(12, 3)), "column 'balance' cannot change from decimal(10, 2) to decimal(12, 3)"),
        ("balance", pa.array([decimal.Decimal("1.0")] * 3, pa.decimal128(8, 1)), "column 'balance' cannot change from decimal(10, 2) to decimal(8, 1)"),
        ("address", pa.array([["a"]] * 3, pa.list_(pa.string())), "column 'address' cannot change from struct"),
        ("id", pa.array([1.5, 2.5, 3.5]), "column 'id' cannot change from long to double"),
    ],
)
def test_refused_changes_name_the_column_and_both_types(wh, column, bad, message):
    write(wh.root / "v1.parquet", users_v1(range(3)))
    wh.floe("load", "app.users", wh.root / "v1.parquet")
    before = wh.table("app.users").metadata_location
    t = users_v1(range(3))
    t = t.set_column(t.schema.get_field_index(column), column, bad)
    write(wh.root / "bad.parquet", t)
    proc = wh.floe("load", "app.users", wh.root / "bad.parquet", ok=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert wh.table("app.users").metadata_location == before


def test_missing_columns_read_as_null_unless_required(wh):
    cat = wh.catalog()
    cat.create_namespace("req")
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("note", pa.string())])
    cat.create_table("req.t", schema=schema)
    write(wh.root / "ok.parquet", pa.table({"id": pa.array([1, 2], pa.int64())}, schema=pa.schema([pa.field("id", pa.int64(), nullable=False)])))
    out = wh.floe("load", "req.t", wh.root / "ok.parquet")
    assert out["schema_changes"] == []
    assert [r["note"] for r in wh.pyiceberg_rows("req.t")] == [None, None]
    write(wh.root / "no_id.parquet", pa.table({"note": ["x"]}))
    proc = wh.floe("load", "req.t", wh.root / "no_id.parquet", ok=False)
    assert proc.returncode != 0 and "'id' is required" in proc.stderr
    # A nullable input column relaxes a required one (like pyiceberg's union_by_name).
    write(wh.root / "nullable.parquet", pa.table({"id": pa.array([3], pa.int64()), "note": ["y"]}))
    out = wh.floe("load", "req.t", wh.root / "nullable.parquet")
    assert "column 'id' became optional" in out["schema_changes"]
    assert not wh.table("req.t").schema().find_field("id").required


def test_files_of_one_load_may_differ(wh):
    write(wh.root / "in" / "a.parquet", users_v1(range(3)))
    write(wh.root / "in" / "b.parquet", users_v2(range(3, 6)))
    out = wh.floe("load", "app.multi", wh.root / "in")
    assert out["table_created"] and out["rows_written"] == 6
    table = wh.table("app.multi")
    assert len(table.schemas()) == 1, "a new table starts with the merged schema"
    assert {f.name for f in table.schema().fields} >= {"email", "address"}
    assert [r["email"] for r in wh.pyiceberg_rows("app.multi")][:3] == [None] * 3


def test_table_renamed_and_dropped_by_pyiceberg(wh):
    write(wh.root / "v1.parquet", users_v1(range(3)))
    wh.floe("load", "app.evolved", wh.root / "v1.parquet")
    table = wh.table("app.evolved")
    with table.update_schema() as update:
        update.rename_column("score", "rating")
        update.delete_column("balance")
    table = wh.table("app.evolved")
    dropped_ids = table.metadata.last_column_id

    # New data uses the new name; it also brings back a 'balance' column, which is a new column.
    t = users_v1(range(3, 5)).rename_columns(["id", "age", "rating", "balance", "address"])
    write(wh.root / "v3.parquet", t)
    out = wh.floe("load", "app.evolved", wh.root / "v3.parquet")
    assert out["schema_changes"] == ["added column 'balance' (decimal(10, 2))"]
    table = wh.table("app.evolved")
    assert table.schema().find_field("balance").field_id > dropped_ids
    rows = wh.pyiceberg_rows("app.evolved")
    assert [r["rating"] for r in rows] == [0.0, 0.5, 1.0, 1.5, 2.0]
    # Old files' balance was dropped: it must not come back.
    assert [r["balance"] for r in rows] == [None, None, None, decimal.Decimal("0.03"), decimal.Decimal("0.04")]
    duck = wh.duckdb_rows("app.evolved")
    assert [r["rating"] for r in duck] == [r["rating"] for r in rows]
    assert [r["balance"] for r in duck] == [r["balance"] for r in rows]
