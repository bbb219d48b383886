//! Preparing a load: the table it plans against (loaded, or staged when the load creates it),
//! the load id's check against the table's history, and the schema the load writes with.

use std::sync::Arc;

use iceberg::TableIdent;
use iceberg::spec::{FormatVersion, Schema, TableMetadataBuilder, TableMetadataRef};
use uuid::Uuid;

use super::{LoadOptions, LoadSummary};
use crate::catalog::{Catalog, TableState, display_ident};
use crate::commit::{LoadOperation, find_load, find_load_off_main};
use crate::conform::evolve::{Evolution, SchemaEvolution, evolve};
use crate::conform::iceberg_schema_from_arrow;
use crate::error::{FloeError, Result, ResultExt};
use crate::partition::parse_partition_spec;
use crate::source::SourceInfo;

/// A load that may go ahead: the table state it is planned against and its schema.
pub(crate) struct Ready {
    pub base: TableState,
    /// A new schema the load's commit installs, if the input needs one.
    pub schema_change: Option<Schema>,
    /// `base` with the new schema current: what writers and conform use.
    pub write_metadata: TableMetadataRef,
    /// The load's summary so far (its load id chosen).
    pub summary: LoadSummary,
    pub table: String,
}

pub(crate) enum Prepared {
    /// The load id already landed: nothing to do (the summary says so).
    Skipped(Box<LoadSummary>),
    Ready(Box<Ready>),
}

/// Resolves the table (loading it, or staging a new one), checks the load id, and decides the
/// schema the load writes with. Without a `source` (a compaction rewrites what the table
/// holds) the table must exist and its schema stays.
pub(crate) async fn prepare(
    catalog: &Catalog,
    ident: &TableIdent,
    source: Option<&SourceInfo>,
    options: &LoadOptions,
    operation: LoadOperation,
) -> Result<Prepared> {
    crate::catalog::validate_ident(ident)?;
    let table = display_ident(ident);
    let load_id = options
        .load_id
        .clone()
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let mut summary = LoadSummary::new(&table, operation, &load_id);
    let (base, schema_change) = match catalog.load_table(ident).await? {
        Some(state) => {
            if let Some(skipped) = already_landed(&state, summary.clone(), options) {
                return Ok(Prepared::Skipped(Box::new(skipped)));
            }
            let evolution = match source {
                Some(source) => plan_existing(&state, source, options, &table)?,
                None => Evolution {
                    schema: state.metadata.current_schema().as_ref().clone(),
                    changes: Vec::new(),
                },
            };
            if evolution.changes.is_empty() {
                (state, None)
            } else {
                summary.schema_changes = evolution.changes;
                (state, Some(evolution.schema))
            }
        }
        None => {
            let Some(source) = source else {
                return Err(FloeError::NoSuchTable { table });
            };
            summary.table_created = true;
            (
                stage_new(catalog, ident, source, options, &table).await?,
                None,
            )
        }
    };
    let write_metadata = with_schema(&base, schema_change.as_ref(), &table)?;
    Ok(Prepared::Ready(Box::new(Ready {
        base,
        schema_change,
        write_metadata,
        summary,
        table,
    })))
}

/// The summary of a load whose load id the table's history already holds, if it does.
fn already_landed(
    state: &TableState,
    mut summary: LoadSummary,
    options: &LoadOptions,
) -> Option<LoadSummary> {
    let (table, load_id) = (summary.table.clone(), summary.load_id.clone());
    summary.skipped = true;
    summary.metadata_location = state.metadata_location.clone();
    if let Some(snapshot_id) = find_load(&state.metadata, &load_id) {
        summary.snapshot_id = Some(snapshot_id);
        summary.operation = state
            .metadata
            .snapshot_by_id(snapshot_id)
            .map(|s| s.summary().operation.clone());
        summary.message = format!(
            "load id {load_id} already landed in {table} as snapshot {snapshot_id}; nothing to do"
        );
        return Some(summary);
    }
    // Only a chosen load id can be found off main (a fresh UUID never is).
    let snapshot_id = options
        .load_id
        .as_ref()
        .and_then(|_| find_load_off_main(&state.metadata, &load_id))?;
    summary.snapshot_id = Some(snapshot_id);
    summary.message = format!(
        "load id {load_id} landed in {table} as snapshot {snapshot_id}, which the current main branch no longer contains (rolled back?); nothing done, so its data is not loaded twice: use a new load id to load it again"
    );
    Some(summary)
}

