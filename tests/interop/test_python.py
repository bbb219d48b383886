"""floe from Python (`import floe`, the pyo3 package built from crates/floe-py): every mode
against the embedded SQLite catalog, sources from pyarrow, polars and DuckDB, read back with
pyiceberg and DuckDB and compared exactly, and with the same load done by the CLI."""

import signal
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

floe = pytest.importorskip("floe")


def table(first, n, tag="v"):
    ids = list(range(first, first + n))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "cat": pa.array([f"c{i % 3}" for i in ids]),
            "v": pa.array([f"{tag}{i}" for i in ids]),
            "deleted": pa.array([False] * n),
        }
    )


def load(wh, name, source, **kw):
    return floe.load(name, source, warehouse=wh.dir, **kw)


def rows(wh, name):
    got = wh.pyiceberg_rows(name)
    assert wh.duckdb_rows(name) == got
    return got


def test_pyarrow_table_and_reader(wh):
    s = load(wh, "p.t", table(0, 1000))
    assert isinstance(s, floe.LoadSummary) and s.rows_written == 1000 and s.table_created
    assert s.operation == "append" and s.to_dict()["rows_written"] == 1000
    reader = table(1000, 1000).to_reader(max_chunksize=100)
    assert load(wh, "p.t", reader).rows_written == 1000
    assert rows(wh, "p.t") == table(0, 2000).to_pylist()
    assert len(wh.table("p.t").snapshots()) == 2


def test_generator_stream_is_consumed_batch_by_batch(wh):
    pulled = []

    def batches():
        for k in range(20):
            pulled.append(k)
            yield from table(k * 500, 500).to_batches()

    reader = pa.RecordBatchReader.from_batches(table(0, 1).schema, batches())
    seen = []
    s = load(wh, "p.g", reader, progress=lambda p: seen.append(p["input_rows"]))
    assert s.rows_written == 10_000 and pulled == list(range(20))
    assert rows(wh, "p.g") == table(0, 10_000).to_pylist()
    assert all(isinstance(n, int) for n in seen)


def test_progress_reports_counters_and_the_stage(wh):
    load(wh, "p.s", table(0, 1000))

    def batches():
        for k in range(3):
            time.sleep(0.3)  # the callback runs about every 0.1 s: it sees the read
            yield from table(k * 10, 10).to_batches()

    reader = pa.RecordBatchReader.from_batches(table(0, 1).schema, batches())
    seen = []
    load(wh, "p.s", reader, mode="merge", key="id", progress=seen.append)
    stages = {p["stage"] for p in seen}
    assert "reading input" in stages, seen
    known = {"reading input", "matching keys against the table", "applying matches to table files",
             "finishing data files", "committing"}
    assert stages <= known, stages
    assert all(isinstance(p[k], int) for p in seen for k in ("stage_done", "stage_total", "input_rows"))


def test_a_stream_that_raises_commits_nothing(wh):
    load(wh, "p.f", table(0, 10))
    before = wh.table("p.f").metadata_location

    def batches():
        yield from table(100, 1000).to_batches()
        raise ValueError("the producer broke")

    reader = pa.RecordBatchReader.from_batches(table(0, 1).schema, batches())
    with pytest.raises(floe.BadInputError, match="the producer broke"):
        load(wh, "p.f", reader)
    assert wh.table("p.f").metadata_location == before
    data = wh.dir / "p" / "f" / "data"
    assert len(list(data.iterdir())) == 1
    assert rows(wh, "p.f") == table(0, 10).to_pylist()


def test_polars_and_duckdb_sources(wh):
    import duckdb
    import polars as pl

    load(wh, "p.src", pl.from_arrow(table(0, 500)))
    con = duckdb.connect()
    rel = con.sql("SELECT range AS id, 'c' || (range % 3) AS cat, 'v' || range AS v, false AS deleted FROM range(500, 1000)")
    load(wh, "p.src", rel)
    assert rows(wh, "p.src") == table(0, 1000).to_pylist()


def test_parquet_paths_take_the_copy_path(wh):
    big = table(0, 200_000)
    pq.write_table(big, wh.root / "a.parquet", compression="zstd", row_group_size=200_000)
    s = load(wh, "p.files", str(wh.root / "a.parquet"))
    assert s.rows_copied == 200_000 and s.input_files == 1
    s = load(wh, "p.files", [wh.root / "a.parquet"], mode="replace")
    assert s.operation == "overwrite"
    assert len(rows(wh, "p.files")) == 200_000


