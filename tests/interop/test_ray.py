"""floe on Ray (`floe.ray.IcebergSink`) against a real local Ray cluster (ray from PyPI,
`ray.init` with 2 CPUs on this machine): every mode's table, read back with pyiceberg and DuckDB,
equals the same load done by the CLI; one snapshot per job; a rerun load id adds nothing; a
failing task commits nothing and leaves no file; a worker killed mid-write is retried and the
counts stay exact, with the dead attempt's files deleted."""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

floe = pytest.importorskip("floe")
ray = pytest.importorskip("ray")
import floe.ray  # noqa: E402

from conftest import FLOE_BIN, sort_rows  # noqa: E402
from seaweed import SeaweedServer  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def cluster():
    # Test helpers defined here (a sink that dies once) travel to the workers by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # no calls home
    ray.init(
        num_cpus=2,
        _node_ip_address="127.0.0.1",  # the cluster talks on loopback only
        include_dashboard=False,
        object_store_memory=256 * 1024 * 1024,
        log_to_driver=False,
        configure_logging=False,
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def blocks(first, n, parts, tag="v", cats=3):
    """`n` rows with ids from `first`, as `parts` Arrow tables (one Ray block each)."""
    ids = list(range(first, first + n))
    whole = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "cat": pa.array([f"c{i % cats}" for i in ids]),
            "v": pa.array([f"{tag}{i}" for i in ids]),
            "deleted": pa.array([i % 10 == 0 for i in ids]),
        }
    )
    step = -(-n // parts)
    return [whole.slice(k, step) for k in range(0, n, step)]


def write_ray(wh, name, parts, **kw):
    # A write task per block (Ray's own bundling), so the tests' small datasets still make
    # several tasks; the sink's default gathers 128 MiB per task.
    kw.setdefault("min_bytes_per_write", None)
    sink = floe.ray.IcebergSink(name, warehouse=wh.dir, **kw)
    ray.data.from_arrow(parts).write_datasink(sink)
    return sink.summary


def write_cli(wh, name, parts, tmp, *args):
    tmp.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(parts):
        pq.write_table(part, tmp / f"{k:03}.parquet")
    return wh.floe("load", name, tmp, *args)


def rows(wh, name):
    got = wh.pyiceberg_rows(name)
    assert wh.duckdb_rows(name) == got
    return got


def files_on_disk(wh, name):
    data = wh.dir.joinpath(*name.split(".")) / "data"
    return sorted(str(p) for p in data.rglob("*.parquet"))


def files_referenced(wh, name):
    return sorted(f["file_path"].removeprefix("file://") for f in wh.table(name).inspect.files().to_pylist())


def test_append_is_one_snapshot_and_equals_the_cli(wh, tmp_path):
    parts = blocks(0, 20_000, 8)
    s = write_ray(wh, "r.t", parts)
    assert s.rows_written == 20_000 and s.table_created and s.operation == "append"
    assert s.files_added >= 2, "tasks write in parallel, each its own files"
    write_cli(wh, "r.cli", parts, tmp_path / "in")
    assert rows(wh, "r.t") == rows(wh, "r.cli")
    assert len(wh.table("r.t").snapshots()) == 1
    assert files_on_disk(wh, "r.t") == files_referenced(wh, "r.t"), "no stray files"
    # A second job appends as one more snapshot; its default load id is new. With the
    # default bundling (128 MiB a task) its 4 small blocks make one task, so one file.
    s2 = write_ray(wh, "r.t", blocks(20_000, 1_000, 4), min_bytes_per_write=128 << 20)
    assert s2.load_id != s.load_id and not s2.skipped and s2.files_added == 1
    assert len(rows(wh, "r.t")) == 21_000 and len(wh.table("r.t").snapshots()) == 2


def test_replace_and_replace_partitions_equal_the_cli(wh, tmp_path):
    write_ray(wh, "r.p", blocks(0, 9_000, 3), partition_by="cat")
    write_cli(wh, "r.pcli", blocks(0, 9_000, 3), tmp_path / "a", "--partition-by", "cat")
    assert wh.table("r.p").spec().fields[0].name == "cat"
    only_c1 = [p.filter(pc.equal(p["cat"], "c1")) for p in blocks(100_000, 3_000, 2, tag="n")]
    s = write_ray(wh, "r.p", only_c1, mode="replace", replace_partitions=True)
    assert s.mode == "replace-partitions" and s.operation == "overwrite"
    write_cli(wh, "r.pcli", only_c1, tmp_path / "b", "--mode", "replace", "--replace-partitions")
    assert rows(wh, "r.p") == rows(wh, "r.pcli")
    assert {r["cat"] for r in rows(wh, "r.p") if r["v"].startswith("n")} == {"c1"}

    s = write_ray(wh, "r.p", blocks(0, 500, 2, tag="w"), mode="replace")
    assert s.mode == "replace" and rows(wh, "r.p") == sort_rows(pa.concat_tables(blocks(0, 500, 2, tag="w")).to_pylist(), "id")
    assert len(wh.table("r.p").snapshots()) == 3
    assert set(files_referenced(wh, "r.p")) <= set(files_on_disk(wh, "r.p"))


MERGES = {
    "upsert": {},
    "insert-only": {"strategy": "insert-only"},
    "delete-insert": {"strategy": "delete-insert"},
    "hard-delete": {"hard_delete_column": "deleted"},
    "merge-on-read": {"merge_mode": "merge-on-read"},
}
CLI_FLAGS = {
    "upsert": [],
    "insert-only": ["--strategy", "insert-only"],
    "delete-insert": ["--strategy", "delete-insert"],
    "hard-delete": ["--hard-delete-column", "deleted"],
    "merge-on-read": ["--merge-mode", "merge-on-read"],
}


@pytest.mark.parametrize("kind", sorted(MERGES))
def test_merge_equals_the_cli(wh, tmp_path, kind):
    base = blocks(0, 6_000, 3)
    changes = blocks(4_000, 4_000, 4, tag="u")  # 2,000 updates, 2,000 inserts
    write_ray(wh, "r.m", base)
    write_cli(wh, "r.mcli", base, tmp_path / "a")
    staging = tmp_path / "staging"
    s = write_ray(wh, "r.m", changes, mode="merge", key="id", staging_dir=staging, **MERGES[kind])
    assert s.mode == "merge"
    write_cli(wh, "r.mcli", changes, tmp_path / "b", "--mode", "merge", "--key", "id", *CLI_FLAGS[kind])
    assert rows(wh, "r.m") == rows(wh, "r.mcli")
    assert len(wh.table("r.m").snapshots()) == 2, "one snapshot per job"
    assert list(staging.iterdir()) == [], "staged inputs are deleted"


def test_a_rerun_load_id_adds_nothing(wh):
    parts = blocks(0, 3_000, 3)
    first = write_ray(wh, "r.i", parts, load_id="nightly-1")
    again = write_ray(wh, "r.i", parts, load_id="nightly-1")
    assert again.skipped and again.snapshot_id == first.snapshot_id
    assert len(rows(wh, "r.i")) == 3_000 and len(wh.table("r.i").snapshots()) == 1
    merged = write_ray(wh, "r.i", parts, load_id="nightly-1", mode="merge", key="id")
    assert merged.skipped and len(wh.table("r.i").snapshots()) == 1


def test_schema_evolution_lands_with_the_data(wh):
    write_ray(wh, "r.e", blocks(0, 100, 1))
    wider = [p.append_column("extra", pa.array([1.5] * p.num_rows)) for p in blocks(100, 200, 2)]
    s = write_ray(wh, "r.e", wider)
    assert s.schema_changes and len(wh.table("r.e").snapshots()) == 2
    got = rows(wh, "r.e")
    assert [r["extra"] for r in got[:100]] == [None] * 100 and {r["extra"] for r in got[100:]} == {1.5}


def test_a_failing_task_commits_nothing_and_leaves_no_file(wh):
    write_ray(wh, "r.f", blocks(0, 1_000, 1))
    before = wh.table("r.f").metadata_location
    good = blocks(1_000, 2_000, 2)
    bad = pa.table({"id": pa.array(["not a number"]), "cat": ["c"], "v": ["x"], "deleted": [False]})
    with pytest.raises(Exception) as failure:
        write_ray(wh, "r.f", good + [bad])
    assert "id" in str(failure.value) and isinstance(failure.value, floe.FloeError), repr(failure.value)
    assert wh.table("r.f").metadata_location == before
    assert len(rows(wh, "r.f")) == 1_000
    assert files_on_disk(wh, "r.f") == files_referenced(wh, "r.f"), "the job's files are deleted"


class DiesOnce(floe.ray.IcebergSink):
    """A sink whose first task's first attempt kills its worker process mid-write (after its
    first block went to floe's writer)."""

    def __init__(self, marker, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._marker = str(marker)

    def write(self, blocks, ctx):
        def feed():
            for k, block in enumerate(blocks):
                if k == 1 and not os.path.exists(self._marker):
                    Path(self._marker).write_text(str(os.getpid()))
                    time.sleep(1.0)  # let the writer start its file
                    os._exit(1)
                yield block

        return super().write(feed(), ctx)


def test_a_worker_killed_mid_write_is_retried_with_exact_counts(wh, tmp_path):
    marker = tmp_path / "died"
    parts = blocks(0, 40_000, 8)
    sink = DiesOnce(marker, "r.k", warehouse=wh.dir, min_rows_per_write=20_000)
    ray.data.from_arrow(parts).write_datasink(sink)
    assert marker.exists(), "a worker died"
    assert sink.summary.rows_written == 40_000
    got = rows(wh, "r.k")
    assert [r["id"] for r in got] == list(range(40_000))
    assert len(wh.table("r.k").snapshots()) == 1
    assert files_on_disk(wh, "r.k") == files_referenced(wh, "r.k"), "the dead attempt's files are gone"


def test_rest_catalog_and_s3_with_a_worker_killed(tmp_path):
    """Through a live REST catalog and S3 (SeaweedFS on 127.0.0.1): an append whose worker dies
    mid-write and a merge, each one snapshot, equal to the CLI's loads; the bucket holds no file
    the table does not reference."""
    import boto3

    with SeaweedServer() as server:
        props = server.catalog_props()
        catalog = {"type": "rest", "name": "lake", **props}
        ns = "ray" + uuid.uuid4().hex[:8]

        def cli(table, parts, *args):
            folder = tmp_path / table / str(len(list(tmp_path.glob(f"{table}/*"))))
            folder.mkdir(parents=True)
            for k, part in enumerate(parts):
                pq.write_table(part, folder / f"{k}.parquet")
            env = {k: v for k, v in os.environ.items() if not k.startswith("PYICEBERG_")}
            env["PYICEBERG_HOME"] = str(tmp_path)
            for key, value in props.items():
                env["PYICEBERG_CATALOG__LAKE__" + key.upper().replace(".", "__").replace("-", "_")] = value
            out = subprocess.run([FLOE_BIN, "load", f"{ns}.{table}", folder, "--catalog", "lake", "--json", *args],
                                 capture_output=True, text=True, env=env, timeout=300)
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout)

        def read(table):
            t = server.pyiceberg_catalog().load_table(f"{ns}.{table}")
            got = sort_rows(t.scan().to_arrow().to_pylist(), "id")
            con = server.duckdb_connection(extension_dir=str(tmp_path / "duckdb_ext"))
            duck = con.execute(f"SELECT * FROM iceberg_scan('{t.metadata_location}')").arrow()
            assert sort_rows((duck.read_all() if hasattr(duck, "read_all") else duck).to_pylist(), "id") == got
            return t, got

        # Blocks of 500-row chunks, small row groups and files: the attempt that dies has
        # uploaded whole files first (an unfinished upload leaves no object on S3).
        base = [pa.Table.from_batches(b.to_batches(max_chunksize=500)) for b in blocks(0, 20_000, 4)]
        changes = blocks(15_000, 10_000, 4, tag="u")
        sink = DiesOnce(tmp_path / "died", f"{ns}.t", catalog=catalog, min_rows_per_write=10_000,
                        target_file_size="16KiB", table_properties={"write.parquet.row-group-size-bytes": "16384"})
        ray.data.from_arrow(base).write_datasink(sink)
        assert (tmp_path / "died").exists() and sink.summary.rows_written == 20_000
        merge = floe.ray.IcebergSink(f"{ns}.t", catalog=catalog, mode="merge", key="id",
                                     staging_dir=tmp_path / "staging")
        ray.data.from_arrow(changes).write_datasink(merge)
        assert merge.summary.rows_updated == 5_000 and merge.summary.rows_inserted == 5_000
        cli("c", base)
        cli("c", changes, "--mode", "merge", "--key", "id")
        table, got = read("t")
        assert got == read("c")[1] and len(got) == 25_000
        assert len(table.snapshots()) == 2
        s3 = boto3.client("s3", endpoint_url=props["s3.endpoint"], aws_access_key_id=props["s3.access-key-id"],
                          aws_secret_access_key=props["s3.secret-access-key"], region_name=props["s3.region"])
        bucket, prefix = table.location().removeprefix("s3://").split("/", 1)
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/data/").get("Contents", [])
        stored = sorted(f"s3://{bucket}/{o['Key']}" for o in listed)
        live = {f["file_path"] for f in table.inspect.files().to_pylist()}
        # What the table references now, and what the merge's copy-on-write replaced (kept
        # for time travel): nothing else, so the dead attempt's objects are gone.
        history = {f["file_path"] for f in table.inspect.all_files().to_pylist()}
        assert live <= set(stored) and set(stored) <= history, set(stored) - history