/// Checks what a load into an existing table asks for, and evolves its schema over the inputs.
fn plan_existing(
    state: &TableState,
    source: &SourceInfo,
    options: &LoadOptions,
    table: &str,
) -> Result<Evolution> {
    if state.metadata.format_version() == FormatVersion::V3 {
        // Refused before any data is written (the commit would refuse it too).
        return Err(FloeError::UnsupportedTable {
            table: table.to_string(),
            detail: "it uses Iceberg format v3, which floe does not write yet; nothing was written"
                .into(),
        });
    }
    if let Some(text) = &options.partition_by {
        let wanted = parse_partition_spec(text, state.metadata.current_schema())?;
        let current = state.metadata.default_partition_spec();
        let same = wanted.fields().len() == current.fields().len()
            && wanted
                .fields()
                .iter()
                .zip(current.fields())
                .all(|(w, c)| w.source_id == c.source_id && w.transform == c.transform);
        if !same {
            tracing::warn!(table = %table, "--partition-by applies when floe creates a table; {table} keeps its partition spec");
        }
    }
    evolve_over_inputs(
        state.metadata.current_schema(),
        state.metadata.last_column_id(),
        source,
        options.schema_evolution,
        table,
    )
}

/// Stages the table a load creates: its schema from the inputs, the asked-for partition spec,
/// location and properties. Nothing exists in the catalog until the load's commit.
async fn stage_new(
    catalog: &Catalog,
    ident: &TableIdent,
    source: &SourceInfo,
    options: &LoadOptions,
    table: &str,
) -> Result<TableState> {
    let first = iceberg_schema_from_arrow(&source.schema, &source.name)?;
    // Files after the first may add columns (or widen types) like any later load.
    let evolution = evolve_over_inputs(
        &first,
        first.highest_field_id(),
        source,
        options.schema_evolution,
        table,
    )?;
    let spec = options
        .partition_by
        .as_deref()
        .map(|text| parse_partition_spec(text, &evolution.schema))
        .transpose()?;
    catalog.ensure_namespace(ident.namespace()).await?;
    catalog
        .stage_table(
            ident,
            evolution.schema,
            spec,
            options.table_properties.clone(),
            options.table_location.clone(),
        )
        .await
}

/// `base` with `schema` current: writers and conform work against the schema the commit
/// will install.
pub(crate) fn with_schema(
    base: &TableState,
    schema: Option<&Schema>,
    table: &str,
) -> Result<TableMetadataRef> {
    let Some(schema) = schema else {
        return Ok(base.metadata.clone());
    };
    let built = TableMetadataBuilder::new_from_metadata(base.metadata.as_ref().clone(), None)
        .add_current_schema(schema.clone())
        .and_then(|b| b.build())
        .context(|| format!("table {table}: cannot apply the evolved schema"))?;
    Ok(Arc::new(built.metadata))
}

/// Evolves `schema` over every distinct input schema, in input order.
fn evolve_over_inputs(
    schema: &Schema,
    last_column_id: i32,
    source: &SourceInfo,
    mode: SchemaEvolution,
    table: &str,
) -> Result<Evolution> {
    let mut current = Evolution {
        schema: schema.clone(),
        changes: Vec::new(),
    };
    let mut last = last_column_id;
    for (origin, input) in &source.schemas {
        let table_arrow = iceberg::arrow::schema_to_arrow_schema(&current.schema)
            .context(|| format!("table {table}: cannot convert its schema to Arrow"))?;
        let input = source.planned_against(&table_arrow, input);
        let next = evolve(&current.schema, last, &input, mode, table, origin)?;
        last = last.max(next.schema.highest_field_id());
        current.schema = next.schema;
        current.changes.extend(next.changes);
    }
    Ok(current)
}