@pytest.mark.parametrize(
    "kw",
    [
        {"mode": "replace"},
        {"mode": "merge", "key": "id"},
        {"mode": "merge", "key": ["id"], "merge_mode": "merge-on-read"},
        {"mode": "merge", "key": "id", "strategy": "insert-only"},
        {"mode": "merge", "key": "cat,id", "strategy": "delete-insert"},
        {"mode": "merge", "key": "id", "hard_delete_column": "deleted"},
    ],
)
def test_modes_match_the_cli(wh, kw):
    base, change = table(0, 300), table(200, 200, "new")
    change = change.set_column(3, "deleted", pa.array([i % 4 == 0 for i in range(200)]))
    pq.write_table(base, wh.root / "base.parquet")
    pq.write_table(change, wh.root / "change.parquet")
    load(wh, "p.py", base)
    load(wh, "p.py", change, **kw)
    wh.floe("load", "p.cli", wh.root / "base.parquet")
    args = []
    for name, value in kw.items():
        value = ",".join(value) if isinstance(value, list) else value
        args += [f"--{name.replace('_', '-')}", value]
    wh.floe("load", "p.cli", wh.root / "change.parquet", *args)
    assert rows(wh, "p.py") == rows(wh, "p.cli")


@pytest.mark.parametrize("strategy", ["upsert", "delete-insert"])
@pytest.mark.parametrize("merge_mode", ["copy-on-write", "merge-on-read"])
def test_delete_keys_remove_rows_in_the_same_snapshot_as_the_cli(wh, strategy, merge_mode):
    base, change = table(0, 300), table(250, 100, "new")
    # ids 10..59 and 260 go; 260 is also in the load (it comes back as "new260"); 999 is absent
    keys = pa.table({"id": pa.array(list(range(10, 60)) + [260, 999], pa.int32())})
    pq.write_table(base, wh.root / "base.parquet")
    pq.write_table(change, wh.root / "change.parquet")
    pq.write_table(keys, wh.root / "keys.parquet")
    kw = {"mode": "merge", "key": "id", "strategy": strategy, "merge_mode": merge_mode}
    load(wh, "p.dk", base)
    s = load(wh, "p.dk", change.to_reader(max_chunksize=30), delete_keys=keys.to_reader(max_chunksize=7), **kw)
    wh.floe("load", "p.dkcli", wh.root / "base.parquet")
    wh.floe("load", "p.dkcli", wh.root / "change.parquet", "--mode", "merge", "--key", "id",
            "--strategy", strategy, "--merge-mode", merge_mode, "--delete-keys", wh.root / "keys.parquet")
    got = rows(wh, "p.dk")
    assert got == rows(wh, "p.dkcli")
    expected = [r for r in table(0, 250).to_pylist() if not 10 <= r["id"] < 60] + table(250, 100, "new").to_pylist()
    assert sorted(got, key=lambda r: r["id"]) == expected
    # 51 rows go by key (10..59, 260); 250..299 but 260 are updated (upsert) or deleted
    # and inserted again (delete-insert)
    assert s.rows_deleted + s.rows_updated == 100 and len(wh.table("p.dk").snapshots()) == 2
    # Keys alone, with no rows: a delete by key list; a non-key column is refused.
    empty = table(0, 1).slice(0, 0)
    load(wh, "p.dk", empty, delete_keys=pa.table({"id": [0, 1, 2]}), **kw)
    assert [r["id"] for r in rows(wh, "p.dk")][:2] == [3, 4]
    with pytest.raises(floe.SchemaMismatchError, match="key columns only"):
        load(wh, "p.dk", empty, delete_keys=pa.table({"id": [5], "v": ["x"]}), **kw)
    with pytest.raises(floe.InvalidOptionError, match="merge"):
        load(wh, "p.dk", empty, delete_keys=pa.table({"id": [5]}))
    assert len(wh.table("p.dk").snapshots()) == 3


def test_only_keys_leave_out_the_other_rows_as_the_cli(wh):
    base, change = table(0, 100), table(50, 100, "new")
    only = pa.table({"id": pa.array([10, 60, 61, 120, 500], pa.int64())})
    pq.write_table(base, wh.root / "base.parquet")
    pq.write_table(change, wh.root / "change.parquet")
    pq.write_table(only, wh.root / "only.parquet")
    load(wh, "p.ok", base)
    s = load(wh, "p.ok", wh.root / "change.parquet", mode="merge", key="id", only_keys=only,
             delete_keys=pa.table({"id": [10]}))
    wh.floe("load", "p.okcli", wh.root / "base.parquet")
    wh.floe("load", "p.okcli", wh.root / "change.parquet", "--mode", "merge", "--key", "id",
            "--only-keys", wh.root / "only.parquet", "--delete-keys", wh.root / "only.parquet")
    got = {r["id"]: r["v"] for r in rows(wh, "p.ok")}
    assert (s.rows_updated, s.rows_inserted, s.rows_deleted) == (2, 1, 1)
    assert got[60] == "new60" and got[120] == "new120" and got[70] == "v70" and 10 not in got and 130 not in got
    # The CLI's delete keys are the only keys: 60 and 61 are deleted first, then inserted
    # from the load, which ends in the same rows.
    assert {r["id"]: r["v"] for r in rows(wh, "p.okcli")} == got


