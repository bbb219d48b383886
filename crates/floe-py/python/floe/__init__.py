"""floe: stream Arrow data or Parquet files into Apache Iceberg tables, in bounded memory, with
exactly one atomic snapshot per load.

    import floe
    summary = floe.load("analytics.events", reader)          # any __arrow_c_stream__ object
    summary = floe.load("analytics.events", "data/*.parquet", mode="replace")
    summary = floe.load("shop.orders", df, mode="merge", key="order_id")

The defaults are those of `floe load`: an embedded SQLite catalog in ./warehouse unless
pyiceberg's configuration (.pyiceberg.yaml, PYICEBERG_CATALOG__*) names one.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

from . import _floe
from ._floe import (
    BadInputError,
    CancelledError,
    CatalogError,
    CatalogRefusedError,
    CommitStateUnknownError,
    ConflictError,
    FloeError,
    InvalidOptionError,
    NoSuchTableError,
    SchemaMismatchError,
    StagedFilesError,
    StorageError,
    UnsupportedTableError,
)

__all__ = [
    "load",
    "LoadSummary",
    "ExpireSummary",
    "OrphanSummary",
    "InspectReport",
    "MatchSummary",
    "expire",
    "inspect",
    "match_rows",
    "register_table",
    "compact",
    "remove_orphans",
    "NoSuchTableError",
    "FloeError",
    "InvalidOptionError",
    "BadInputError",
    "SchemaMismatchError",
    "CatalogError",
    "CatalogRefusedError",
    "ConflictError",
    "CommitStateUnknownError",
    "CancelledError",
    "StorageError",
    "StagedFilesError",
    "UnsupportedTableError",
]

# The exceptions live in the native module; they are floe's (pickled by that name, so an
# error raised in another process, a Ray task's, arrives as the same class).
for _name in __all__:
    _obj = globals().get(_name)
    if isinstance(_obj, type) and issubclass(_obj, BaseException):
        _obj.__module__ = "floe"
del _name, _obj

_MERGE_FIELDS = ("rows_inserted", "rows_updated", "rows_deleted", "files_rewritten", "delete_files_added", "spill_runs")
# Fields `--json` prints only when they apply: None as attributes otherwise.
_OPTIONAL_FIELDS = _MERGE_FIELDS + ("inferred_schema",)


class _Summary:
    """A `--json` object of the CLI, its fields as attributes."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, Any]):
        self._fields = dict(fields)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> Dict[str, Any]:
        """The summary as a plain dict (as `--json` prints it)."""
        return dict(self._fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._fields.get('message')!r})"


class LoadSummary(_Summary):
    """What a load did: every field of `floe load --json`, as attributes.

    Merge counts (rows_inserted, rows_updated, rows_deleted, files_rewritten,
    delete_files_added, spill_runs) are None for loads that are not merges; inferred_schema
    (an Iceberg schema dict) is None unless the load inferred its inputs' schema.
    """

    __slots__ = ()

    def __init__(self, fields: Mapping[str, Any]):
        super().__init__(fields)
        for name in _OPTIONAL_FIELDS:
            self._fields.setdefault(name, None)

    def to_dict(self) -> Dict[str, Any]:
        """The summary as a plain dict (as `--json` prints it)."""
        return {k: v for k, v in self._fields.items() if not (k in _OPTIONAL_FIELDS and v is None)}


class ExpireSummary(_Summary):
    """What `floe.expire` did: every field of `floe expire --json` (expired_snapshot_ids,
    snapshots_kept, manifest_lists, manifests, data_files, delete_files, bytes, files_deleted,
    dry_run, metadata_location, commit_attempts, duration_ms, message), as attributes."""

    __slots__ = ()


class OrphanSummary(_Summary):
    """What `floe.remove_orphans` did: every field of `floe remove-orphans --json`
    (files_listed, recent_unreferenced, orphans, orphan_bytes, files_deleted, dry_run,
    older_than_ms, duration_ms, message), as attributes."""

    __slots__ = ()


