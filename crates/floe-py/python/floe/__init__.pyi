"""Type stubs of the floe package."""

import os
from typing import Any, Callable, Dict, Literal, Mapping, Optional, Sequence, Union

from ._floe import (
    BadInputError as BadInputError,
    CancelledError as CancelledError,
    CatalogError as CatalogError,
    CatalogRefusedError as CatalogRefusedError,
    CommitStateUnknownError as CommitStateUnknownError,
    ConflictError as ConflictError,
    FloeError as FloeError,
    InvalidOptionError as InvalidOptionError,
    NoSuchTableError as NoSuchTableError,
    SchemaMismatchError as SchemaMismatchError,
    StagedFilesError as StagedFilesError,
    StorageError as StorageError,
    UnsupportedTableError as UnsupportedTableError,
)

class LoadSummary:
    table: str
    mode: str
    load_id: str
    snapshot_id: Optional[int]
    operation: Optional[str]
    rows_written: int
    rows_copied: int
    files_added: int
    files_removed: int
    rows_removed: int
    bytes_written: int
    input_files: int
    input_bytes: int
    duration_ms: int
    skipped: bool
    table_created: bool
    schema_changes: list[str]
    #: JSON lines / CSV loads whose schema was inferred: it, as an Iceberg schema dict.
    inferred_schema: Optional[Dict[str, Any]]
    schema_id: Optional[int]
    commit_attempts: int
    metadata_location: Optional[str]
    message: str
    rows_inserted: Optional[int]
    rows_updated: Optional[int]
    rows_deleted: Optional[int]
    files_rewritten: Optional[int]
    delete_files_added: Optional[int]
    spill_runs: Optional[int]
    def __init__(self, fields: Mapping[str, Any]) -> None: ...
    def to_dict(self) -> Dict[str, Any]: ...

def load(
    table: str,
    source: Union[str, os.PathLike[str], Sequence[Union[str, os.PathLike[str]]], Any],
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
    format: Optional[Literal["parquet", "jsonl", "csv", "ipc"]] = None,
    schema: Any = None,
    infer_rows: int = 10_000,
    csv: Optional[Mapping[str, Any]] = None,
    delete_keys: Union[str, os.PathLike[str], Sequence[Union[str, os.PathLike[str]]], Any, None] = None,
    only_keys: Union[str, os.PathLike[str], Sequence[Union[str, os.PathLike[str]]], Any, None] = None,
) -> LoadSummary: ...

class MatchSummary:
    keys: int
    rows: int
    files_scanned: int
    files_matched: int
    def __init__(self, fields: Mapping[str, Any]) -> None: ...
    def to_dict(self) -> Dict[str, Any]: ...

def match_rows(
    table: str,
    source: Union[str, os.PathLike[str], Sequence[Union[str, os.PathLike[str]]], Any],
    *,
    key: Union[str, Sequence[str]],
    output: Union[str, os.PathLike[str]],
    columns: Optional[Sequence[str]] = None,
    format: Optional[str] = None,
    memory_limit: Union[int, str, None] = None,
    catalog: Union[None, str, Mapping[str, Any]] = None,
    warehouse: Union[str, os.PathLike[str], None] = None,
) -> MatchSummary: ...

def register_table(
    table: str,
    metadata_location: str,
    *,
    catalog: Union[None, str, Mapping[str, Any]] = None,
    warehouse: Union[str, os.PathLike[str], None] = None,
) -> str: ...

class ExpireSummary:
    table: str
    dry_run: bool
    expired_snapshot_ids: list[int]
    snapshots_kept: int
    manifest_lists: int
    manifests: int
    data_files: int
    delete_files: int
    bytes: int
    files_deleted: int
    metadata_location: Optional[str]
    commit_attempts: int
    duration_ms: int
    message: str
    def __init__(self, fields: Mapping[str, Any]) -> None: ...
    def to_dict(self) -> Dict[str, Any]: ...

class OrphanSummary:
    table: str
    dry_run: bool
    older_than_ms: int
    files_listed: int
    recent_unreferenced: int
    orphans: int
    orphan_bytes: int
    files_deleted: int
    duration_ms: int
    message: str
    def __init__(self, fields: Mapping[str, Any]) -> None: ...
    def to_dict(self) -> Dict[str, Any]: ...

def expire(
    table: str,
    *,
    older_than: str = ...,
    retain_last: int = ...,
    dry_run: bool = ...,
    catalog: Union[None, str, Mapping[str, Any]] = ...,
    warehouse: Union[str, "os.PathLike[str]", None] = ...,
) -> ExpireSummary: ...
class InspectReport(Dict[str, Any]):
    """The report of `floe inspect --json`; its keys are also attributes."""

    table: str
    location: str
    format_version: int
    metadata_location: Optional[str]
    current_snapshot_id: Optional[int]
    #: Iceberg JSON of the current schema and default partition spec.
    schema: Dict[str, Any]
    partition_spec: Dict[str, Any]
    properties: Dict[str, str]
    #: name, kind ("branch" / "tag"), snapshot_id.
    refs: list[Dict[str, Any]]
    #: snapshot_id, parent_id, timestamp_ms, time, operation, load_id, schema_id, in_main, summary.
    snapshots: list[Dict[str, Any]]
    history: list[Dict[str, Any]]
    #: data_files, data_rows, data_bytes, small_data_files, position_delete_files,
    #: equality_delete_files, delete_rows, delete_bytes.
    files: Dict[str, int]
    target_file_size: int
    #: spec_id, partition, files (the counts above).
    partitions: list[Dict[str, Any]]
    def to_dict(self) -> Dict[str, Any]: ...

def inspect(
    table: str,
    *,
    catalog: Union[None, str, Mapping[str, Any]] = ...,
    warehouse: Union[str, "os.PathLike[str]", None] = ...,
) -> InspectReport: ...
def compact(
    table: str,
    *,
    min_input_files: int = ...,
    where: Optional[str] = ...,
    target_file_size: Union[int, str, None] = ...,
    load_id: Optional[str] = ...,
    catalog: Union[None, str, Mapping[str, Any]] = ...,
    warehouse: Union[str, "os.PathLike[str]", None] = ...,
) -> LoadSummary: ...
def remove_orphans(
    table: str,
    *,
    older_than: str = ...,
    dry_run: bool = ...,
    catalog: Union[None, str, Mapping[str, Any]] = ...,
    warehouse: Union[str, "os.PathLike[str]", None] = ...,
) -> OrphanSummary: ...
