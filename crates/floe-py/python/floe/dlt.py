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
  refuses), as dlt's SQL destinations do it: rows with the primary key or the merge key of a
  load row go, then the load's rows go in, deduplicated by the primary key when there is one
  (none flagged deleted); without keys it appends (the rows not flagged deleted). Rows matched
  only by a different merge key are found first (``floe.match_rows``) and deleted by their
  primary key in the same snapshot (``delete_keys``). A root table with nested tables is written by one job for the whole
  chain: the ids of the root rows the keys replace, and of the package's root rows the merge
  keeps, are found first; each nested table then loses the replaced rows' nested rows (by
  ``_dlt_root_id``) and gains the package's nested rows of kept root rows (``only_keys``); the
  root commits last, so a retried job finds the same rows.
- partitioning: ``partition`` columns (identity) and ``iceberg_adapter`` partition hints with
  every transform and the field names dlt would give; table properties from config and adapter.
- load id ``dlt:<load id>:<table>``: a package retried after floe committed but before dlt
  recorded it adds nothing.
- location of a new table: chosen by a REST catalog; ``<bucket_url>/<dataset>/<table>`` with a
  SQLite catalog or dlt's in-memory one.

What floe refuses (a terminal job error, before anything is written): a ``hard_delete`` column
on a ``delete-insert`` table with neither keys nor a row key, more than one ``hard_delete`` or
``dedup_sort`` column, and catalogs other than SQLite ``sql`` and ``rest``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type