def test_match_rows_writes_the_matched_rows_columns(wh):
    load(wh, "p.m", table(0, 500))
    load(wh, "p.m", table(500, 500))
    probe = pa.table({"id": pa.array([3, 3, 499, 500, 777, 5000], pa.int64()), "other": [1] * 6})
    out = wh.root / "matched.parquet"
    s = floe.match_rows("p.m", probe, key="id", columns=["v", "id"], output=out, warehouse=wh.dir, memory_limit="1MiB")
    assert isinstance(s, floe.MatchSummary)
    assert (s.keys, s.rows, s.files_scanned, s.files_matched) == (6, 4, 2, 2)
    got = pq.read_table(out)
    assert got.column_names == ["v", "id"]
    assert sorted(got.to_pylist(), key=lambda r: r["id"]) == [
        {"v": f"v{i}", "id": i} for i in (3, 499, 500, 777)
    ]
    pq.write_table(probe, wh.root / "probe.parquet")
    s = floe.match_rows("p.m", [wh.root / "probe.parquet"], key=["id"], output=out, warehouse=wh.dir)
    assert s.rows == 4 and pq.read_table(out).column_names == ["id"]
    cli_out = wh.root / "cli.parquet"
    cli = wh.floe("match", "p.m", wh.root / "probe.parquet", "--key", "id", "--columns", "v,id", "-o", cli_out)
    assert cli == {"keys": 6, "rows": 4, "files_scanned": 2, "files_matched": 2}
    assert sorted(pq.read_table(cli_out).to_pylist(), key=lambda r: r["id"]) == sorted(got.to_pylist(), key=lambda r: r["id"])
    s = floe.match_rows("p.m", pa.table({"id": pa.array([-1], pa.int64())}), key="id", output=out, warehouse=wh.dir)
    assert (s.rows, s.files_scanned) == (0, 0) and pq.read_table(out).num_rows == 0
    with pytest.raises(floe.NoSuchTableError):
        floe.match_rows("p.none", probe, key="id", output=out, warehouse=wh.dir)
    with pytest.raises(floe.InvalidOptionError, match="nope"):
        floe.match_rows("p.m", probe, key="id", columns=["nope"], output=out, warehouse=wh.dir)
    # Keys in a file whose name does not say its format: format= says it.
    keys_file = wh.root / "keys.txt"
    keys_file.write_text('{"id": 3}\n{"id": 500}\n')
    with pytest.raises(floe.FloeError):
        floe.match_rows("p.m", keys_file, key="id", output=wh.root / "k.parquet", warehouse=wh.dir)
    s = floe.match_rows("p.m", keys_file, key="id", output=wh.root / "k.parquet", format="jsonl", warehouse=wh.dir)
    assert s.rows == 2 and sorted(pq.read_table(wh.root / "k.parquet")["id"].to_pylist()) == [3, 500]
    # A failed match leaves the output it would replace as it was, and nothing beside it.
    assert pq.read_table(out).num_rows == 0
    assert sorted(p.name for p in wh.root.glob("matched.parquet*")) == ["matched.parquet"]
    assert len(wh.table("p.m").snapshots()) == 2


def test_ctrl_c_stops_match_rows(wh):
    """KeyboardInterrupt while match_rows reads a slow stream: it stops reading and raises;
    the output it would replace is left as it was."""
    import _thread

    load(wh, "p.mi", table(0, 100))
    out = wh.root / "mi.parquet"
    pq.write_table(pa.table({"before": [1]}), out)
    schema = pa.schema([("id", pa.int64())])
    produced = []

    def batches():
        for k in range(500):
            produced.append(k)
            if k == 10:
                # Ctrl-C while match_rows is surely reading (this runs on floe's reader thread).
                _thread.interrupt_main()
            yield pa.record_batch([pa.array([k], pa.int64())], schema=schema)
            time.sleep(0.01)

    # The default handler (raising KeyboardInterrupt), whatever an earlier test left installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            floe.match_rows("p.mi", pa.RecordBatchReader.from_batches(schema, batches()), key="id",
                            output=out, warehouse=wh.dir)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert 10 < len(produced) < 500
    assert pq.read_table(out).column_names == ["before"]
    assert sorted(p.name for p in wh.root.glob("mi.parquet*")) == ["mi.parquet"]


