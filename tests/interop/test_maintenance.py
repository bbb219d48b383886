"""floe expire and floe inspect, checked with pyiceberg and DuckDB: the rows readers see never
change, every file a kept snapshot reaches stays, and the files only expired snapshots reached
are gone (or, in a dry run, listed and left alone)."""

import json
import subprocess
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
    assert len(report["snapshots"]) == 6
    dry = floe.expire("m.t", older_than="0s", retain_last=4, dry_run=True, warehouse=wh.dir)
    assert dry["dry_run"] and len(dry["expired_snapshot_ids"]) == 2 and dry["files_deleted"] == 0
    done = floe.expire("m.t", older_than="0s", retain_last=4, warehouse=wh.dir)
    assert done["expired_snapshot_ids"] == dry["expired_snapshot_ids"]
    assert len(floe.inspect("m.t", warehouse=wh.dir)["snapshots"]) == 4
    try:
        floe.inspect("m.missing", warehouse=wh.dir)
    except floe.NoSuchTableError as e:
        assert "does not exist" in str(e)
    else:
        raise AssertionError("a missing table must raise NoSuchTableError")
    assert json.dumps(done)
