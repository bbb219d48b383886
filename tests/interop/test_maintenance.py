"""floe expire and floe inspect, checked with pyiceberg and DuckDB: the rows readers see never
change, every file a kept snapshot reaches stays, and the files only expired snapshots reached
are gone (or, in a dry run, listed and left alone)."""

import json
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conftest import FLOE_BIN


def write(path: Path, ids, v="x"):
    pq.write_table(pa.table({"id": pa.array(list(ids), pa.int64()), "v": [v] * len(ids)}), path)
    return path


def files_on_disk(wh, name):
    root = wh.dir / Path(*name.split("."))
    return {str(p) for p in root.rglob("*") if p.is_file() and not p.name.endswith(".metadata.json")}


def reachable(table):
    """Every manifest list, manifest, data and delete file the table's snapshots reach."""
    io = table.io
    out = set()
    for snap in table.metadata.snapshots:
        out.add(snap.manifest_list)
        for m in snap.manifests(io):
            out.add(m.manifest_path)
            for entry in m.fetch_manifest_entry(io, discard_deleted=True):
                out.add(entry.data_file.file_path)
    return {p.removeprefix("file://") for p in out}


def history_table(wh, name="m.t"):
    """Three appends, a replace, then two appends: 6 snapshots; the replace removed 3 files."""
    for i in range(3):
        wh.floe("load", name, write(wh.root / f"a{i}.parquet", range(i * 10, i * 10 + 10)), "--load-id", f"a{i}")
    wh.floe("load", name, write(wh.root / "r.parquet", range(100, 105)), "--mode", "replace", "--load-id", "r")
    for i in range(2):
        wh.floe("load", name, write(wh.root / f"b{i}.parquet", range(200 + i * 10, 205 + i * 10)), "--load-id", f"b{i}")


def test_expire_removes_only_what_no_kept_snapshot_reaches(wh):
    history_table(wh)
    before_rows = wh.pyiceberg_rows("m.t")
    assert len(wh.table("m.t").metadata.snapshots) == 6
    out = wh.floe("expire", "m.t", "--older-than", "0s", "--retain-last", "3")
    assert len(out["expired_snapshot_ids"]) == 3 and out["snapshots_kept"] == 3
    # The three appended files the replace removed are reachable only by expired snapshots.
    assert out["data_files"] == 3 and out["manifest_lists"] == 3
    assert out["files_deleted"] == out["data_files"] + out["manifests"] + out["manifest_lists"]
    table = wh.table("m.t")
    assert len(table.metadata.snapshots) == 3
    assert wh.pyiceberg_rows("m.t") == before_rows == wh.duckdb_rows("m.t")
    # Nothing a kept snapshot reaches is gone, and nothing else is left.
    assert reachable(table) == files_on_disk(wh, "m.t")
    for snap in table.metadata.snapshots:
        assert table.scan(snapshot_id=snap.snapshot_id).to_arrow().num_rows > 0
    again = wh.floe("expire", "m.t", "--older-than", "0s", "--retain-last", "3")
    assert again["expired_snapshot_ids"] == [] and "nothing to expire" in again["message"]


def test_a_dry_run_lists_the_files_and_changes_nothing(wh):
    history_table(wh)
    location = wh.table("m.t").metadata_location
    before = files_on_disk(wh, "m.t")
    proc = subprocess.run(
        [FLOE_BIN, "expire", "m.t", "--older-than", "0s", "--retain-last", "2", "--dry-run", "--warehouse", str(wh.dir)],
        capture_output=True, text=True, check=True,
    )
    listed = {line.split()[-1].removeprefix("file://") for line in proc.stdout.splitlines() if line.startswith("would delete")}
    assert "nothing changed (dry run)" in proc.stdout
    assert wh.table("m.t").metadata_location == location
    assert files_on_disk(wh, "m.t") == before
    wh.floe("expire", "m.t", "--older-than", "0s", "--retain-last", "2")
    assert before - files_on_disk(wh, "m.t") == listed


def test_defaults_keep_recent_snapshots_and_tags_keep_theirs(wh):
    history_table(wh)
    # Defaults (older than 5 days, keep 1): every snapshot here is newer.
    assert wh.floe("expire", "m.t")["expired_snapshot_ids"] == []
    table = wh.table("m.t")
    first = min(table.metadata.snapshots, key=lambda s: s.timestamp_ms)
    table.manage_snapshots().create_tag(first.snapshot_id, "first").commit()
    out = wh.floe("expire", "m.t", "--older-than", "0s")
    table = wh.table("m.t")
    kept = {s.snapshot_id for s in table.metadata.snapshots}
    assert first.snapshot_id in kept and table.metadata.current_snapshot_id in kept
    assert out["snapshots_kept"] == 2
    # The tagged snapshot still reads, from files that are still there.
    assert table.scan(snapshot_id=first.snapshot_id).to_arrow().num_rows == 10
    assert reachable(table) == files_on_disk(wh, "m.t")


