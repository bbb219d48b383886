"""floe as dlt's Iceberg destination (floe.dlt), against real dlt from PyPI.

Each test runs the same dlt pipeline twice: once into floe's destination and once into the
reference (dlt's own filesystem + iceberg, or dlt's DuckDB destination for what dlt's Iceberg
job cannot do: delete-insert, hard deletes), then reads floe's tables with pyiceberg and DuckDB
and compares them row for row with the reference. floe must leave exactly one snapshot per
table per load package.
"""

import datetime as dt
import glob
import os
import uuid
from decimal import Decimal

import dlt
import pytest
from dlt.destinations.impl.filesystem.iceberg_adapter import iceberg_adapter, iceberg_partition

import floe
import floe.dlt
from conftest import duckdb_connection


def canon(value):
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc)
    if isinstance(value, Decimal):
        return value.normalize()
    return value


class Lake:
    """One dlt pipeline into one destination, and readers for its tables."""

    def __init__(self, root, kind, **dest_args):
        self.root = root / kind
        self.kind = kind
        self.bucket = self.root / "bucket"
        if kind == "floe":
            dest = floe.dlt.filesystem(bucket_url=str(self.bucket), **dest_args)
        elif kind == "dlt-iceberg":
            dest = dlt.destinations.filesystem(bucket_url=str(self.bucket), **dest_args)
        else:
            dest = dlt.destinations.duckdb(str(self.root / "ref.duckdb"))
        self.pipeline = dlt.pipeline(
            f"p{uuid.uuid4().hex[:8]}",
            destination=dest,
            dataset_name="ds",
            pipelines_dir=str(self.root / "pipelines"),
        )

    def run(self, data, **kw):
        if self.kind == "dlt-iceberg":
            kw.setdefault("table_format", "iceberg")
        info = self.pipeline.run(data, **kw)
        info.raise_on_failed_jobs()
        return info

    def metadata(self, table):
        files = sorted(glob.glob(f"{self.bucket}/ds/{table}/metadata/*.metadata.json"))
        assert files, f"no Iceberg metadata for {table} in {self.bucket}"
        return files[-1]

    def iceberg(self, table):
        from pyiceberg.catalog.sql import SqlCatalog

        catalog = SqlCatalog("read", uri="sqlite:///:memory:", warehouse=f"file://{self.bucket}")
        catalog.create_namespace("ds")
        return catalog.register_table(f"ds.{table}", self.metadata(table))

    def rows(self, table, drop=("_dlt_load_id",), reader="pyiceberg"):
        if self.kind == "duckdb":
            with self.pipeline.sql_client() as sql:
                with sql.execute_query(f"SELECT * FROM {sql.make_qualified_table_name(table)}") as cur:
                    names = [d[0] for d in cur.description]
                    data = [dict(zip(names, r)) for r in cur.fetchall()]
        elif reader == "pyiceberg":
            data = self.iceberg(table).scan().to_arrow().to_pylist()
        else:
            con = duckdb_connection(self.root)
            data = con.execute(f"SELECT * FROM iceberg_scan('{self.metadata(table)}')").arrow()
            data = (data.read_all() if hasattr(data, "read_all") else data).to_pylist()
        out = [tuple(sorted((k, canon(v)) for k, v in r.items() if k not in drop)) for r in data]
        return sorted(out, key=repr)

    def snapshots(self, table):
        return self.iceberg(table).snapshots()


def assert_same(floe_lake, ref, tables, drop=("_dlt_load_id",)):
    for table in tables:
        expected = ref.rows(table, drop)
        assert expected, f"reference table {table} is empty"
        for reader in ("pyiceberg", "duckdb"):
            got = floe_lake.rows(table, drop, reader)
            assert got == expected, f"{table} read by {reader} differs from the reference"


def one_snapshot_per_package(lake, table, packages):
    snaps = lake.snapshots(table)
    assert len(snaps) == packages, [s.summary for s in snaps]
    assert all(s.summary["floe.load-id"].startswith("dlt:") for s in snaps), [s.summary for s in snaps]