try:
    from dlt.common import logger
    from dlt.common.configuration import configspec
    from dlt.common.configuration.inject import with_config
    from dlt.common.configuration.specs import BaseConfiguration
    from dlt.common.configuration.specs.mixins import WithPyicebergConfig
    from dlt.common.destination.exceptions import (
        DestinationTerminalException,
        DestinationTransientException,
    )
    from dlt.common.destination.utils import resolve_merge_strategy
    from dlt.common.schema.utils import (
        get_columns_names_with_prop,
        get_first_column_name_with_prop,
        get_nested_tables,
        has_table_seen_data,
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
    """dlt's delete-insert: every row matching a load row by primary key or by merge key goes
    (with its nested rows), then the load's rows (one per primary key) go in."""
    name = table["name"]
    if is_nested_table(table):
        _nested_delete_insert(plan, table)
        return
    if primary:
        # Delete every row with a key the load has, insert one row per key: floe's upsert.
        # Rows matching only by a different merge key are found first and deleted by their
        # primary key, in the same snapshot.
        plan.update(strategy="upsert", key=primary)
        if merge_key and sorted(merge_key) != sorted(primary):
            plan["delete_matches"] = {"key": merge_key, "columns": primary}
    elif merge_key:
        plan["key"] = merge_key
        plan.pop("dedup_sort", None)
    elif "hard_delete_column" in plan:
        # Without keys dlt's delete-insert appends the rows not flagged deleted (and only their
        # nested rows). floe merges by the row key, which no table row shares: nothing is
        # deleted and the flagged rows stay out (the table's row keys are read to match them).
        row_key = get_first_column_name_with_prop(table, "row_key")
        if row_key is None:
            raise UnsupportedByFloe(
                f"table {name}: delete-insert with a hard_delete column needs a merge_key, a primary_key "
                "or a row key (_dlt_id)"
            )
        plan.update(strategy="upsert", key=[row_key])
        plan.pop("dedup_sort", None)
    else:
        # Without keys dlt's delete-insert appends.
        plan.pop("strategy", None)
        plan.pop("dedup_sort", None)
        plan["mode"] = "append"
    nested = [t["name"] for t in get_nested_tables(tables, name)[1:]]
    if nested:
        # The nested tables are written by this table's job, before it (FloeIcebergLoadJob):
        # rows of the root rows replaced by any key go, rows of the root rows the load keeps
        # (one per primary key, none flagged deleted) come in.
        plan["nested_tables"] = nested
        plan["row_key"] = get_first_column_name_with_prop(table, "row_key") or "_dlt_id"
        other_merge_key = bool(merge_key) and sorted(merge_key) != sorted(primary)
        plan["replaced_by"] = [primary] * bool(primary) + [merge_key] * other_merge_key
        plan["filter_nested"] = bool(primary) or "hard_delete_column" in plan


def _nested_delete_insert(plan: Dict[str, Any], table: Dict[str, Any]) -> None:
    """A nested table of a delete-insert root: its root's job deletes the rows of the root rows
    it replaces (by the root key) and inserts the load's rows."""
    root_key = get_first_column_name_with_prop(table, "root_key")
    if root_key is None:
        raise UnsupportedByFloe(f"table {table['name']}: a nested table of a delete-insert merge needs a root key")
    plan.update(strategy="delete-insert", key=[root_key])
    plan.pop("dedup_sort", None)
    plan.pop("hard_delete_column", None)


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


@configspec
class _IcebergCatalogConfig(BaseConfiguration):
    """dlt's ``[iceberg_catalog]`` settings, the fields of dlt's own ``IcebergConfig`` (whose
    module imports pyiceberg, which floe's destination never needs)."""

    iceberg_catalog_name: str = "default"
    iceberg_catalog_type: Optional[str] = "sql"
    iceberg_catalog_config: Optional[Dict[str, Any]] = None


@with_config(spec=_IcebergCatalogConfig, sections="iceberg_catalog")
def _catalog_settings(
    iceberg_catalog_name: str = "default",
    iceberg_catalog_type: Optional[str] = None,
    iceberg_catalog_config: Optional[Dict[str, Any]] = None,
) -> Tuple[str, Optional[str], Optional[Dict[str, Any]]]:
    return iceberg_catalog_name, iceberg_catalog_type, iceberg_catalog_config


def dlt_catalog() -> Tuple[str, Optional[Dict[str, str]]]:
    """The name and pyiceberg-style properties of the catalog dlt's ``get_catalog`` would
    open, found as it finds them: ``[iceberg_catalog.iceberg_catalog_config]`` (over the
    same catalog's ``.pyiceberg.yaml`` / ``PYICEBERG_CATALOG__*`` settings, as pyiceberg's
    ``load_catalog`` merges them), else ``.pyiceberg.yaml`` / ``PYICEBERG_CATALOG__*``;
    properties None when dlt would fall back to its in-memory SQLite catalog. Opens nothing
    and imports no pyiceberg catalog (only its small config reader)."""
    name, kind, config = _catalog_settings()
    if kind not in ("sql", "rest"):
        raise UnsupportedByFloe(f"iceberg_catalog_type {kind!r}: dlt takes 'sql' or 'rest'")
    if config:
        missing = [k for k in ("type", "uri", "warehouse") if not config.get(k)]
        if missing:
            raise UnsupportedByFloe(f"iceberg_catalog_config of catalog {name!r} lacks {', '.join(missing)}")
        return name, _strings({**_pyiceberg_settings(name), **config})
    if _pyiceberg_configured():
        props = _pyiceberg_settings(name)
        if not props:
            raise UnsupportedByFloe(f"iceberg catalog {name!r} is not in .pyiceberg.yaml or PYICEBERG_CATALOG__*")
        return name, _strings(props)
    return name, None


def _pyiceberg_settings(name: str) -> Dict[str, Any]:
    """Catalog `name`'s settings in ``.pyiceberg.yaml`` and ``PYICEBERG_CATALOG__*``."""
    from pyiceberg.utils.config import Config

    return dict(Config().get_catalog_config(name) or {})


def _pyiceberg_configured() -> bool:
    """dlt's test for a pyiceberg configuration: a ``.pyiceberg.yaml`` with catalogs in
    PYICEBERG_HOME, the run directory or dlt's settings, or a PYICEBERG_CATALOG_* variable."""
    import dlt

    context = dlt.current.run_context()
    paths = [Path(context.run_dir) / ".pyiceberg.yaml", Path(context.get_setting(".pyiceberg.yaml"))]
    if os.environ.get("PYICEBERG_HOME"):
        paths.insert(0, Path(os.environ["PYICEBERG_HOME"]) / ".pyiceberg.yaml")
    if any(p.exists() and "catalog:" in p.read_text(encoding="utf-8") for p in paths):
        return True
    return any(key.startswith("PYICEBERG_CATALOG_") for key in os.environ)


def _strings(props: Dict[str, Any]) -> Dict[str, str]:
    return {str(k): str(v) for k, v in props.items() if v is not None}


def _catalog_kind(name: str, props: Dict[str, str]) -> str:
    """'rest' or 'sql' (SQLite), as pyiceberg infers a missing type from the uri."""
    uri = props.get("uri", "")
    kind = props.get("type", "").lower()
    if not kind:
        kind = "rest" if uri.startswith(("http://", "https://")) else "sql" if uri.startswith("sqlite") else ""
    if kind == "rest" or (kind == "sql" and uri.startswith("sqlite:")):
        return kind
    raise UnsupportedByFloe(
        f"iceberg catalog {name!r} ({kind or 'unknown type'} {uri}): "
        "floe writes through REST catalogs and SQLite sql catalogs"
    )


class FloeIcebergLoadJob(TableFormatLoadFilesystemJob):
    """Writes one table's Parquet files of one load package with floe, as one snapshot. For a
    delete-insert root with nested tables it gets the whole table chain's files and writes
    the nested tables first (one snapshot each), then the root."""

    def run(self) -> None:
        client: FloeFilesystemClient = self._job_client  # type: ignore[assignment]
        name = self.load_table_name
        strategy = resolve_merge_strategy(client.schema.tables, self._load_table, client.capabilities)
        plan = load_plan(self._load_table, client.schema.tables, strategy)
        nested = plan.pop("nested_tables", None)
        row_key = plan.pop("row_key", None)
        replaced_by = plan.pop("replaced_by", [])
        filter_nested = plan.pop("filter_nested", False)
        delete_matches = plan.pop("delete_matches", None)
        files = _files_by_table(self.file_paths)
        with tempfile.TemporaryDirectory(prefix="floe-dlt-") as tmp:
            if nested is not None:
                # Rows whose root row this load replaces go with it: the root rows' ids are
                # found before the root's commit, so a retried job finds them again.
                root_files = files.get(name, [])
                replaced = [out for i, key in enumerate(replaced_by)
                            if (out := self._match(name, root_files, key, [row_key], f"{tmp}/replaced-{i}.parquet"))]
                kept = _kept_rows(root_files, plan, row_key, tmp) if filter_nested else None
                for child in nested:
                    self._load_nested(child, files.get(child, []), replaced, kept, row_key)
            if delete_matches is not None:
                matched = self._match(name, files.get(name, []), delete_matches["key"], delete_matches["columns"],
                                      f"{tmp}/matched.parquet")
                if matched is not None:
                    plan["delete_keys"] = matched
            self.floe_summary = self._load(name, self._load_table, files.get(name, []), plan)

    def _load_nested(self, name: str, files: List[str], replaced: List[str], kept: Optional[str],
                     row_key: str) -> None:
        client: FloeFilesystemClient = self._job_client  # type: ignore[assignment]
        table = client.prepare_load_table(name)
        plan = load_plan(table, client.schema.tables, "delete-insert")
        root_key = plan["key"][0]
        if replaced:
            plan["delete_keys"] = _renamed_column(replaced, row_key, root_key)
        if kept is not None:
            plan["only_keys"] = _renamed_column([kept], row_key, root_key)
        if not files:
            # Nothing to insert: only the rows of replaced root rows go, from a table that
            # exists (one that never saw data was never created).
            if not replaced or not has_table_seen_data(table):
                return
            files = _no_rows(root_key)
        self._load(name, table, files, plan)

    def _match(self, name: str, files: List[str], key: List[str], columns: List[str], output: str) -> Optional[str]:
        """Writes `columns` of the table's rows matching the package's files on `key` to
        `output`; None when the table does not exist yet."""
        client: FloeFilesystemClient = self._job_client  # type: ignore[assignment]
        ident = f"{client.dataset_name}.{name}"
        with client.floe_catalog(name, client.get_open_table_location("iceberg", name)) as catalog:
            try:
                found = floe.match_rows(ident, files, key=key, columns=columns, output=output, catalog=catalog)
            except floe.NoSuchTableError:
                return None
            except floe.FloeError as e:
                raise _job_error(e) from e
        logger.info(f"floe: {found.rows} row(s) of {ident} match the load on {', '.join(key)}")
        return output

    def _load(self, name: str, table: Dict[str, Any], source: Any, plan: Dict[str, Any]) -> Any:
        client: FloeFilesystemClient = self._job_client  # type: ignore[assignment]
        location = client.get_open_table_location("iceberg", name)
        config_properties = client.config.iceberg_table_properties or {}
        from dlt.destinations.impl.filesystem.iceberg_adapter import TABLE_PROPERTIES_HINT

        properties = {**config_properties, **(table.get(TABLE_PROPERTIES_HINT) or {})}
        ident = f"{client.dataset_name}.{name}"
        load_id = f"dlt:{self._load_id}:{name}"
        logger.info(f"floe: loading {ident} ({plan})")
        with client.floe_catalog(name, location) as catalog:
            # A REST catalog places new tables itself (many accept no other location); SQL
            # catalogs get dlt's location, <bucket_url>/<dataset>/<table>.
            new_table_location = None if catalog["type"] == "rest" else location
            try:
                summary = floe.load(
                    ident,
                    source,
                    catalog=catalog,
                    location=new_table_location,
                    table_properties={str(k): str(v) for k, v in properties.items()},
                    load_id=load_id,
                    **plan,
                )
            except floe.FloeError as e:
                raise _job_error(e) from e
        logger.info(f"floe: {summary.message}")
        return summary


def _job_error(e: Exception) -> Exception:
    """A terminal dlt error for what a retry cannot change; a transient one for conflicts,
    unknown commit outcomes, storage and catalog trouble (dlt retries the job, and the load id
    makes a retry of a landed commit a no-op)."""
    terminal = (
        floe.InvalidOptionError,
        floe.BadInputError,
        floe.SchemaMismatchError,
        floe.CatalogRefusedError,
        floe.UnsupportedTableError,
        floe.CancelledError,
    )
    if isinstance(e, terminal):
        return DestinationTerminalException(f"floe: {e}")
    return DestinationTransientException(f"floe: {e}")


def _files_by_table(paths: Sequence[str]) -> Dict[str, List[str]]:
    from dlt.common.storages.load_package import ParsedLoadJobFileName

    out: Dict[str, List[str]] = {}
    for path in paths:
        out.setdefault(ParsedLoadJobFileName.parse(path).table_name, []).append(path)
    return out


def _renamed_column(paths: Sequence[str], name: str, to: str) -> Any:
    """The Parquet files' column `name` as `to`, streamed batch by batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    field = pq.ParquetFile(paths[0]).schema_arrow.field(name)
    schema = pa.schema([pa.field(to, field.type, field.nullable)])

    def batches() -> Iterator[Any]:
        for path in paths:
            for batch in pq.ParquetFile(path).iter_batches(columns=[name]):
                yield pa.RecordBatch.from_arrays([batch.column(0)], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _kept_rows(files: List[str], plan: Dict[str, Any], row_key: str, tmp: str) -> str:
    """The ids of the root rows the root's merge will insert (one per primary key, by its
    dedup_sort; none flagged deleted), as a Parquet file: the package's key columns merged
    into an empty scratch table the same way, then read back."""
    import pyarrow.dataset as ds

    dedup = plan.get("dedup_sort")
    columns = list(dict.fromkeys([*plan["key"], *([dedup.split(":")[0]] if dedup else []),
                                  *([plan["hard_delete_column"]] if "hard_delete_column" in plan else []), row_key]))
    scratch = {"type": "sql", "name": "floe-dlt-scratch", "uri": f"sqlite:///{tmp}/scratch.db",
               "warehouse": f"{tmp}/scratch"}
    options = {k: plan[k] for k in ("strategy", "key", "dedup_sort", "hard_delete_column") if k in plan}
    floe.load("scratch.kept", ds.dataset(files, format="parquet").scanner(columns=columns).to_reader(),
              mode="merge", catalog=scratch, **options)
    out = f"{tmp}/kept.parquet"
    keys = ds.dataset(files, format="parquet").scanner(columns=plan["key"]).to_reader()
    floe.match_rows("scratch.kept", keys, key=plan["key"], columns=[row_key], output=out, catalog=scratch)
    return out


def _no_rows(column: str) -> Any:
    """An empty input for a nested table the package has no rows for (its replaced rows still go)."""
    import pyarrow as pa

    return pa.table({column: pa.array([], pa.string())})


class FloeFilesystemClient(FilesystemClient):
    """dlt's filesystem client with floe writing the Iceberg tables."""

    def get_reference_followup_job_class(self, table: Any) -> Optional[Type[ReferenceFollowupJob]]:
        if table.get("table_format") == "iceberg":
            return FloeIcebergLoadJob
        return super().get_reference_followup_job_class(table)

    def get_reference_followup_job_requests(self, table_chain: Sequence[Any],
                                            completed_table_chain_jobs: Optional[Sequence[Any]]) -> List[Any]:
        """One job per table, except for a delete-insert root with nested tables: one job gets
        the whole chain's files (the root's first), as its nested rows go by the root's."""
        root = table_chain[0]
        strategy = resolve_merge_strategy(self.schema.tables, root, self.capabilities)
        if (root.get("table_format") != "iceberg" or root.get("write_disposition") != "merge"
                or strategy != "delete-insert" or len(get_nested_tables(self.schema.tables, root["name"])) < 2):
            return super().get_reference_followup_job_requests(table_chain, completed_table_chain_jobs)
        from dlt.common.storages import FileStorage
        from dlt.destinations.job_impl import ReferenceFollowupJobRequest

        names = [t["name"] for t in table_chain]
        jobs = sorted((job for job in completed_table_chain_jobs or [] if job.job_file_info.table_name in names),
                      key=lambda job: names.index(job.job_file_info.table_name))
        paths = [job.file_path for job in jobs]
        if not paths or jobs[0].job_file_info.table_name != root["name"]:
            return super().get_reference_followup_job_requests(table_chain, completed_table_chain_jobs)
        return [ReferenceFollowupJobRequest(FileStorage.get_file_name_from_file_path(paths[0]), paths)]

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
        """The catalog properties for floe: those of the catalog dlt's configuration names,
        or for dlt's ephemeral in-memory catalog a temporary SQLite one with the table
        registered from its newest metadata file (as dlt does)."""
        name, props = dlt_catalog()
        if props is not None:
            if self.config.iceberg_namespace_properties:
                # dlt creates the dataset's namespace with these properties.
                self.get_open_table_catalog("iceberg")
            props = {**props, "type": _catalog_kind(name, props), "name": name}
            props.setdefault("warehouse", location)
            yield props
            return
        credentials = self.config.credentials
        fileio = credentials.to_pyiceberg_fileio_config() if isinstance(credentials, WithPyicebergConfig) else {}
        with tempfile.TemporaryDirectory(prefix="floe-dlt-") as tmp:
            catalog = {**_strings(fileio), "type": "sql", "uri": f"sqlite:///{tmp}/catalog.db", "name": name,
                       "warehouse": location}
            metadata = self._last_metadata_file(location)
            if metadata is not None:
                floe.register_table(f"{self.dataset_name}.{table_name}", metadata, catalog=catalog)
            yield catalog

    def _last_metadata_file(self, location: str) -> Optional[str]:
        """The table's newest metadata file, as dlt finds it; None for a new table."""
        try:
            files = [f for f in self.fs_client.ls(f"{location.rstrip('/')}/metadata") if f.endswith(".json")]
        except FileNotFoundError:
            return None
        if not files:
            return None
        url = self.config.make_url(sorted(files)[-1])
        # as dlt's make_location: pyiceberg cannot read Windows file:/// urls
        return url.replace("file:///", "file://") if self.config.is_local_filesystem and os.name == "nt" else url


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