class MatchSummary(_Summary):
    """What `floe.match_rows` found: keys (read from the source), rows (live table rows with
    one of those keys, the rows written), files_scanned (data files compared after pruning by
    key bounds) and files_matched, as attributes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"MatchSummary({self._fields})"


class InspectReport(dict):
    """What `floe.inspect` found: the report of `floe inspect --json`, a dict whose keys are
    also attributes: table, location, format_version, metadata_location,
    current_snapshot_id, schema and partition_spec (Iceberg JSON), properties, refs,
    snapshots (id, time, operation, load id, summary, in_main), history, files (totals of
    the current snapshot's data and delete files), target_file_size and partitions (the same
    counts per partition)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> Dict[str, Any]:
        """The report as a plain dict (as `--json` prints it)."""
        return dict(self)

    def __repr__(self) -> str:
        return (f"InspectReport({self.get('table')!r}: {len(self.get('snapshots', []))} snapshots, "
                f"{self.get('files', {}).get('data_files')} data files)")


Source = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]], Any]


def load(
    table: str,
    source: Source,
    *,
    mode: str = "append",
    key: Union[str, Sequence[str], None] = None,
    strategy: str = "upsert",
    merge_mode: str = "copy-on-write",
    hard_delete_column: Optional[str] = None,
    dedup_sort: Optional[str] = None,
    on_duplicate_keys: str = "last",
    replace_partitions: bool = False,
    partition_by: Optional[str] = None,
    schema_evolution: str = "add-columns",
    load_id: Optional[str] = None,
    catalog: Union[None, str, Mapping[str, Any]] = None,
    warehouse: Union[str, os.PathLike[str], None] = None,
    memory_limit: Union[int, str, None] = None,
    target_file_size: Union[int, str, None] = None,
    progress: Optional[Callable[[Dict[str, Union[int, str]]], None]] = None,
    location: Optional[str] = None,
    table_properties: Optional[Mapping[str, str]] = None,
    format: Optional[str] = None,
    schema: Any = None,
    infer_rows: int = 10_000,
    csv: Optional[Mapping[str, Any]] = None,
    delete_keys: Optional[Source] = None,
    only_keys: Optional[Source] = None,
) -> LoadSummary:
    """Load `source` into `table` (``namespace.table``; a missing table and namespace are
    created from the source's schema) as exactly one snapshot, or nothing.

    source: a path, directory or glob, a list of them, or any object with
        ``__arrow_c_stream__`` (pyarrow Table / RecordBatchReader, polars DataFrame, DuckDB
        relation, ...). Streams are read batch by batch, never collected; the GIL is released
        while floe works. Files are Parquet, JSON lines (.jsonl/.ndjson/.json), CSV (.csv/.tsv)
        or Arrow IPC (.arrow/.feather/.ipc), by name or `format`; gzip/zstd text is recognised
        by its bytes.
    mode: "append", "replace" (the whole table, or with replace_partitions=True only the
        partitions the load has) or "merge" (by `key`; strategy "upsert", "insert-only" or
        "delete-insert"; merge_mode "copy-on-write" or "merge-on-read"; hard_delete_column
        marks rows to delete; dedup_sort="col[:asc|desc]" or on_duplicate_keys="error"
        decide between duplicate keys, by default the last one wins).
    partition_by: the partition spec of a table the load creates, e.g. "day(ts), bucket(16, id)".
    schema_evolution: "add-columns" (new columns, safe widening) or "strict".
    load_id: idempotency key; a rerun with the same id is a no-op (default: a fresh UUID).
    catalog: None (pyiceberg's configuration, else the embedded SQLite catalog), a catalog
        name, or a dict of pyiceberg-style properties (type, uri, warehouse, s3.*, ...).
    warehouse: directory of the embedded catalog (default ./warehouse).
    memory_limit: bytes the merge's sorts may use before spilling (default 256MiB; a quarter
        each: the load's keys and rows, the table's keys, the deletes, the partition clustering
        of rewritten rows).
    target_file_size: data file size, bytes or e.g. "512MiB" (default: the table's property).
    progress: called about every 0.1 s with counters (input_rows, input_bytes,
        input_bytes_total, input_files, files_written) and the stage: "stage" (e.g. "reading
        input", "matching keys against the table", "committing"), "stage_done" and
        "stage_total" (files, 0 when the stage counts none or its total is unknown); an
        exception it raises cancels the load.
    location: where a table the load creates lives (default: the catalog's choice).
    table_properties: properties of a table the load creates (ignored for existing tables).
    format: "parquet", "jsonl", "csv" or "ipc" (default: from the file names).
    schema: the schema of JSON lines or CSV files: a pyarrow Schema, or an Iceberg schema as a
        dict or JSON string. Default: inferred from the first `infer_rows` records of each file
        (into an existing table, the columns it has are parsed as its types).
    csv: the CSV dialect, keys optional: delimiter (default "," or tab for .tsv), header
        (True), quote ('"'), escape (None), nulls (values read as null; default: empty fields).
    delete_keys: with mode "merge", keys whose table rows are deleted before the load merges,
        in the same snapshot: paths or an ``__arrow_c_stream__`` object holding only the key
        columns. No row is written for them; `source` may then be empty (e.g. an empty
        pyarrow Table of the table's columns).
    only_keys: with mode "merge", the only keys the load's rows may have (paths or a stream of
        the key columns): rows with other keys are left out, as if `source` had not held them.

    Raises a subclass of FloeError; Ctrl-C cancels the load (its files are deleted) and raises
    KeyboardInterrupt.
    """
    text = _floe.load(
        table,
        source,
        mode=mode,
        key=key,
        strategy=strategy,
        merge_mode=merge_mode,
        hard_delete_column=hard_delete_column,
        dedup_sort=dedup_sort,
        on_duplicate_keys=on_duplicate_keys,
        replace_partitions=replace_partitions,
        partition_by=partition_by,
        schema_evolution=schema_evolution,
        load_id=load_id,
        catalog=catalog,
        warehouse=None if warehouse is None else str(warehouse),
        memory_limit=memory_limit,
        target_file_size=target_file_size,
        progress=progress,
        location=location,
        table_properties=None if table_properties is None else {str(k): str(v) for k, v in table_properties.items()},
        format=format,
        schema=schema,
        infer_rows=infer_rows,
        csv=None if csv is None else dict(csv),
        delete_keys=delete_keys,
        only_keys=only_keys,
    )
    return LoadSummary(json.loads(text))


