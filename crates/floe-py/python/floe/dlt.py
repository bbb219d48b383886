"""floe as dlt's Iceberg destination: dlt's `filesystem` destination with every Iceberg table
written by floe, exactly one snapshot per table per load package.

    import dlt, floe.dlt
    pipeline = dlt.pipeline("shop", destination=floe.dlt.filesystem(bucket_url="/data/lake"),
                            dataset_name="shop")
    pipeline.run(orders(), write_disposition="merge", primary_key="order_id")

or by reference, ``destination="floe.dlt.filesystem"``. It is a drop-in for dlt's
``filesystem`` destination: it reads the same configuration (``[destination.filesystem]``
bucket_url and credentials, ``[iceberg_catalog]``, ``iceberg_table_properties``,
``.pyiceberg.yaml`` / ``PYICEBERG_CATALOG__*``), keeps dlt's own bookkeeping (state,
``_dlt_loads``, schema versions) as the filesystem destination writes it, and makes Iceberg the
default table format (``table_format="native"`` on a resource opts out). Only the table write
changes: where dlt's job reads a package into memory and upserts in 1,000-row batches
(one snapshot each), floe streams the package's Parquet files into one snapshot.

What each table gets, from dlt's hints:

- ``append`` / ``replace``: floe's append / replace.
- ``merge``, strategy ``upsert`` (dlt's default here) or ``insert-only``: keyed by the primary
  key (nested tables: by ``_dlt_id``, as dlt's Iceberg job does); ``hard_delete`` and
  ``dedup_sort`` columns as dlt documents them. ``delete-insert`` (which dlt's own Iceberg job
  refuses): rows whose ``merge_key`` (else primary key) appears in the load are replaced by the
  load's rows, deduplicated by the primary key when there is one.
- partitioning: ``partition`` columns (identity) and ``iceberg_adapter`` partition hints with
  every transform and the field names dlt would give; table properties from config and adapter.
- load id ``dlt:<load id>:<table>``: a package retried after floe committed but before dlt
  recorded it adds nothing.
- location of a new table: chosen by a REST catalog; ``<bucket_url>/<dataset>/<table>`` with a
  SQLite catalog or dlt's in-memory one.

What floe refuses (a terminal job error, before anything is written): ``delete-insert`` on a
table with nested tables, ``delete-insert`` with a merge key other than the primary key, more
than one ``hard_delete`` column, and catalogs other than SQLite ``sql`` and ``rest``.
"""

from __future__ import annotations

import contextlib
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Sequence, Type

try:
    from dlt.common import logger
    from dlt.common.destination.exceptions import (
        DestinationTerminalException,
        DestinationTransientException,
    )
    from dlt.common.destination.utils import resolve_merge_strategy
    from dlt.common.schema.utils import (
        get_columns_names_with_prop,
        get_first_column_name_with_prop,
        get_nested_tables,
        is_nested_table,
    )
    from dlt.destinations.impl.filesystem import factory as _fs_factory
    from dlt.destinations.impl.filesystem.filesystem import (
        FilesystemClient,
        ReferenceFollowupJob,
        TableFormatLoadFilesystemJob,
    )
except ImportError as e:  # pragma: no cover - exercised only without dlt
    raise ImportError("floe.dlt needs dlt: pip install 'dlt[parquet]'") from e

import floe

__all__ = ["filesystem", "iceberg", "FloeIcebergLoadJob", "load_plan"]

_MERGE_STRATEGIES = ["upsert", "insert-only", "delete-insert"]


class UnsupportedByFloe(DestinationTerminalException):
    """A table asks for something floe's destination does not do (yet); nothing was written."""


def load_plan(table: Dict[str, Any], tables: Dict[str, Any], strategy: Optional[str]) -> Dict[str, Any]:
    """The `floe.load` arguments for a prepared dlt table: mode, key, strategy, hard deletes,
    dedup, partitioning. Raises UnsupportedByFloe for what floe cannot do."""
    name = table["name"]
    disposition = table.get("write_disposition", "append")
    plan: Dict[str, Any] = {"mode": "replace" if disposition == "replace" else "append"}
    partition_by = _partition_by(table)
    if partition_by:
        plan["partition_by"] = partition_by
    if disposition != "merge":
        return plan
    nested = is_nested_table(table)
    primary = get_columns_names_with_prop(table, "primary_key")
    merge_key = get_columns_names_with_prop(table, "merge_key")
    hard = get_columns_names_with_prop(table, "hard_delete")
    if len(hard) > 1:
        raise UnsupportedByFloe(f"table {name}: more than one hard_delete column ({', '.join(hard)})")
    plan.update(mode="merge", strategy=strategy or "upsert")
    if hard:
        plan["hard_delete_column"] = hard[0]
    dedup = [(c, table["columns"][c].get("dedup_sort")) for c in get_columns_names_with_prop(table, "dedup_sort")]
    if len(dedup) > 1:
        raise UnsupportedByFloe(f"table {name}: more than one dedup_sort column")
    if dedup:
        column, order = dedup[0]
        plan["dedup_sort"] = f"{column}:{'asc' if order == 'asc' else 'desc'}"
    if plan["strategy"] == "delete-insert":
        _delete_insert(plan, table, tables, primary, merge_key)
    elif nested:
        plan["key"] = [get_first_column_name_with_prop(table, "unique")]
    elif primary:
        plan["key"] = primary
    else:
        raise UnsupportedByFloe(f"table {name}: merge strategy {plan['strategy']} needs a primary_key")
    return plan


