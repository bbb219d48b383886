"""Type stubs of floe's native core (see floe.load for the documented entry point)."""

from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

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
    progress: Optional[Callable[[Dict[str, int]], None]] = ...,
    location: Optional[str] = ...,
    table_properties: Optional[Mapping[str, str]] = ...,
    format: Optional[str] = ...,
    schema: Any = ...,
    infer_rows: int = ...,
    csv: Optional[Mapping[str, Any]] = ...,
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

class FloeError(Exception): ...
class InvalidOptionError(FloeError): ...
class BadInputError(FloeError): ...
class SchemaMismatchError(FloeError): ...
class CatalogError(FloeError): ...
class CatalogRefusedError(CatalogError): ...
class ConflictError(FloeError): ...
class CommitStateUnknownError(FloeError): ...
class CancelledError(FloeError): ...
class StorageError(FloeError): ...
class NoSuchTableError(FloeError): ...
class UnsupportedTableError(FloeError): ...
