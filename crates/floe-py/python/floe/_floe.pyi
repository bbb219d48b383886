"""Type stubs of floe's native core (see floe.load for the documented entry point)."""

from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

def load(
    table: str,
    source: Any,
    *,
    mode: str = ...,
    key: Union[str, Sequence[str], None] = ...,
    strategy: str = ...,
    merge_mode: str = ...,
    hard_delete_column: Optional[str] = ...,
    dedup_sort: Optional[str] = ...,
    on_duplicate_keys: str = ...,
    replace_partitions: bool = ...,
    partition_by: Optional[str] = ...,
    schema_evolution: str = ...,
    load_id: Optional[str] = ...,
    catalog: Union[None, str, Mapping[str, Any]] = ...,
    warehouse: Optional[str] = ...,
    memory_limit: Union[int, str, None] = ...,
    target_file_size: Union[int, str, None] = ...,
    progress: Optional[Callable[[Dict[str, Union[int, str]]], None]] = ...,
    location: Optional[str] = ...,
    table_properties: Optional[Mapping[str, str]] = ...,
    format: Optional[str] = ...,
    schema: Any = ...,
    infer_rows: int = ...,
    csv: Optional[Mapping[str, Any]] = ...,
    delete_keys: Any = ...,
    only_keys: Any = ...,
) -> str: ...

def expire(
    table: str,
    *,
    older_than: str = ...,
    retain_last: int = ...,
    dry_run: bool = ...,
    catalog: Union[None, str, Mapping[str, Any]] = ...,
    warehouse: Optional[str] = ...,
) -> str: ...
def compact(
    table: str,
    *,
    min_input_files: int = ...,
    only: Optional[str] = ...,
    target_file_size: Union[int, str, None] = ...,
    load_id: Optional[str] = ...,
    catalog: Union[None, str, Mapping[str, Any]] = ...,
    warehouse: Optional[str] = ...,
) -> str: ...
def remove_orphans(
    table: str,
    *,
    older_than: str = ...,
    dry_run: bool = ...,
    catalog: Union[None, str, Mapping[str, Any]] = ...,
    warehouse: Optional[str] = ...,
) -> str: ...
def inspect(
    table: str,
    *,
    catalog: Union[None, str, Mapping[str, Any]] = ...,
    warehouse: Optional[str] = ...,
) -> str: ...

def match_rows(
    table: str,
    source: Any,
    *,
    key: Union[str, Sequence[str]],
    output: str,
    columns: Optional[Sequence[str]] = ...,
    format: Optional[str] = ...,
    memory_limit: Union[int, str, None] = ...,
    catalog: Union[None, str, Mapping[str, Any]] = ...,
    warehouse: Optional[str] = ...,
) -> str: ...

def register_table(
    table: str,
    metadata_location: str,
    *,
    catalog: Union[None, str, Mapping[str, Any]] = ...,
    warehouse: Optional[str] = ...,
) -> str: ...

def plan_load(
    table: str,
    schema: Any,
    *,
    mode: str = ...,
    replace_partitions: bool = ...,
    partition_by: Optional[str] = ...,
    schema_evolution: str = ...,
    load_id: Optional[str] = ...,
    catalog: Union[None, str, Mapping[str, Any]] = ...,
    warehouse: Optional[str] = ...,
    location: Optional[str] = ...,
    table_properties: Optional[Mapping[str, str]] = ...,
) -> Tuple[Optional[str], Optional[str]]: ...
def write_staged(
    plan: str,
    blocks: Iterable[Any],
    *,
    name: str = ...,
    target_file_size: Union[int, str, None] = ...,
    record: Optional[Callable[[str], None]] = ...,
) -> str: ...
def commit_staged(
    plan: str,
    staged: Sequence[str],
    *,
    catalog: Union[None, str, Mapping[str, Any]] = ...,
    warehouse: Optional[str] = ...,
) -> str: ...
def discard_staged(plan: str, paths: Sequence[str]) -> int: ...

class FloeError(Exception): ...
class InvalidOptionError(FloeError): ...
class BadInputError(FloeError): ...
class SchemaMismatchError(FloeError): ...
class CatalogError(FloeError): ...
class CatalogRefusedError(CatalogError): ...
class ConflictError(FloeError): ...
class CommitStateUnknownError(FloeError): ...
class CancelledError(FloeError): ...
class StagedFilesError(FloeError): ...
class StorageError(FloeError): ...
class NoSuchTableError(FloeError): ...
class UnsupportedTableError(FloeError): ...