def _delete_insert(plan: Dict[str, Any], table: Dict[str, Any], tables: Dict[str, Any],
                   primary: List[str], merge_key: List[str]) -> None:
    name = table["name"]
    if is_nested_table(table) or len(get_nested_tables(tables, name)) > 1:
        raise UnsupportedByFloe(
            f"table {name}: delete-insert with nested tables needs a join across tables that floe "
            "does not do yet; use the upsert strategy (nested rows are matched by _dlt_id)"
        )
    if merge_key and primary and sorted(merge_key) != sorted(primary):
        raise UnsupportedByFloe(
            f"table {name}: delete-insert with a merge_key ({', '.join(merge_key)}) other than the "
            f"primary key ({', '.join(primary)}) is not supported by floe yet"
        )
    if primary:
        # Delete every row with a key the load has, insert one row per key: floe's upsert.
        plan.update(strategy="upsert", key=primary)
    elif merge_key:
        plan["key"] = merge_key
        plan.pop("dedup_sort", None)
    else:
        raise UnsupportedByFloe(f"table {name}: delete-insert needs a merge_key or a primary_key")


def _partition_by(table: Dict[str, Any]) -> Optional[str]:
    """dlt's partition columns (identity) and iceberg_adapter hints as a floe spec, with the
    field names dlt's own job (pyiceberg) would give."""
    from dlt.destinations.impl.filesystem.iceberg_adapter import (
        create_identity_specs,
        parse_partition_hints,
    )

    specs = create_identity_specs(get_columns_names_with_prop(table, "partition")) + parse_partition_hints(table)
    if not specs:
        return None
    # Imports pyiceberg (a quarter second): only for partitioned tables.
    from dlt.destinations.impl.filesystem.iceberg_partition_spec import _default_field_name

    terms = []
    for spec in specs:
        column = _quote(spec.source_column)
        if spec.transform in ("bucket", "truncate"):
            term = f"{spec.transform}({spec.param_value}, {column})"
        else:
            term = f"{spec.transform}({column})"
        terms.append(f"{term} as {_default_field_name(spec)}")
    return ", ".join(terms)


def _quote(column: str) -> str:
    if any(c in column for c in ",()[] "):
        raise UnsupportedByFloe(f"partition column {column!r}: floe's partition specs cannot name it")
    return column


def _catalog_kind(catalog: Any) -> str:
    from pyiceberg.catalog.rest import RestCatalog
    from pyiceberg.catalog.sql import SqlCatalog

    if isinstance(catalog, RestCatalog):
        return "rest"
    if isinstance(catalog, SqlCatalog):
        uri = str(catalog.properties.get("uri", ""))
        if uri.startswith("sqlite:"):
            return "sql"
    raise UnsupportedByFloe(
        f"iceberg catalog {catalog.name!r} ({type(catalog).__name__} {catalog.properties.get('uri', '')}): "
        "floe writes through REST catalogs and SQLite sql catalogs"
    )


class FloeIcebergLoadJob(TableFormatLoadFilesystemJob):
    """Writes one table's Parquet files of one load package with floe, as one snapshot."""

    def run(self) -> None:
        client: FloeFilesystemClient = self._job_client  # type: ignore[assignment]
        name = self.load_table_name
        strategy = resolve_merge_strategy(client.schema.tables, self._load_table, client.capabilities)
        plan = load_plan(self._load_table, client.schema.tables, strategy)
        location = client.get_open_table_location("iceberg", name)
        config_properties = client.config.iceberg_table_properties or {}
        from dlt.destinations.impl.filesystem.iceberg_adapter import TABLE_PROPERTIES_HINT

        properties = {**config_properties, **(self._load_table.get(TABLE_PROPERTIES_HINT) or {})}
        ident = f"{client.dataset_name}.{name}"
        load_id = f"dlt:{self._load_id}:{name}"
        logger.info(f"floe: loading {len(self.file_paths)} file(s) into {ident} ({plan})")
        with client.floe_catalog(name, location) as catalog:
            # A REST catalog places new tables itself (many accept no other location); SQL
            # catalogs get dlt's location, <bucket_url>/<dataset>/<table>.
            new_table_location = None if catalog["type"] == "rest" else location
            try:
                summary = floe.load(
                    ident,
                    list(self.file_paths),
                    catalog=catalog,
                    location=new_table_location,
                    table_properties={str(k): str(v) for k, v in properties.items()},
                    load_id=load_id,
                    **plan,
                )
            except (
                floe.InvalidOptionError,
                floe.BadInputError,
                floe.SchemaMismatchError,
                floe.CatalogRefusedError,
                floe.UnsupportedTableError,
                floe.CancelledError,
            ) as e:
                raise DestinationTerminalException(f"floe: {e}") from e
            except floe.FloeError as e:
                # Conflicts, unknown commit outcomes, storage and catalog trouble: dlt retries
                # the job, and the load id makes a retry of a landed commit a no-op.
                raise DestinationTransientException(f"floe: {e}") from e
        self.floe_summary = summary
        logger.info(f"floe: {summary.message}")