def records(ids, version=0):
    base = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for i in ids:
        yield {
            "id": i,
            "name": f"user {i} v{version}",
            "amount": Decimal(f"{i}.{version:02d}"),
            "ts": base + dt.timedelta(hours=i, minutes=version),
            "day": (base + dt.timedelta(days=i % 5)).date(),
            "flag": (i + version) % 2 == 0,
            "score": i / 7 + version,
            "address": {"city": f"c{i % 3}", "zip": 1000 + i},
            "tags": [{"t": f"t{j}", "v": version} for j in range((i + version) % 3)],
        }


@pytest.fixture
def lakes(tmp_path, monkeypatch):
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt_data"))
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "WARNING")
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")  # no calls home from CI
    for k in [k for k in os.environ if k.startswith("PYICEBERG_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("PYICEBERG_HOME", str(tmp_path))
    return lambda kind: Lake(tmp_path, kind)


def test_append_then_replace_match_dlt_iceberg(lakes):
    mine, ref = lakes("floe"), lakes("dlt-iceberg")
    for lake in (mine, ref):
        res = dlt.resource(records, name="users", write_disposition="append")
        lake.run(res(range(0, 40)))
        lake.run(res(range(40, 90), version=1))
    assert_same(mine, ref, ["users", "users__tags"], drop=("_dlt_load_id", "_dlt_id", "_dlt_parent_id", "_dlt_root_id"))
    one_snapshot_per_package(mine, "users", 2)
    one_snapshot_per_package(mine, "users__tags", 2)
    for lake in (mine, ref):
        res = dlt.resource(records, name="users", write_disposition="replace")
        lake.run(res(range(5, 25), version=2))
    assert_same(mine, ref, ["users", "users__tags"], drop=("_dlt_load_id", "_dlt_id", "_dlt_parent_id", "_dlt_root_id"))
    one_snapshot_per_package(mine, "users", 3)
    assert mine.iceberg("users").current_snapshot().summary["operation"].value == "overwrite"


@pytest.mark.parametrize("strategy", ["upsert", "insert-only"])
def test_merge_matches_dlt_iceberg(lakes, strategy):
    mine, ref = lakes("floe"), lakes("dlt-iceberg")
    for lake in (mine, ref):
        res = dlt.resource(records, name="users", primary_key="id", write_disposition={"disposition": "merge", "strategy": strategy})
        lake.run(res(range(0, 60)))
        lake.run(res(range(30, 100), version=1))
    # upsert derives _dlt_id from the primary key, so nested rows compare exactly too.
    assert_same(mine, ref, ["users", "users__tags"])
    one_snapshot_per_package(mine, "users", 2)
    one_snapshot_per_package(mine, "users__tags", 2)
    names = {r["id"]: r["name"] for r in mine.iceberg("users").scan().to_arrow().to_pylist()}
    assert len(names) == 100
    assert names[45] == ("user 45 v1" if strategy == "upsert" else "user 45 v0")


def flat(ids, version=0, deleted=()):
    for i in ids:
        yield {"id": i, "day": f"d{i % 4}", "seq": version * 1000 + i, "name": f"n{i} v{version}", "deleted": i in deleted}


def test_delete_insert_dedup_and_hard_delete_match_duckdb(lakes):
    mine, ref = lakes("floe"), lakes("duckdb")
    for lake in (mine, ref):
        hints = {"primary_key": "id", "columns": {"deleted": {"hard_delete": True}, "seq": {"dedup_sort": "desc"}},
                 "write_disposition": {"disposition": "merge", "strategy": "delete-insert"}}
        res = dlt.resource(flat, name="items", **hints)
        lake.run(res(range(0, 30)))
        # duplicates of a key: the greatest seq wins; ids 3 and 4 are hard-deleted
        dupes = list(flat(range(10, 20), version=1)) + list(flat(range(10, 15), version=2)) + list(flat([3, 4], 3, deleted={3, 4}))
        lake.run(dlt.resource(dupes, name="items", **hints))
    assert_same(mine, ref, ["items"], drop=("_dlt_load_id", "_dlt_id"))
    one_snapshot_per_package(mine, "items", 2)
    ids = sorted(r["id"] for r in mine.iceberg("items").scan().to_arrow().to_pylist())
    assert ids == [i for i in range(30) if i not in (3, 4)]


def test_delete_insert_by_merge_key_matches_duckdb(lakes):
    mine, ref = lakes("floe"), lakes("duckdb")
    for lake in (mine, ref):
        hints = {"merge_key": "day", "write_disposition": {"disposition": "merge", "strategy": "delete-insert"}}
        lake.run(dlt.resource(flat, name="days", **hints)(range(0, 40)))
        # replaces every row of days d1 and d3 by these (fewer) rows
        lake.run(dlt.resource([r for r in flat(range(100, 110), 1) if r["day"] in ("d1", "d3")], name="days", **hints))
    assert_same(mine, ref, ["days"], drop=("_dlt_load_id", "_dlt_id"))
    one_snapshot_per_package(mine, "days", 2)


def test_delete_insert_with_merge_key_other_than_primary_key_matches_duckdb(lakes):
    mine, ref = lakes("floe"), lakes("duckdb")
    for lake in (mine, ref):
        hints = {"primary_key": "id", "merge_key": "day",
                 "write_disposition": {"disposition": "merge", "strategy": "delete-insert"}}
        lake.run(dlt.resource(flat, name="moves", **hints)(range(0, 40)))
        # Every row of day d1 goes (merge key), and so do ids 2 and 7 (primary key), which
        # move to day d1; id 200 is new. (Duplicate keys are left out: without dedup_sort
        # dlt's SQL keeps an arbitrary one of them.)
        moved = [dict(r, day="d1") for r in flat([2, 7, 200, 1], version=1)]
        lake.run(dlt.resource(moved, name="moves", **hints))
    assert_same(mine, ref, ["moves"], drop=("_dlt_load_id", "_dlt_id"))
    one_snapshot_per_package(mine, "moves", 2)
    days = {r["id"]: r["day"] for r in mine.iceberg("moves").scan().to_arrow().to_pylist()}
    assert [i for i, d in days.items() if d == "d1"] and days[2] == days[7] == "d1"


def nested_rows(lake, root, child):
    """Each nested row with its root row's id (ids of rows differ between destinations)."""
    drop = ()
    roots = {dict(r)["_dlt_id"]: dict(r)["id"] for r in lake.rows(root, drop)}
    out = []
    for r in lake.rows(child, drop):
        row = dict(r)
        assert row["_dlt_root_id"] in roots, f"{child}: a nested row whose root row is gone: {row}"
        out.append((roots[row["_dlt_root_id"]], row["t"], row["v"], row["_dlt_list_idx"]))
    return sorted(out)


def assert_same_with_nested(mine, ref, root, packages):
    """The root table and its `tags` nested rows (joined to their root rows) as the reference
    has them; one snapshot per package for each of the two tables."""
    assert_same(mine, ref, [root], drop=("_dlt_load_id", "_dlt_id"))
    expected = nested_rows(ref, root, f"{root}__tags")
    assert expected and nested_rows(mine, root, f"{root}__tags") == expected
    for table in (root, f"{root}__tags"):
        one_snapshot_per_package(mine, table, packages)


def test_delete_insert_with_nested_tables_matches_duckdb(lakes):
    mine, ref = lakes("floe"), lakes("duckdb")
    for lake in (mine, ref):
        hints = {"merge_key": "day", "write_disposition": {"disposition": "merge", "strategy": "delete-insert"}}
        lake.run(dlt.resource(records, name="users", **hints)(range(0, 30)))
        # Days 1 and 3 are replaced: their users' tags go with them (some new users have none).
        again = [r for r in records(range(100, 120), version=1) if r["day"].day in (2, 4)]
        lake.run(dlt.resource(again, name="users", **hints))
        # A package with no nested rows at all still removes the replaced users' tags.
        bare = [dict(r, tags=[]) for r in records(range(200, 210), version=2) if r["day"].day == 1]
        lake.run(dlt.resource(bare, name="users", **hints))
    assert_same_with_nested(mine, ref, "users", 3)


def items(ids, version=0, deleted=(), day=None):
    for i in ids:
        yield {"id": i, "day": day or f"d{i % 3}", "seq": version * 1000 + i, "deleted": i in deleted,
               "tags": [{"t": f"t{j}", "v": version} for j in range((i + version) % 3)]}


@pytest.mark.parametrize("merge_key", [None, "day"])
def test_delete_insert_with_nested_tables_and_a_primary_key_matches_duckdb(lakes, merge_key):
    mine, ref = lakes("floe"), lakes("duckdb")
    hints = {"primary_key": "id", "columns": {"deleted": {"hard_delete": True}, "seq": {"dedup_sort": "desc"}},
             "write_disposition": {"disposition": "merge", "strategy": "delete-insert"}}
    if merge_key:
        hints["merge_key"] = merge_key
    for lake in (mine, ref):
        lake.run(dlt.resource(items, name="things", **hints)(range(0, 30)))
        # Duplicate keys (the greatest seq wins, and only its tags land), ids 3 and 4 deleted
        # (their tags go, none come in), new ids; with the merge key every row of d1 goes too.
        again = (list(items(range(10, 16), 1)) + list(items(range(10, 13), 2)) + list(items([3, 4], 3, deleted={3, 4}))
                 + list(items([40, 41], 4, day="d1")))
        lake.run(dlt.resource(again, name="things", **hints))
    assert_same_with_nested(mine, ref, "things", 2)


def test_delete_insert_without_keys_appends_as_dlt_does(lakes):
    mine, ref = lakes("floe"), lakes("duckdb")
    for lake in (mine, ref):
        hints = {"write_disposition": {"disposition": "merge", "strategy": "delete-insert"}}
        lake.run(dlt.resource(items, name="logs", **hints)(range(0, 10)))
        lake.run(dlt.resource(items, name="logs", **hints)(range(5, 15), 1))
    assert_same_with_nested(mine, ref, "logs", 2)


def test_upsert_with_hard_delete_matches_duckdb(lakes):
    mine, ref = lakes("floe"), lakes("duckdb")
    for lake in (mine, ref):
        hints = {"primary_key": "id", "columns": {"deleted": {"hard_delete": True}},
                 "write_disposition": {"disposition": "merge", "strategy": "upsert"}}
        lake.run(dlt.resource(flat, name="items", **hints)(range(0, 20)))
        lake.run(dlt.resource(flat, name="items", **hints)(range(15, 25), 1, deleted={15, 16, 24}))
    # One documented difference: dlt's SQL upsert inserts a row flagged deleted whose key is new
    # (id 24 here); floe never lands a row flagged deleted.
    drop = ("_dlt_load_id", "_dlt_id")
    expected = [r for r in ref.rows("items", drop) if ("deleted", True) not in r]
    assert len(expected) == len(ref.rows("items", drop)) - 1
    for reader in ("pyiceberg", "duckdb"):
        assert mine.rows("items", drop, reader) == expected


def test_partition_hints_give_dlt_s_spec(lakes):
    mine, ref = lakes("floe"), lakes("dlt-iceberg")
    for lake in (mine, ref):
        res = dlt.resource(records, name="users", write_disposition="append", max_table_nesting=0)
        res = iceberg_adapter(res, partition=[iceberg_partition.day("ts"), iceberg_partition.bucket(4, "id"), "flag"],
                              table_properties={"write.metadata.previous-versions-max": "7"})
        lake.run(res(range(0, 50)))
    def spec(lake):
        t = lake.iceberg("users")
        schema = t.schema()
        return [(schema.find_column_name(f.source_id), str(f.transform), f.name) for f in t.spec().fields]
    assert spec(mine) == spec(ref)
    assert mine.iceberg("users").properties["write.metadata.previous-versions-max"] == "7"
    assert_same(mine, ref, ["users"], drop=("_dlt_load_id", "_dlt_id"))


def test_new_columns_then_merge_match_duckdb(lakes):
    # The reference is dlt's DuckDB destination: dlt 1.31's own Iceberg job fails this merge
    # (pyiceberg's upsert cannot cast the load, which has the new column, to the table's rows).
    mine, ref = lakes("floe"), lakes("duckdb")
    for lake in (mine, ref):
        hints = {"primary_key": "id", "write_disposition": {"disposition": "merge", "strategy": "upsert"}}
        lake.run(dlt.resource([{"id": i, "a": i} for i in range(10)], name="evo", **hints))
        lake.run(dlt.resource([{"id": i, "a": -i, "b": f"new {i}"} for i in range(5, 15)], name="evo", **hints))
    assert_same(mine, ref, ["evo"])
    one_snapshot_per_package(mine, "evo", 2)


def test_retried_job_after_its_commit_adds_nothing(lakes, monkeypatch):
    """The job's commit lands, then the job fails before dlt records it (a crash, a lost
    connection): dlt runs the job again, and floe's load id makes that a no-op."""
    from dlt.common.destination.exceptions import DestinationTransientException

    original = floe.dlt.FloeIcebergLoadJob.run
    attempts = []

    def crash_after_commit(self):
        original(self)
        attempts.append(self.load_table_name)
        if attempts.count(self.load_table_name) == 1:
            raise DestinationTransientException("simulated crash after the commit")

    monkeypatch.setattr(floe.dlt.FloeIcebergLoadJob, "run", crash_after_commit)
    mine = lakes("floe")
    mine.run(dlt.resource(flat, name="items", write_disposition="append")(range(0, 25)))
    assert attempts.count("items") == 2
    assert len(mine.rows("items")) == 25
    one_snapshot_per_package(mine, "items", 1)


def test_a_chain_job_retried_between_its_nested_and_root_commits_matches_duckdb(lakes, monkeypatch):
    """The nested table's commit lands, then the job fails before the root's: dlt runs the job
    again, which finds the same replaced root rows (the root is unchanged), skips the nested
    table's landed load by its load id and commits the root."""
    from dlt.common.destination.exceptions import DestinationTransientException

    original = floe.dlt.FloeIcebergLoadJob._load
    loads, crashed = [], []

    def crash_after_nested(self, name, table, source, plan):
        summary = original(self, name, table, source, plan)
        loads.append((name, summary.skipped))
        if name == "users__tags" and len(loads) > 2 and not crashed:
            crashed.append(name)
            raise DestinationTransientException("simulated crash between the nested and the root commit")
        return summary

    mine, ref = lakes("floe"), lakes("duckdb")
    hints = {"merge_key": "day", "write_disposition": {"disposition": "merge", "strategy": "delete-insert"}}
    monkeypatch.setattr(floe.dlt.FloeIcebergLoadJob, "_load", crash_after_nested)
    for lake in (mine, ref):
        lake.run(dlt.resource(records, name="users", **hints)(range(0, 30)))
        again = [r for r in records(range(100, 120), version=1) if r["day"].day in (2, 4)]
        lake.run(dlt.resource(again, name="users", **hints))
    assert crashed and ("users__tags", True) in loads, loads
    assert_same_with_nested(mine, ref, "users", 2)


@pytest.mark.parametrize("nested", [False, True])
def test_delete_insert_without_keys_drops_rows_flagged_deleted_as_duckdb(lakes, nested):
    """No primary or merge key: dlt's delete-insert appends the rows not flagged deleted, and
    only their nested rows."""
    mine, ref = lakes("floe"), lakes("duckdb")
    for lake in (mine, ref):
        hints = {"columns": {"deleted": {"hard_delete": True}},
                 "write_disposition": {"disposition": "merge", "strategy": "delete-insert"}}
        data = items if nested else flat
        lake.run(dlt.resource(data, name="users", **hints)(range(0, 10), deleted={3}))
        lake.run(dlt.resource(data, name="users", **hints)(range(5, 15), 1, deleted={5, 14}))
    if nested:
        assert_same_with_nested(mine, ref, "users", 2)
    else:
        assert_same(mine, ref, ["users"], drop=("_dlt_load_id", "_dlt_id"))
        one_snapshot_per_package(mine, "users", 2)
    assert not [r for r in mine.rows("users") if ("deleted", True) in r]


def test_what_floe_cannot_do_fails_before_anything_is_written(lakes):
    mine = lakes("floe")
    # Arrow data gets no _dlt_id row key by default: no keys and no row key to merge by.
    import pyarrow as pa

    rows = pa.table({"id": list(range(10)), "deleted": [i == 3 for i in range(10)]})
    res = dlt.resource(rows, name="users", columns={"deleted": {"hard_delete": True}},
                       write_disposition={"disposition": "merge", "strategy": "delete-insert"})
    with pytest.raises(Exception) as failed:
        mine.run(res)
    assert "needs a merge_key, a primary_key or a row key" in str(failed.value)
    assert not glob.glob(f"{mine.bucket}/ds/users*/metadata/*.json")


def test_rest_catalog_and_s3(tmp_path, monkeypatch):
    """The live REST catalog + S3 (SeaweedFS), configured the way dlt users configure dlt's own
    Iceberg destination: bucket_url + credentials, and the [iceberg_catalog] section."""
    import json

    from seaweed import SeaweedServer

    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt_data"))
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "WARNING")
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    dataset = "d" + uuid.uuid4().hex[:10]
    with SeaweedServer() as server:
        props = server.catalog_props()
        monkeypatch.setenv("ICEBERG_CATALOG__ICEBERG_CATALOG_NAME", "lake")
        monkeypatch.setenv("ICEBERG_CATALOG__ICEBERG_CATALOG_TYPE", "rest")
        monkeypatch.setenv("ICEBERG_CATALOG__ICEBERG_CATALOG_CONFIG", json.dumps({"type": "rest", **props}))
        credentials = {"aws_access_key_id": server.access_key, "aws_secret_access_key": server.secret_key,
                       "endpoint_url": server.s3_endpoint, "region_name": server.region}
        # dlt keeps its own files beside the tables, so its bucket is a plain one (SeaweedFS's
        # table bucket takes only the catalog's own writes).
        import boto3

        s3 = boto3.client("s3", endpoint_url=server.s3_endpoint, aws_access_key_id=server.access_key,
                          aws_secret_access_key=server.secret_key, region_name=server.region)
        s3.create_bucket(Bucket="dlt")
        dest = floe.dlt.filesystem(bucket_url="s3://dlt/lake", credentials=credentials)
        mine = dlt.pipeline(f"p{uuid.uuid4().hex[:8]}", destination=dest, dataset_name=dataset,
                            pipelines_dir=str(tmp_path / "pipelines"))
        ref = Lake(tmp_path, "duckdb")
        hints = {"primary_key": "id", "write_disposition": {"disposition": "merge", "strategy": "upsert"}}
        for p in (mine, ref.pipeline):
            p.run(dlt.resource(flat, name="items", **hints)(range(0, 30))).raise_on_failed_jobs()
            p.run(dlt.resource(flat, name="items", **hints)(range(20, 40), 1)).raise_on_failed_jobs()
        table = server.pyiceberg_catalog().load_table(f"{dataset}.items")
        assert len(table.snapshots()) == 2
        # the catalog placed the table (in its table bucket); dlt's own files are in its bucket
        assert table.location().startswith(f"s3://{server.table_bucket}/")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="dlt", Prefix=f"lake/{dataset}/")["Contents"]]
        assert sum(f"/{dataset}/_dlt_loads/" in k for k in keys) == 2, keys
        drop = ("_dlt_load_id",)
        expected = ref.rows("items", drop)

        def canon_rows(rows):
            return sorted((tuple(sorted((k, canon(v)) for k, v in r.items() if k not in drop)) for r in rows), key=repr)

        assert canon_rows(table.scan().to_arrow().to_pylist()) == expected
        # A request the catalog refuses (4xx) is a typed, non-retryable error; dlt fails such a
        # job at once instead of retrying it.
        import pyarrow as pa

        with pytest.raises(floe.CatalogRefusedError, match="within bucket"):
            floe.load(f"{dataset}.elsewhere", pa.table({"id": [1]}), catalog={"type": "rest", "name": "lake", **props},
                      location="s3://dlt/elsewhere")
        con = server.duckdb_connection(extension_dir=str(tmp_path / "ext"))
        got = con.execute(f"SELECT * FROM iceberg_scan('{table.metadata_location}')").arrow()
        got = (got.read_all() if hasattr(got, "read_all") else got).to_pylist()
        assert canon_rows(got) == expected


