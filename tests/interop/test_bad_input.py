"""The bad-input battery: every way an input has been seen to go wrong fails the load with an
error that names the file (row group, column), exits non-zero, and leaves the table exactly as it
was and readable by readers we did not write. Also the values floe must not change silently."""

import datetime as dt
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROWS = 150_000
CATEGORIES = [f"c{i}" for i in range(7)]  # 7 entries: 3-bit indices can point past them


def rows(first=0, n=ROWS):
    ids = list(range(first, first + n))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "cat": pa.array([CATEGORIES[i % 7] for i in ids]),
            "name": pa.array([f"name-{i:08d}-{'x' * (i % 60)}" for i in ids]),
            "tags": pa.array([[CATEGORIES[i % 5], CATEGORIES[i % 3]] for i in ids], pa.list_(pa.string())),
        }
    )


def write(path: Path, table: pa.Table, compression="zstd", **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # One data page per chunk: a chunk's last bytes are its data page's body.
    pq.write_table(table, path, compression=compression, row_group_size=ROWS, data_page_size=1 << 30, **kw)
    return path


def chunk(path: Path, column: str, rg=0):
    meta = pq.ParquetFile(path).metadata.row_group(rg)
    for i in range(meta.num_columns):
        c = meta.column(i)
        if c.path_in_schema == column:
            return c
    raise KeyError(column)


def damage(src: Path, dst: Path, offset: int, data: bytes) -> Path:
    shutil.copy(src, dst)
    with open(dst, "r+b") as f:
        f.seek(offset)
        f.write(data)
    return dst


def data_files(wh, table):
    data = wh.dir / "s" / table / "data"
    return sorted(p.name for p in data.iterdir()) if data.exists() else []


def assert_refused(wh, table, path, *args, names=()):
    """Loading `path` fails cleanly and the table stays as it was (snapshots, files, rows)."""
    before = wh.table(f"s.{table}")
    snapshots = len(before.snapshots())
    files = data_files(wh, table)
    expected = wh.pyiceberg_rows(f"s.{table}")
    proc = wh.floe("load", f"s.{table}", path, *args, ok=False)
    assert proc.returncode != 0, proc.stdout
    assert "panicked" not in proc.stderr, proc.stderr
    assert path.name in proc.stderr, proc.stderr
    for name in names:
        assert name in proc.stderr, proc.stderr
    assert "the table is unchanged" in proc.stderr
    after = wh.table(f"s.{table}")
    assert len(after.snapshots()) == snapshots
    assert after.metadata_location == before.metadata_location
    assert data_files(wh, table) == files, "a failed load left files behind"
    assert wh.pyiceberg_rows(f"s.{table}") == expected
    assert wh.duckdb_rows(f"s.{table}") == expected
    return proc


@pytest.fixture
def clean(wh):
    """A table loaded by copying a clean file, and that file."""
    path = write(wh.root / "clean.parquet", rows())
    out = wh.floe("load", "s.t", path)
    assert out["rows_copied"] == ROWS
    return path


# --- the copy path proves every page it copies is readable --------------------------------


def test_damaged_compressed_dictionary_page_body(wh, clean):
    c = chunk(clean, "cat")
    assert c.has_dictionary_page
    bad = damage(clean, wh.root / "dict-body.parquet", c.data_page_offset - 6, b"\x13\x37\x13\x37\x13\x37")
    assert_refused(wh, "t", bad, names=("row group 0", "column 'cat'"))


def test_damaged_compressed_data_page_body(wh, clean):
    c = chunk(clean, "name")
    end = (c.dictionary_page_offset or c.data_page_offset) + c.total_compressed_size
    bad = damage(clean, wh.root / "data-body.parquet", end - 40, b"\xff" * 16)
    assert_refused(wh, "t", bad, names=("row group 0", "column 'name'"))


def test_damaged_nested_column_page_body(wh, clean):
    c = chunk(clean, "tags.list.element")
    end = (c.dictionary_page_offset or c.data_page_offset) + c.total_compressed_size
    bad = damage(clean, wh.root / "nested.parquet", end - 12, b"\x00\xff\x00\xff\x00\xff")
    assert_refused(wh, "t", bad, names=("row group 0", "tags.list.element"))


@pytest.fixture
def plain(wh):
    """An uncompressed table and file: damage reaches the values without any codec noticing."""
    path = write(wh.root / "plain.parquet", rows(), compression="none")
    out = wh.floe("load", "s.u", path, "--compression", "uncompressed")
    assert out["rows_copied"] == ROWS
    return path


def test_dictionary_index_out_of_range_in_uncompressed_page(wh, plain):
    c = chunk(plain, "cat")
    end = c.data_page_offset + c.total_compressed_size - (c.data_page_offset - c.dictionary_page_offset)
    # 3-bit indices of all ones: index 7 of a 7-entry dictionary.
    bad = damage(plain, wh.root / "index.parquet", end - 300, b"\xff" * 96)
    proc = assert_refused(wh, "u", bad, "--compression", "uncompressed", names=("row group 0", "column 'cat'"))
    assert "dictionary" in proc.stderr


def test_damaged_uncompressed_dictionary_lengths(wh, plain):
    c = chunk(plain, "name")
    # The first entry's length prefix, right after the dictionary page header: find it by value.
    with open(plain, "rb") as f:
        f.seek(c.dictionary_page_offset)
        head = f.read(512)
    first = len("name-00000000-").to_bytes(4, "little") + b"name-00000000-"
    at = c.dictionary_page_offset + head.index(first)
    bad = damage(plain, wh.root / "lengths.parquet", at, (1 << 30).to_bytes(4, "little"))
    assert_refused(wh, "u", bad, "--compression", "uncompressed", names=("row group 0", "column 'name'"))


def test_page_checksums_are_checked(wh):
    """A flipped bit in plain int64 values is invisible without a CRC; with one it is refused."""
    path = write(wh.root / "crc.parquet", rows(), compression="none", write_page_checksum=True)
    wh.floe("load", "s.c", path, "--compression", "uncompressed")
    c = chunk(path, "id")
    end = (c.dictionary_page_offset or c.data_page_offset) + c.total_compressed_size
    with open(path, "rb") as f:
        f.seek(end - 8)
        last = f.read(8)
    bad = damage(path, wh.root / "crc-bad.parquet", end - 8, bytes([last[0] ^ 1]) + last[1:])
    proc = assert_refused(wh, "c", bad, "--compression", "uncompressed", names=("row group 0", "column 'id'"))
    assert "CRC" in proc.stderr


def test_truncated_input_is_refused(wh, clean):
    data = clean.read_bytes()
    meta_len = int.from_bytes(data[-8:-4], "little")
    footer = data[-(meta_len + 8):]
    c = chunk(clean, "name")
    start = c.dictionary_page_offset or c.data_page_offset
    # The chunk's second half is gone (zeros), the footer still promises it.
    cut = start + c.total_compressed_size // 2
    bad = wh.root / "truncated.parquet"
    bad.write_bytes(data[:cut] + bytes(len(data) - len(footer) - cut) + footer)
    assert_refused(wh, "t", bad, names=("row group 0", "column 'name'"))


# --- values are never changed silently -----------------------------------------------------


def test_timestamp_beyond_microseconds_is_refused(wh):
    ok = pa.table({"id": pa.array([1], pa.int64()), "at": pa.array([0], pa.timestamp("ms"))})
    pq.write_table(ok, wh.root / "ok.parquet")
    wh.floe("load", "s.ts", wh.root / "ok.parquet")
    forever = pa.table({"id": pa.array([2], pa.int64()), "at": pa.array([2**62], pa.timestamp("ms"))})
    pq.write_table(forever, wh.root / "forever.parquet")
    proc = assert_refused(wh, "ts", wh.root / "forever.parquet", names=("column 'at'", "row group 0"))
    assert "does not fit" in proc.stderr


def test_nanoseconds_round_toward_negative_infinity(wh):
    ns = [-1, -1_500, 1_500, -86_400_000_000_001]
    t = pa.table({"id": pa.array(range(len(ns)), pa.int64()), "at": pa.array(ns, pa.timestamp("ns"))})
    pq.write_table(t, wh.root / "ns.parquet")
    wh.floe("load", "s.ns", wh.root / "ns.parquet")
    epoch = dt.datetime(1970, 1, 1)
    want = [epoch + dt.timedelta(microseconds=n // 1000) for n in ns]
    assert [r["at"] for r in wh.pyiceberg_rows("s.ns")] == want
    assert [r["at"] for r in wh.duckdb_rows("s.ns")] == want


def test_duplicate_column_names_are_refused_for_an_existing_table(wh):
    s = pa.StructArray.from_arrays([pa.array([1]), pa.array([2])], names=["x", "y"])
    pq.write_table(pa.table({"id": [1], "b": [2], "s": s}), wh.root / "first.parquet")
    wh.floe("load", "s.dup", wh.root / "first.parquet")
    twice = pa.Table.from_arrays([pa.array([3]), pa.array([4])], names=["id", "id"])
    pq.write_table(twice, wh.root / "twice.parquet")
    assert_refused(wh, "dup", wh.root / "twice.parquet", names=("'id' appears twice",))
    s = pa.StructArray.from_arrays([pa.array([1]), pa.array([2])], names=["x", "x"])
    pq.write_table(pa.table({"id": [5], "s": s}), wh.root / "nested-twice.parquet")
    assert_refused(wh, "dup", wh.root / "nested-twice.parquet", names=("'s.x' appears twice",))


def test_small_batch_rows_on_the_copy_path(wh):
    """A re-encoded column on the copy path with --batch-rows below 1,024 (it used to panic)."""
    import decimal

    t = rows().append_column("amount", pa.array([decimal.Decimal(i) / 100 for i in range(ROWS)], pa.decimal128(10, 2)))
    path = write(wh.root / "dec.parquet", t)
    out = wh.floe("load", "s.small", path, "--batch-rows", "100")
    assert out["rows_written"] == ROWS
    assert len(wh.pyiceberg_rows("s.small")) == ROWS


def test_float_merge_keys_are_refused(wh):
    pq.write_table(pa.table({"k": pa.array([1.0, -0.0]), "v": [1, 2]}), wh.root / "f.parquet")
    wh.floe("load", "s.fk", wh.root / "f.parquet")
    proc = wh.floe("load", "s.fk", wh.root / "f.parquet", "--mode", "merge", "--key", "k", ok=False)
    assert proc.returncode != 0 and "floating-point columns cannot be merge keys" in proc.stderr, proc.stderr
    assert len(wh.table("s.fk").snapshots()) == 1


# --- merges across partition spec evolution -------------------------------------------------


def spec_rows(first, n, tag):
    ids = list(range(first, first + n))
    return pa.table({"id": pa.array(ids, pa.int64()), "cat": [CATEGORIES[i % 3] for i in ids], "v": [f"{tag}{i}" for i in ids]})


@pytest.mark.parametrize("mode", ["copy-on-write", "merge-on-read"])
@pytest.mark.parametrize("direction", ["add-field", "remove-field"])
def test_merge_across_partition_spec_evolution(wh, mode, direction):
    """Data files of the old and the new spec in one table (the spec changed by pyiceberg):
    merges match rows in both, and each delete file is filed under its data file's spec."""
    pq.write_table(spec_rows(0, 300, "a"), wh.root / "base.parquet")
    first = ("--partition-by", "identity(cat)") if direction == "remove-field" else ()
    wh.floe("load", "s.sp", wh.root / "base.parquet", *first)
    with wh.table("s.sp").update_spec() as update:
        if direction == "add-field":
            update.add_identity("cat")
        else:
            update.remove_field("cat")
    pq.write_table(spec_rows(300, 300, "b"), wh.root / "more.parquet")
    wh.floe("load", "s.sp", wh.root / "more.parquet")
    want = {r["id"]: r for r in spec_rows(0, 600, "x").to_pylist()}
    for r in spec_rows(0, 300, "a").to_pylist() + spec_rows(300, 300, "b").to_pylist():
        want[r["id"]] = r
    # Updates that hit files of both specs, then inserts; twice, so deletes pile up.
    for k, (first_id, n) in enumerate([(250, 100), (200, 500)]):
        up = spec_rows(first_id, n, f"u{k}-")
        pq.write_table(up, wh.root / f"up{k}.parquet")
        out = wh.floe("load", "s.sp", wh.root / f"up{k}.parquet", "--mode", "merge", "--key", "id", "--merge-mode", mode)
        for r in up.to_pylist():
            want[r["id"]] = r
        assert out["rows_updated"] + out["rows_inserted"] == n, out
    expected = sorted(want.values(), key=lambda r: r["id"])
    assert wh.pyiceberg_rows("s.sp") == expected
    assert wh.duckdb_rows("s.sp") == expected
    if mode == "merge-on-read":
        # Rows of both specs were updated in place: delete files under each spec.
        tasks = list(wh.table("s.sp").scan().plan_files())
        assert len({d.spec_id for t in tasks for d in t.delete_files}) == 2



def big_noise_files(directory: Path, files=8, n=400_000, **extra):
    """Files slow enough to read that a command over them can be interrupted half-way."""
    import pyarrow.compute as pc

    for k in range(files):
        ids = pa.array(range(k * n, (k + 1) * n), pa.int64())
        noise = pc.cast(pc.random(n, initializer=k), pa.string())
        columns = {"id": ids, "cat": noise, "name": noise}
        columns.update({name: make(n) for name, make in extra.items()})
        write(directory / f"{k}.parquet", pa.table(columns))
    return directory


def interrupt_once_it_writes(wh, table, *args):
    """Runs `floe args...` and sends it SIGINT as soon as a new data file of `table` appears;
    returns its exit status and stderr."""
    import os
    import signal
    import subprocess
    import time

    from conftest import FLOE_BIN

    before = data_files(wh, table)
    cmd = [FLOE_BIN, *map(str, args), "--warehouse", str(wh.dir), "--json", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=wh.root)
    deadline = time.time() + 120
    while len(data_files(wh, table)) <= len(before) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"floe {args[0]} ended before it could be interrupted"
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_interrupted_load_deletes_its_files(wh):
    """Ctrl-C in the middle of a load: exit 130, no file of the load left, the table as it was."""
    write(wh.root / "seed.parquet", rows(0, 1000))
    wh.floe("load", "s.int", wh.root / "seed.parquet")
    before = wh.table("s.int").metadata_location
    seeded = data_files(wh, "int")
    big = big_noise_files(wh.root / "big", tags=lambda n: pa.nulls(n, pa.list_(pa.string())))
    status, err = interrupt_once_it_writes(wh, "int", "load", "s.int", big, "--rewrite")
    assert status == 130, (status, err)
    assert "cancelled" in err and "the table is unchanged" in err, err
    assert data_files(wh, "int") == seeded
    assert wh.table("s.int").metadata_location == before
    assert len(wh.pyiceberg_rows("s.int")) == 1000


def test_interrupted_compaction_deletes_its_files(wh):
    """Ctrl-C in the middle of `floe compact`: exit 130, its output files deleted, the table as
    it was."""
    for f in sorted(big_noise_files(wh.root / "cint").iterdir()):
        wh.floe("load", "s.cint", f)
    before = wh.table("s.cint").metadata_location
    loaded = data_files(wh, "cint")
    assert len(loaded) == 8
    status, err = interrupt_once_it_writes(wh, "cint", "compact", "s.cint")
    assert status == 130, (status, err)
    assert "cancelled" in err and "the table is unchanged" in err, err
    assert data_files(wh, "cint") == loaded
    assert wh.table("s.cint").metadata_location == before
    assert len(wh.duckdb_rows("s.cint")) == 8 * 400_000


def test_interrupted_match_leaves_its_output_as_it_was(wh):
    """Ctrl-C while `floe match` reads its keys from stdin: exit 130, the output file it would
    replace untouched, nothing partial left beside it."""
    import os
    import signal
    import subprocess

    from conftest import FLOE_BIN

    write(wh.root / "seed.parquet", rows(0, 1000))
    wh.floe("load", "s.mint", wh.root / "seed.parquet")
    out = wh.root / "matched.parquet"
    pq.write_table(pa.table({"before": [1, 2]}), out)
    cmd = [FLOE_BIN, "match", "s.mint", "-", "--format", "jsonl", "--key", "id", "-o", str(out),
           "--warehouse", str(wh.dir), "--json"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=wh.root)
    # Far more than a pipe holds: once written, floe is reading its keys (its handlers are in
    # place before it reads), and still waits for the rest.
    proc.stdin.write(b"".join(b'{"id": %d}\n' % k for k in range(40_000)))
    proc.stdin.flush()
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(input=b'{"id": 1}\n' * 100_000, timeout=120)
    err = err.decode()
    assert proc.returncode == 130, (proc.returncode, err)
    assert "cancelled" in err, err
    assert pq.read_table(out).column_names == ["before"]
    assert sorted(p.name for p in wh.root.glob("matched.parquet*")) == ["matched.parquet"]
    # Uninterrupted, the same command replaces the file.
    done = subprocess.run(cmd, input=b'{"id": 5}\n{"id": 7}\n', capture_output=True, cwd=wh.root)
    assert done.returncode == 0, done.stderr
    assert sorted(pq.read_table(out)["id"].to_pylist()) == [5, 7]


def test_failed_commit_plan_leaves_no_manifests_behind(wh):
    """A replace whose plan fails half-way (a manifest of the table is unreadable) deletes the
    manifests it had already rewritten, as well as its data files."""
    write(wh.root / "one.parquet", rows(0, 1000))
    write(wh.root / "two.parquet", rows(1000, 1000))
    wh.floe("load", "s.leak", wh.root / "one.parquet")
    first_manifests = {m.manifest_path for m in wh.table("s.leak").current_snapshot().manifests(wh.table("s.leak").io)}
    wh.floe("load", "s.leak", wh.root / "two.parquet")
    (older,) = first_manifests
    Path(older.removeprefix("file://")).unlink()
    metadata = wh.dir / "s" / "leak" / "metadata"
    before = sorted(p.name for p in metadata.iterdir())
    files = data_files(wh, "leak")
    proc = wh.floe("load", "s.leak", wh.root / "two.parquet", "--mode", "replace", ok=False)
    assert proc.returncode != 0 and "panicked" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in metadata.iterdir()) == before
    assert data_files(wh, "leak") == files


def test_load_id_of_a_rolled_back_snapshot_is_not_loaded_twice(wh):
    write(wh.root / "a.parquet", rows(0, 100))
    write(wh.root / "b.parquet", rows(100, 100))
    first = wh.floe("load", "s.rb", wh.root / "a.parquet", "--load-id", "run-1")
    wh.floe("load", "s.rb", wh.root / "b.parquet", "--load-id", "run-2")
    wh.table("s.rb").manage_snapshots().rollback_to_snapshot(first["snapshot_id"]).commit()
    assert len(wh.pyiceberg_rows("s.rb")) == 100
    again = wh.floe("load", "s.rb", wh.root / "b.parquet", "--load-id", "run-2")
    assert again["skipped"] and "no longer contains" in again["message"], again
    assert len(wh.pyiceberg_rows("s.rb")) == 100
    # A load id never seen loads as usual.
    assert not wh.floe("load", "s.rb", wh.root / "b.parquet", "--load-id", "run-3")["skipped"]
    assert len(wh.pyiceberg_rows("s.rb")) == 200


def test_a_closed_stdout_is_no_panic(wh, tmp_path):
    """`floe load ... | head -c 0`: the reader is gone when floe prints its summary. The load
    has landed; floe must exit 0, not panic on the broken pipe."""
    import os
    import subprocess

    from conftest import FLOE_BIN

    src = write(tmp_path / "a.parquet", rows(0, 1000))
    read, write_end = os.pipe()
    os.close(read)
    proc = subprocess.run([FLOE_BIN, "load", "p.t", src, "--warehouse", wh.dir, "--json"],
                          stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert "panicked" not in proc.stderr
    assert wh.table("p.t").scan().to_arrow().num_rows == 1000