def match_rows(
    table: str,
    source: Source,
    *,
    key: Union[str, Sequence[str]],
    output: Union[str, "os.PathLike[str]"],
    columns: Optional[Sequence[str]] = None,
    format: Optional[str] = None,
    memory_limit: Union[int, str, None] = None,
    catalog: Union[None, str, Mapping[str, Any]] = None,
    warehouse: Union[str, os.PathLike[str], None] = None,
) -> MatchSummary:
    """Write the live rows of `table` whose `key` appears in `source` to `output`, a local
    Parquet file (replaced; empty when nothing matches), keeping `columns` (default: the key
    columns). Reads only; commits nothing.

    source: as for `load`; only its key columns are read (others are ignored).
    format: of path sources, as for `load` (default: from the file names).
    key: the key columns, as for a merge (top-level, not floating point).
    memory_limit: bytes the sorts may use before spilling (default 256MiB); memory does not
        grow with the table or the source.

    The matching is a merge's first half: the source's keys sorted, the table's files pruned by
    key bounds and their keys compared, then each matched file read once. Raises
    NoSuchTableError for a missing table. The rows go to a file beside `output`, renamed to
    it when complete: a failed or interrupted match (Ctrl-C raises KeyboardInterrupt once it
    has stopped) leaves `output` as it was.
    """
    text = _floe.match_rows(
        table,
        source,
        key=key,
        output=str(output),
        columns=None if columns is None else list(columns),
        format=format,
        memory_limit=memory_limit,
        catalog=catalog,
        warehouse=None if warehouse is None else str(warehouse),
    )
    return MatchSummary(json.loads(text))


def register_table(
    table: str,
    metadata_location: str,
    *,
    catalog: Union[None, str, Mapping[str, Any]] = None,
    warehouse: Union[str, os.PathLike[str], None] = None,
) -> str:
    """Register the table whose current metadata file is `metadata_location` (a table written
    elsewhere, or by a catalog that forgot it) under the name `table`, as pyiceberg's
    `Catalog.register_table` does; the namespace is created if missing. Returns the metadata
    location the catalog now holds. Raises CatalogRefusedError if `table` already exists.
    """
    text = _floe.register_table(
        table,
        str(metadata_location),
        catalog=catalog,
        warehouse=None if warehouse is None else str(warehouse),
    )
    return str(json.loads(text)["metadata_location"])