def test_pyiceberg_environment_names_the_catalog(lakes, monkeypatch, tmp_path):
    """No [iceberg_catalog] section but PYICEBERG_CATALOG__DEFAULT__* set (dlt's second way to
    find a catalog): floe writes through that SQLite catalog, where the table stays registered."""
    from pyiceberg.catalog.sql import SqlCatalog

    uri = f"sqlite:///{tmp_path}/named.db"
    monkeypatch.setenv("PYICEBERG_CATALOG__DEFAULT__URI", uri)
    monkeypatch.setenv("PYICEBERG_CATALOG__DEFAULT__WAREHOUSE", f"file://{tmp_path}/wh")
    mine, ref = lakes("floe"), lakes("duckdb")
    hints = {"primary_key": "id", "write_disposition": {"disposition": "merge", "strategy": "upsert"}}
    for lake in (mine, ref):
        lake.run(dlt.resource(flat, name="items", **hints)(range(0, 30)))
        lake.run(dlt.resource(flat, name="items", **hints)(range(20, 40), 1))
    table = SqlCatalog("default", uri=uri).load_table("ds.items")
    assert len(table.snapshots()) == 2
    assert table.location().startswith(f"file://{mine.bucket}/ds/items")  # dlt's location
    assert table.metadata_location.endswith(os.path.basename(mine.metadata("items")))
    assert_same(mine, ref, ["items"])