def test_load_ids_live_as_long_as_their_snapshot(wh):
    history_table(wh)
    wh.floe("expire", "m.t", "--older-than", "0s", "--retain-last", "2")
    kept = wh.floe("load", "m.t", wh.root / "b1.parquet", "--load-id", "b1")
    assert kept["skipped"], "a load id in the kept history is still a no-op"
    forgotten = wh.floe("load", "m.t", wh.root / "a0.parquet", "--load-id", "a0")
    assert not forgotten["skipped"] and forgotten["rows_written"] == 10


def test_merge_on_read_delete_files_go_with_their_snapshots(wh):
    wh.floe("load", "m.mor", write(wh.root / "base.parquet", range(0, 100)))
    wh.floe("load", "m.mor", write(wh.root / "up.parquet", range(0, 10), v="y"), "--mode", "merge", "--key", "id", "--merge-mode", "merge-on-read")
    before = wh.pyiceberg_rows("m.mor")
    wh.floe("load", "m.mor", write(wh.root / "all.parquet", range(0, 5)), "--mode", "replace")
    out = wh.floe("expire", "m.mor", "--older-than", "0s")
    assert out["delete_files"] >= 1 and out["data_files"] >= 2
    table = wh.table("m.mor")
    assert reachable(table) == files_on_disk(wh, "m.mor")
    assert [r["id"] for r in wh.pyiceberg_rows("m.mor")] == list(range(5))
    assert len(before) == 100