class FloeFilesystemClient(FilesystemClient):
    """dlt's filesystem client with floe writing the Iceberg tables."""

    def get_reference_followup_job_class(self, table: Any) -> Optional[Type[ReferenceFollowupJob]]:
        if table.get("table_format") == "iceberg":
            return FloeIcebergLoadJob
        return super().get_reference_followup_job_class(table)

    def verify_schema_table_format(self, load_tables: Sequence[Any]) -> List[Exception]:
        errors = super().verify_schema_table_format(load_tables)
        for table in load_tables:
            if table.get("table_format") != "iceberg":
                continue
            strategy = resolve_merge_strategy(self.schema.tables, table, self.capabilities)
            try:
                load_plan(table, self.schema.tables, strategy)
            except UnsupportedByFloe as e:
                errors.append(e)
        return errors

    @contextlib.contextmanager
    def floe_catalog(self, table_name: str, location: str) -> Iterator[Dict[str, str]]:
        """The catalog properties for floe: those of the catalog dlt resolved, or for dlt's
        ephemeral in-memory catalog a temporary SQLite one with the table registered from its
        newest metadata file (as dlt does)."""
        from dlt.common.libs.pyiceberg import is_ephemeral_catalog

        catalog = self.get_open_table_catalog("iceberg")
        props = {str(k): str(v) for k, v in catalog.properties.items() if v is not None}
        if not is_ephemeral_catalog(catalog):
            props.update(type=_catalog_kind(catalog), name=catalog.name)
            props.setdefault("warehouse", location)
            yield props
            return
        with tempfile.TemporaryDirectory(prefix="floe-dlt-") as tmp:
            uri = f"sqlite:///{tmp}/catalog.db"
            self._register(catalog.name, uri, props, table_name, location)
            yield {**props, "type": "sql", "uri": uri, "name": catalog.name, "warehouse": location}

    def _register(self, name: str, uri: str, props: Dict[str, str], table_name: str, location: str) -> None:
        from dlt.common.libs.pyiceberg import get_last_metadata_file
        from dlt.common.destination.exceptions import DestinationUndefinedEntity
        from pyiceberg.catalog.sql import SqlCatalog

        try:
            metadata = get_last_metadata_file(f"{location.rstrip('/')}/metadata", self.fs_client, self.config)
        except DestinationUndefinedEntity:
            return
        registry = SqlCatalog(name, **{**props, "uri": uri})
        try:
            registry.create_namespace_if_not_exists(self.dataset_name)
            registry.register_table(f"{self.dataset_name}.{table_name}", metadata)
        finally:
            registry.engine.dispose()


def _capabilities(caps: Any) -> Any:
    caps.preferred_table_format = "iceberg"
    caps.supported_merge_strategies = list(dict.fromkeys(list(caps.supported_merge_strategies) + _MERGE_STRATEGIES))
    selector = caps.merge_strategies_selector

    def select(supported: Sequence[str], /, *, table_schema: Any) -> Sequence[str]:
        if table_schema.get("table_format") == "iceberg":
            return list(_MERGE_STRATEGIES)
        return selector(supported, table_schema=table_schema) if selector else supported

    caps.merge_strategies_selector = select
    return caps


class filesystem(_fs_factory.filesystem):  # noqa: N801 - dlt names destinations in lower case
    """dlt's filesystem destination with Iceberg tables (the default table format here) written
    by floe. Same arguments and configuration as ``dlt.destinations.filesystem``."""

    @property
    def client_class(self) -> Type[FilesystemClient]:
        if self.is_hf:
            raise UnsupportedByFloe("floe.dlt does not write to the hf:// protocol")
        return FloeFilesystemClient

    def _raw_capabilities(self) -> Any:
        return _capabilities(super()._raw_capabilities())


#: The same destination under the name of the table format it writes.
iceberg = filesystem