def expire(
    table: str,
    *,
    older_than: str = "5d",
    retain_last: int = 1,
    dry_run: bool = False,
    catalog: Union[None, str, Mapping[str, Any]] = None,
    warehouse: Union[str, os.PathLike[str], None] = None,
) -> ExpireSummary:
    """Remove `table`'s snapshots older than `older_than` in one metadata commit, then delete the
    files only they reached (manifest lists, manifests, data and delete files).

    older_than: a duration before now ("5d", "12h", "30m", "90s", "2w") or a timestamp
        ("2026-12-01T00:00:00Z", "2026-12-01"). A branch's own max-snapshot-age-ms wins.
    retain_last: every branch keeps at least its last N snapshots (a branch's own
        min-snapshots-to-keep wins); tagged snapshots are always kept, refs never removed.
    dry_run: report what would go and change nothing.

    Load ids recorded in expired snapshots are forgotten: rerunning such a load loads it again.
    Returns an ExpireSummary (the fields of `floe expire --json`). Refused (an
    UnsupportedTableError) for tables with gc.enabled=false.
    """
    text = _floe.expire(
        table,
        older_than=older_than,
        retain_last=retain_last,
        dry_run=dry_run,
        catalog=catalog,
        warehouse=None if warehouse is None else str(warehouse),
    )
    return ExpireSummary(json.loads(text))


def inspect(
    table: str,
    *,
    catalog: Union[None, str, Mapping[str, Any]] = None,
    warehouse: Union[str, os.PathLike[str], None] = None,
) -> InspectReport:
    """What `table` holds, as an InspectReport (the report of `floe inspect --json`, a dict
    whose keys are also attributes): schema, partition spec, properties, refs, every snapshot
    (id, time, operation, load id, summary), and the current snapshot's files in total and per
    partition (data and delete files, rows, bytes, small files below 75% of the target file
    size)."""
    text = _floe.inspect(
        table,
        catalog=catalog,
        warehouse=None if warehouse is None else str(warehouse),
    )
    return InspectReport(json.loads(text))


def compact(
    table: str,
    *,
    min_input_files: int = 5,
    where: Optional[str] = None,
    target_file_size: Union[int, str, None] = None,
    load_id: Optional[str] = None,
    catalog: Union[None, str, Mapping[str, Any]] = None,
    warehouse: Union[str, os.PathLike[str], None] = None,
) -> LoadSummary:
    """Rewrite each partition's small files (below 75% of the target file size; once a
    partition has `min_input_files` of them) and every file with deletes into target-size files,
    in one ``replace`` snapshot: the rows stay the same, deletes are applied on the way.

    where: only these partitions, e.g. "tenant=a, event_day=2026-12-01" (partition field names
        and values as floe.inspect shows them).

    A concurrent append survives; a concurrent delete, merge or rewrite makes the compaction fail
    with ConflictError and change nothing. Returns the LoadSummary (mode "compact"; files_removed
    and rows_removed count what was rewritten).
    """
    text = _floe.compact(
        table,
        min_input_files=min_input_files,
        only=where,
        target_file_size=target_file_size,
        load_id=load_id,
        catalog=catalog,
        warehouse=None if warehouse is None else str(warehouse),
    )
    return LoadSummary(json.loads(text))


def remove_orphans(
    table: str,
    *,
    older_than: str = "3d",
    dry_run: bool = False,
    catalog: Union[None, str, Mapping[str, Any]] = None,
    warehouse: Union[str, os.PathLike[str], None] = None,
) -> OrphanSummary:
    """Delete the files under `table`'s location that no metadata references and that were
    last modified before `older_than` (a duration such as "3d", or a timestamp): what crashed
    loads and killed maintenance runs leave behind. Newer files are never touched (a running
    load's files are unreferenced until it commits). Returns an OrphanSummary (the fields of
    `floe remove-orphans --json`); dry_run=True deletes nothing."""
    text = _floe.remove_orphans(
        table,
        older_than=older_than,
        dry_run=dry_run,
        catalog=catalog,
        warehouse=None if warehouse is None else str(warehouse),
    )
    return OrphanSummary(json.loads(text))