def test_replace_partitions_and_partition_by(wh):
    load(wh, "p.part", table(0, 300), partition_by="identity(cat)")
    s = load(wh, "p.part", table(1000, 3).filter(pa.compute.equal(table(1000, 3)["cat"], "c1")),
             mode="replace", replace_partitions=True)
    got = rows(wh, "p.part")
    assert {r["cat"] for r in got if r["id"] >= 1000} == {"c1"}
    assert not [r for r in got if r["cat"] == "c1" and r["id"] < 1000]
    assert len([r for r in got if r["cat"] != "c1"]) == 200
    assert s.files_removed >= 1


def test_load_id_makes_a_rerun_a_no_op(wh):
    assert not load(wh, "p.id", table(0, 10), load_id="run-1").skipped
    again = load(wh, "p.id", table(0, 10), load_id="run-1")
    assert again.skipped and len(rows(wh, "p.id")) == 10


def test_typed_exceptions(wh):
    load(wh, "p.e", table(0, 10))
    with pytest.raises(floe.InvalidOptionError, match="key column 'nope'"):
        load(wh, "p.e", table(0, 10), mode="merge", key="nope")
    with pytest.raises(floe.SchemaMismatchError, match="'v'"):
        load(wh, "p.e", pa.table({"id": [1], "v": [1.5]}), schema_evolution="strict")
    with pytest.raises(floe.SchemaMismatchError):
        load(wh, "p.e", pa.table({"id": [1], "v": pa.array([[1]])}))
    with pytest.raises(floe.CatalogError, match="prod"):
        floe.load("p.e", table(0, 1), catalog="prod")
    nulls = pa.table({"id": pa.array([1, None], pa.int64()), "v": ["a", "b"]})
    with pytest.raises(floe.BadInputError, match="null"):
        load(wh, "p.e", nulls, mode="merge", key="id")
    with pytest.raises(floe.InvalidOptionError):
        load(wh, "p.e", table(0, 1), mode="sideways")
    with pytest.raises(TypeError):
        load(wh, "p.e", 42)
    assert issubclass(floe.ConflictError, floe.FloeError)
    assert len(wh.table("p.e").snapshots()) == 1


def test_a_catalog_given_as_properties(wh):
    props = {"type": "sql", "uri": f"sqlite:///{wh.dir}/catalog.db", "warehouse": f"file://{wh.dir}"}
    wh.dir.mkdir(parents=True, exist_ok=True)
    floe.load("p.props", table(0, 5), catalog=props)
    assert len(rows(wh, "p.props")) == 5


def test_the_gil_is_released_while_floe_works(wh):
    """A Python thread keeps running while a load is in progress."""
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(1)
            stop.wait(0.001)

    t = threading.Thread(target=tick)
    t.start()
    try:
        load(wh, "p.gil", table(0, 300_000))
    finally:
        stop.set()
        t.join()
    assert len(ticks) > 5


def test_an_exception_in_the_progress_callback_cancels_the_load(wh):
    load(wh, "p.cb", table(0, 10))
    before = wh.table("p.cb").metadata_location

    def batches():
        for k in range(200):
            yield from table(k * 1000, 1000).to_batches()
            threading.Event().wait(0.01)

    def progress(p):
        raise RuntimeError("stop now")

    reader = pa.RecordBatchReader.from_batches(table(0, 1).schema, batches())
    with pytest.raises(RuntimeError, match="stop now"):
        load(wh, "p.cb", reader, progress=progress)
    assert wh.table("p.cb").metadata_location == before
    assert len(list((wh.dir / "p" / "cb" / "data").iterdir())) == 1


def test_register_table_names_a_table_in_another_catalog(wh):
    from pyiceberg.catalog.sql import SqlCatalog

    load(wh, "p.src", table(0, 100))
    metadata = wh.table("p.src").metadata_location
    uri = f"sqlite:///{wh.root}/other.db"
    other = {"type": "sql", "uri": uri, "warehouse": f"file://{wh.root}/other", "name": "other"}
    assert floe.register_table("q.copy", metadata, catalog=other) == metadata
    registered = SqlCatalog("other", uri=uri).load_table("q.copy")
    assert registered.metadata_location == metadata
    assert sorted(registered.scan().to_arrow()["id"].to_pylist()) == list(range(100))
    with pytest.raises(floe.CatalogRefusedError, match="already exists"):
        floe.register_table("q.copy", metadata, catalog=other)
    with pytest.raises(floe.FloeError):
        floe.register_table("q.none", f"file://{wh.root}/missing.metadata.json", catalog=other)
    # Loads through the other catalog go on from the registered metadata.
    floe.load("q.copy", table(100, 10), catalog=other)
    assert len(SqlCatalog("other", uri=uri).load_table("q.copy").scan().to_arrow()) == 110
    assert len(wh.table("p.src").scan().to_arrow()) == 100