def test_inspect_reports_what_pyiceberg_sees(wh):
    wh.floe("load", "m.p", write(wh.root / "p0.parquet", range(0, 50)), "--partition-by", "bucket(4, id)")
    wh.floe("load", "m.p", write(wh.root / "p1.parquet", range(50, 80)), "--load-id", "second")
    report = wh.floe("inspect", "m.p")
    table = wh.table("m.p")
    files = table.inspect.files().to_pylist()
    assert report["files"]["data_files"] == len(files)
    assert report["files"]["data_rows"] == 80
    assert report["files"]["data_bytes"] == sum(f["file_size_in_bytes"] for f in files)
    assert sum(p["data_files"] for p in report["partitions"]) == len(files)
    assert len(report["partitions"]) == len({str(f["partition"]) for f in files})
    assert [s["load_id"] for s in report["snapshots"]][-1] == "second"
    assert report["current_snapshot_id"] == table.metadata.current_snapshot_id
    assert [f["name"] for f in report["schema"]["fields"]] == ["id", "v"]
    human = subprocess.run(
        [FLOE_BIN, "inspect", "m.p", "--snapshots", "--partitions", "--warehouse", str(wh.dir)],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "second" in human and "id_bucket=" in human
    assert [h["snapshot_id"] for h in report["history"]] == [s["snapshot_id"] for s in report["snapshots"]]
    listed = subprocess.run(
        [FLOE_BIN, "inspect", "m.p", "--files", "--json", "--warehouse", str(wh.dir)],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    per_file = [json.loads(line) for line in listed]
    assert sorted(f["path"] for f in per_file) == sorted(f["file_path"] for f in files)
    assert sum(f["rows"] for f in per_file) == 80 and {f["content"] for f in per_file} == {"data"}


def test_maintenance_errors_are_clear(wh):
    proc = wh.floe("expire", "m.none", ok=False)
    assert proc.returncode != 0 and "does not exist" in proc.stderr
    wh.floe("load", "m.gc", write(wh.root / "g.parquet", range(3)), "--table-property", "gc.enabled=false")
    proc = wh.floe("expire", "m.gc", "--older-than", "0s", ok=False)
    assert proc.returncode != 0 and "gc.enabled" in proc.stderr
    proc = wh.floe("expire", "m.gc", "--older-than", "yesterday", ok=False)
    assert proc.returncode != 0 and "older-than" in proc.stderr


def test_python_expire_and_inspect(wh):
    import floe

    history_table(wh)
    report = floe.inspect("m.t", warehouse=wh.dir)
    assert isinstance(report, floe.InspectReport) and report.snapshots is report["snapshots"]
    assert len(report.snapshots) == 6 and report.table == "m.t" and report.files["data_files"] >= 1
    assert report.to_dict()["current_snapshot_id"] == report.current_snapshot_id
    dry = floe.expire("m.t", older_than="0s", retain_last=4, dry_run=True, warehouse=wh.dir)
    assert isinstance(dry, floe.ExpireSummary) and "dry run" in repr(dry)
    assert dry.dry_run and len(dry.expired_snapshot_ids) == 2 and dry.files_deleted == 0
    done = floe.expire("m.t", older_than="0s", retain_last=4, warehouse=wh.dir)
    assert done.expired_snapshot_ids == dry.expired_snapshot_ids
    assert len(floe.inspect("m.t", warehouse=wh.dir)["snapshots"]) == 4
    try:
        floe.inspect("m.missing", warehouse=wh.dir)
    except floe.NoSuchTableError as e:
        assert "does not exist" in str(e)
    else:
        raise AssertionError("a missing table must raise NoSuchTableError")
    assert json.loads(json.dumps(done.to_dict()))["snapshots_kept"] == 4


def test_expire_killed_at_any_moment_leaves_a_readable_table(wh):
    rng = random.Random(7)
    expected = []
    for round_ in range(5):
        for i in range(12):
            ids = range(round_ * 1000 + i * 10, round_ * 1000 + i * 10 + 10)
            wh.floe("load", "m.k", write(wh.root / f"k{round_}-{i}.parquet", ids))
            expected.extend(ids)
        # A replace makes the earlier files reachable only by old snapshots.
        ids = range(round_ * 1000 + 500, round_ * 1000 + 505)
        wh.floe("load", "m.k", write(wh.root / f"kr{round_}.parquet", ids), "--mode", "replace")
        expected = list(ids)
        proc = subprocess.Popen(
            [FLOE_BIN, "expire", "m.k", "--older-than", "0s", "--warehouse", str(wh.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.0, 0.03))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        table = wh.table("m.k")
        assert reachable(table) <= files_on_disk(wh, "m.k"), "a file a kept snapshot needs is gone"
        assert [r["id"] for r in wh.pyiceberg_rows("m.k")] == expected
        assert [r["id"] for r in wh.duckdb_rows("m.k")] == expected
    # A last, uninterrupted expire leaves exactly what the kept snapshot reaches (plus any
    # file an interrupted run had orphaned before its commit: none, the commit comes first).
    wh.floe("expire", "m.k", "--older-than", "0s")
    assert reachable(wh.table("m.k")) <= files_on_disk(wh, "m.k")


def test_expire_beside_concurrent_loads_loses_nothing(wh):
    wh.floe("load", "m.c", write(wh.root / "c0.parquet", range(0, 10)))
    loaded, errors = [], []

    def loader(first):
        for n in range(10):
            ids = range(first + n * 10, first + n * 10 + 10)
            path = write(wh.root / f"c{first}-{n}.parquet", ids)
            proc = wh.floe("load", "m.c", path, ok=False)
            if proc.returncode == 0:
                loaded.extend(ids)
            else:
                errors.append(proc.stderr)

    threads = [threading.Thread(target=loader, args=(first,)) for first in (1000, 2000)]
    for t in threads:
        t.start()
    expires = 0
    while any(t.is_alive() for t in threads):
        out = wh.floe("expire", "m.c", "--older-than", "0s", "--retain-last", "2")
        expires += bool(out["expired_snapshot_ids"])
    for t in threads:
        t.join()
    assert not errors, errors
    assert expires >= 1
    expected = sorted(list(range(0, 10)) + loaded)
    assert [r["id"] for r in wh.pyiceberg_rows("m.c")] == expected
    assert [r["id"] for r in wh.duckdb_rows("m.c")] == expected
    assert reachable(wh.table("m.c")) <= files_on_disk(wh, "m.c")


def live_files(wh, name):
    return wh.table(name).inspect.files().to_pylist()


def test_compact_bin_packs_small_files_into_one_replace_snapshot(wh):
    for i in range(12):
        wh.floe("load", "m.s", write(wh.root / f"s{i}.parquet", range(i * 100, i * 100 + 100)))
    before = wh.pyiceberg_rows("m.s")
    before_files = live_files(wh, "m.s")
    assert len(before_files) == 12
    out = wh.floe("compact", "m.s")
    assert out["mode"] == "compact" and out["operation"] == "replace"
    assert out["files_removed"] == 12 and out["files_added"] == 1
    assert out["rows_removed"] == out["rows_written"] == 1200
    assert out["input_files"] == 12 and out["input_bytes"] == sum(f["file_size_in_bytes"] for f in before_files)
    assert len(live_files(wh, "m.s")) == 1
    assert wh.pyiceberg_rows("m.s") == before == wh.duckdb_rows("m.s")
    again = wh.floe("compact", "m.s")
    assert again["snapshot_id"] is None and "nothing to compact" in again["message"]
    # The compaction's own load id makes a rerun a no-op as well.
    wh.floe("load", "m.s", write(wh.root / "t0.parquet", range(5000, 5001)))
    for n in range(5):
        wh.floe("load", "m.s", write(wh.root / f"t{n}.parquet", range(6000 + n, 6001 + n)))
    first = wh.floe("compact", "m.s", "--load-id", "c1")
    assert first["files_removed"] == 7
    assert wh.floe("compact", "m.s", "--load-id", "c1")["skipped"]


def test_compact_works_per_partition_and_leaves_sparse_ones(wh):
    rows = lambda tenant, ids: pa.table({"id": pa.array(list(ids), pa.int64()), "tenant": [tenant] * len(ids)})
    for i in range(6):
        pq.write_table(rows("a", range(i * 10, i * 10 + 10)), wh.root / f"a{i}.parquet")
        wh.floe("load", "m.part", wh.root / f"a{i}.parquet", "--partition-by", "identity(tenant)")
    for i in range(2):
        pq.write_table(rows("b", range(1000 + i, 1001 + i)), wh.root / f"b{i}.parquet")
        wh.floe("load", "m.part", wh.root / f"b{i}.parquet")
    before = wh.pyiceberg_rows("m.part")
    only_b = wh.floe("compact", "m.part", "--where", "tenant=b", "--min-input-files", "2")
    assert only_b["files_removed"] == 2 and only_b["files_added"] == 1
    bad = wh.floe("compact", "m.part", "--where", "region=eu", ok=False)
    assert bad.returncode != 0 and "no partition field 'region'" in bad.stderr
    out = wh.floe("compact", "m.part")
    assert out["files_removed"] == 6 and out["files_added"] == 1
    by_tenant = {}
    for f in live_files(wh, "m.part"):
        by_tenant.setdefault(f["partition"]["tenant"], []).append(f)
    assert len(by_tenant["a"]) == 1 and len(by_tenant["b"]) == 1
    assert wh.pyiceberg_rows("m.part") == before == wh.duckdb_rows("m.part")


def test_compact_applies_merge_on_read_deletes(wh):
    wh.floe("load", "m.mor2", write(wh.root / "base.parquet", range(0, 1000)))
    for n in range(3):
        up = write(wh.root / f"up{n}.parquet", range(n * 100, n * 100 + 50), v=f"u{n}")
        wh.floe("load", "m.mor2", up, "--mode", "merge", "--key", "id", "--merge-mode", "merge-on-read")
    report = wh.floe("inspect", "m.mor2")
    assert report["files"]["position_delete_files"] >= 1
    before = wh.pyiceberg_rows("m.mor2")
    out = wh.floe("compact", "m.mor2")
    assert out["files_removed"] >= 1
    after = wh.floe("inspect", "m.mor2")
    assert after["files"]["position_delete_files"] == 0
    assert after["files"]["data_rows"] == 1000
    assert wh.pyiceberg_rows("m.mor2") == before == wh.duckdb_rows("m.mor2")


def test_compact_copies_files_whose_row_groups_are_large_enough(wh):
    """Small files (below 75% of the target size) whose row groups already have the table's
    size are not decoded: their column chunks are copied into the new file; a file with
    deletes is rewritten with them applied."""
    props = ["--table-property", "write.parquet.row-group-size-bytes=65536",
             "--table-property", "write.target-file-size-bytes=16777216"]
    rows = lambda first, n: pa.table({"id": pa.array(range(first, first + n), pa.int64()),
                                      "v": [f"value {i} " * 3 for i in range(first, first + n)]})
    for i in range(6):
        path = wh.root / f"big{i}.parquet"
        pq.write_table(rows(i * 100_000, 100_000), path, compression="zstd", row_group_size=20_000)
        wh.floe("load", "m.cp", path, *(props if i == 0 else []))
    before = wh.pyiceberg_rows("m.cp")
    out = wh.floe("compact", "m.cp")
    assert out["files_removed"] == 6 and out["rows_written"] == 600_000
    assert out["rows_copied"] == 600_000, out
    assert wh.pyiceberg_rows("m.cp") == before == wh.duckdb_rows("m.cp")
    # With deletes on one file, that file is rewritten and the others copied.
    for i in range(6):
        wh.floe("load", "m.cp2", wh.root / f"big{i}.parquet", *(props if i == 0 else []))
    up = wh.root / "up.parquet"
    pq.write_table(rows(10, 5), up, compression="zstd")
    wh.floe("load", "m.cp2", up, "--mode", "merge", "--key", "id", "--merge-mode", "merge-on-read")
    before = wh.pyiceberg_rows("m.cp2")
    out = wh.floe("compact", "m.cp2")
    assert out["rows_copied"] == 500_000 and out["rows_written"] == 600_000, out
    assert wh.floe("inspect", "m.cp2")["files"]["position_delete_files"] == 0
    assert wh.pyiceberg_rows("m.cp2") == before == wh.duckdb_rows("m.cp2")


def test_python_compact(wh):
    import floe

    for i in range(5):
        wh.floe("load", "m.py", write(wh.root / f"p{i}.parquet", range(i * 3, i * 3 + 3)))
    summary = floe.compact("m.py", warehouse=wh.dir)
    assert summary.mode == "compact" and summary.files_removed == 5 and summary.files_added == 1
    assert [r["id"] for r in wh.pyiceberg_rows("m.py")] == list(range(15))
    try:
        floe.compact("m.absent", warehouse=wh.dir)
    except floe.NoSuchTableError:
        pass
    else:
        raise AssertionError("compacting a missing table must raise NoSuchTableError")


def test_compact_killed_at_any_moment_leaves_the_old_or_the_new_table(wh):
    rng = random.Random(11)
    expected = []
    for round_ in range(5):
        for i in range(8):
            ids = range(round_ * 1000 + i * 50, round_ * 1000 + i * 50 + 50)
            wh.floe("load", "m.kc", write(wh.root / f"kc{round_}-{i}.parquet", ids))
            expected.extend(ids)
        before = wh.table("m.kc").metadata.current_snapshot_id
        proc = subprocess.Popen(
            [FLOE_BIN, "compact", "m.kc", "--warehouse", str(wh.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        table = wh.table("m.kc")
        now = table.metadata.current_snapshot_id
        assert now == before or table.metadata.snapshot_by_id(now).summary.operation.value == "replace"
        assert reachable(table) <= files_on_disk(wh, "m.kc"), "a file a snapshot needs is gone"
        assert [r["id"] for r in wh.pyiceberg_rows("m.kc")] == sorted(expected)
        assert [r["id"] for r in wh.duckdb_rows("m.kc")] == sorted(expected)


def test_remove_orphans_deletes_only_old_unreferenced_files(wh):
    import os

    for i in range(3):
        wh.floe("load", "m.o", write(wh.root / f"o{i}.parquet", range(i * 10, i * 10 + 10)))
    wh.floe("load", "m.o", write(wh.root / "or.parquet", range(100, 110)), "--mode", "replace")
    table_dir = wh.dir / "m" / "o"
    old = time.time() - 10 * 24 * 3600
    orphans = [table_dir / "data" / "crashed-load.parquet", table_dir / "metadata" / "lost-manifest.avro",
               table_dir / "data" / "nested" / "deep.parquet"]
    for p in orphans:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"left behind")
        os.utime(p, (old, old))
    fresh = table_dir / "data" / "running-load.parquet"
    fresh.write_bytes(b"a load still writing")
    # Referenced files, even old ones, always stay.
    for p in files_on_disk(wh, "m.o"):
        if Path(p) not in orphans and Path(p) != fresh:
            os.utime(p, (old, old))
    before_rows = wh.pyiceberg_rows("m.o")
    dry = wh.floe("remove-orphans", "m.o", "--dry-run")
    assert dry["orphans"] == 3 and dry["files_deleted"] == 0 and dry["recent_unreferenced"] == 1
    assert all(p.exists() for p in orphans)
    out = wh.floe("remove-orphans", "m.o")
    assert out["orphans"] == 3 and out["files_deleted"] == 3
    assert not any(p.exists() for p in orphans) and fresh.exists()
    table = wh.table("m.o")
    assert reachable(table) <= files_on_disk(wh, "m.o")
    for snap in table.metadata.snapshots:
        table.scan(snapshot_id=snap.snapshot_id).to_arrow()
    assert wh.pyiceberg_rows("m.o") == before_rows == wh.duckdb_rows("m.o")
    # After an expire, the files only expired snapshots reached are unreferenced but already
    # deleted; a killed expire's leftovers are what remove-orphans finds.
    import floe

    again = floe.remove_orphans("m.o", older_than="0s", warehouse=wh.dir)
    assert isinstance(again, floe.OrphanSummary)
    assert again.orphans == 1 and again.files_deleted == 1 and not fresh.exists()