def test_a_load_opens_no_pyiceberg_catalog(tmp_path):
    """floe's destination finds dlt's catalog settings without opening a pyiceberg catalog: a
    pipeline run imports neither pyiceberg's catalogs nor its pyarrow FileIO (which brings
    pyarrow.dataset and pandas: ~95 MiB and most of a second of a load step)."""
    import json
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent('''
        import json, sys, dlt, floe.dlt
        dest = floe.dlt.filesystem(bucket_url=sys.argv[1] + "/bucket")
        p = dlt.pipeline("imports", destination=dest, dataset_name="ds", pipelines_dir=sys.argv[1] + "/p")
        rows = lambda ids, v: ({"id": i, "name": f"n{i} v{v}"} for i in ids)
        p.run(dlt.resource(rows(range(10), 0), name="items", write_disposition="append")).raise_on_failed_jobs()
        hints = {"primary_key": "id", "write_disposition": {"disposition": "merge", "strategy": "upsert"}}
        p.run(dlt.resource(rows(range(5, 15), 1), name="items", **hints)).raise_on_failed_jobs()
        heavy = ("pyiceberg.catalog", "pyiceberg.io.pyarrow", "pyarrow.dataset")
        print(json.dumps(sorted(m for m in sys.modules if m in heavy)))
    ''')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYICEBERG_", "ICEBERG_CATALOG__"))}
    env.update(DLT_DATA_DIR=str(tmp_path / "dlt_data"), RUNTIME__LOG_LEVEL="WARNING",
               RUNTIME__DLTHUB_TELEMETRY="false", PYICEBERG_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    lake = Lake.__new__(Lake)
    lake.bucket, lake.kind, lake.root = tmp_path / "bucket", "floe", tmp_path
    got = {r["id"]: r["name"] for r in lake.iceberg("items").scan().to_arrow().to_pylist()}
    assert got == {i: f"n{i} v{0 if i < 5 else 1}" for i in range(15)}
