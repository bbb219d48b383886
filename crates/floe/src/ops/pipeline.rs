//! The load pipeline shared by every operation: source -> conform -> write -> commit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use iceberg::TableIdent;
use iceberg::spec::{Schema, TableMetadataBuilder, TableMetadataRef};
use uuid::Uuid;

use super::{LoadOptions, LoadSummary};
use crate::catalog::{Catalog, TableState, display_ident};
use crate::commit::{
    AddedFiles, AddedFilesSink, FileChanges, SnapshotOperation, commit_load, find_load,
    find_load_off_main,
};
use crate::conform::evolve::{Evolution, SchemaEvolution, evolve};
use crate::conform::{Conformer, iceberg_schema_from_arrow};
use crate::error::{FloeError, Result, ResultExt};
use crate::partition::parse_partition_spec;
use crate::source::{Source, SourceInfo};
use crate::write::splice::{SplicePlanner, SplicingWriter};
use crate::write::{FileSettings, ParallelWriter, TableWriter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Append,
    Replace,
    ReplacePartitions,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Append => "append",
            Kind::Replace => "replace",
            Kind::ReplacePartitions => "replace-partitions",
        }
    }

    fn operation(self) -> SnapshotOperation {
        match self {
            Kind::Append => SnapshotOperation::Append,
            Kind::Replace => SnapshotOperation::ReplaceAll,
            Kind::ReplacePartitions => SnapshotOperation::ReplacePartitions,
        }
    }
}

/// A load that may go ahead: the table state it is planned against and its schema.
pub(crate) struct Ready {
    pub base: TableState,
    /// A new schema the load's commit installs, if the input needs one.
    pub schema_change: Option<Schema>,
    /// `base` with the new schema current: what writers and conform use.
    pub write_metadata: TableMetadataRef,
    pub summary: LoadSummary,
    pub table: String,
    pub load_id: String,
}

pub(crate) enum Prepared {
    /// The load id already landed: nothing to do (the summary says so).
    Skipped(Box<LoadSummary>),
    Ready(Box<Ready>),
}

/// Fills the summary fields every load reports at the end.
pub(crate) fn finish(mut s: LoadSummary, options: &LoadOptions, started: Instant) -> LoadSummary {
    let p = options.progress.snapshot();
    s.input_files = p.input_files;
    s.input_bytes = p.input_bytes;
    s.duration_ms = started.elapsed().as_millis() as u64;
    s
}

/// Resolves the table (loading it, or staging a new one), checks the load id, and decides the
/// schema the load writes with.
pub(crate) async fn prepare(
    catalog: &Catalog,
    ident: &TableIdent,
    source: &SourceInfo,
    options: &LoadOptions,
    mode: &str,
) -> Result<Prepared> {
    crate::catalog::validate_ident(ident)?;
    let table = display_ident(ident);
    let load_id = options
        .load_id
        .clone()
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let mut summary = LoadSummary {
        table: table.clone(),
        mode: mode.to_string(),
        load_id: load_id.clone(),
        snapshot_id: None,
        operation: None,
        rows_written: 0,
        rows_copied: 0,
        files_added: 0,
        files_removed: 0,
        rows_removed: 0,
        bytes_written: 0,
        input_files: 0,
        input_bytes: 0,
        duration_ms: 0,
        skipped: false,
        table_created: false,
        schema_changes: Vec::new(),
        schema_id: None,
        commit_attempts: 0,
        metadata_location: None,
        merge: None,
        message: String::new(),
    };

    let (base, schema_change) = match catalog.load_table(ident).await? {
        Some(state) => {
            if let Some(snapshot_id) = find_load(&state.metadata, &load_id) {
                summary.skipped = true;
                summary.snapshot_id = Some(snapshot_id);
                summary.operation = state
                    .metadata
                    .snapshot_by_id(snapshot_id)
                    .map(|s| s.summary().operation.as_str().to_string());
                summary.metadata_location = state.metadata_location.clone();
                summary.message = format!(
                    "load id {load_id} already landed in {table} as snapshot {snapshot_id}; nothing to do"
                );
                return Ok(Prepared::Skipped(Box::new(summary)));
            }
            let chosen = options.load_id.is_some();
            if let Some(snapshot_id) = chosen
                .then(|| find_load_off_main(&state.metadata, &load_id))
                .flatten()
            {
                summary.skipped = true;
                summary.snapshot_id = Some(snapshot_id);
                summary.metadata_location = state.metadata_location.clone();
                summary.message = format!(
                    "load id {load_id} landed in {table} as snapshot {snapshot_id}, which the current main branch no longer contains (rolled back?); nothing done, so its data is not loaded twice: use a new load id to load it again"
                );
                return Ok(Prepared::Skipped(Box::new(summary)));
            }
            if state.metadata.format_version() == iceberg::spec::FormatVersion::V3 {
                // Refused before any data is written (the commit would refuse it too).
                return Err(FloeError::InvalidOption(format!(
                    "table {table} uses Iceberg format v3, which floe does not write yet; nothing was written"
                )));
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
            let evolution = evolve_over_inputs(
                state.metadata.current_schema(),
                state.metadata.last_column_id(),
                source,
                options.schema_evolution,
                &table,
            )?;
            if evolution.changes.is_empty() {
                (state, None)
            } else {
                summary.schema_changes = evolution.changes;
                (state, Some(evolution.schema))
            }
        }
        None => {
            let first = iceberg_schema_from_arrow(&source.schema, &source.name)?;
            // Files after the first may add columns (or widen types) like any later load.
            let evolution = evolve_over_inputs(
                &first,
                first.highest_field_id(),
                source,
                options.schema_evolution,
                &table,
            )?;
            let spec = options
                .partition_by
                .as_deref()
                .map(|text| parse_partition_spec(text, &evolution.schema))
                .transpose()?;
            catalog.ensure_namespace(ident.namespace()).await?;
            summary.table_created = true;
            let staged = catalog
                .stage_table(
                    ident,
                    evolution.schema,
                    spec,
                    options.table_properties.clone(),
                    options.table_location.clone(),
                )
                .await?;
            (staged, None)
        }
    };
    // Writers and conform work against the schema the commit will install.
    let write_metadata = match &schema_change {
        None => base.metadata.clone(),
        Some(schema) => Arc::new(
            TableMetadataBuilder::new_from_metadata(base.metadata.as_ref().clone(), None)
                .add_current_schema(schema.clone())
                .and_then(|b| b.build())
                .context(|| format!("table {table}: cannot apply the evolved schema"))?
                .metadata,
        ),
    };

    Ok(Prepared::Ready(Box::new(Ready {
        base,
        schema_change,
        write_metadata,
        summary,
        table,
        load_id,
    })))
}

pub(crate) async fn run(
    catalog: &Catalog,
    ident: &TableIdent,
    mut source: Source,
    options: LoadOptions,
    kind: Kind,
) -> Result<LoadSummary> {
    let started = Instant::now();
    let finish = |s: LoadSummary| finish(s, &options, started);
    let ready = match prepare(catalog, ident, &source.info(), &options, kind.name()).await? {
        Prepared::Skipped(summary) => return Ok(finish(*summary)),
        Prepared::Ready(ready) => *ready,
    };
    let Ready {
        base,
        schema_change,
        write_metadata,
        mut summary,
        table,
        load_id,
    } = ready;
    let settings = FileSettings::resolve(base.metadata.properties(), &options.write)?;
    let conformer = Conformer::new(&table, write_metadata.current_schema().clone())?;
    let added = AddedFiles::new(&table, &write_metadata, base.file_io.clone())?.into_sink();
    // Input files whose column chunks can be copied are taken out of the stream and spliced
    // on their own thread while the rest decode and encode as usual.
    let planner = SplicePlanner::new(conformer.arrow_schema().clone(), &settings)?;
    let spliced = match source.parquet_files() {
        Some(files) if splicing_allowed(&write_metadata, &options) => planner.select(files)?,
        _ => Vec::new(),
    };
    let taken: std::collections::HashSet<&Path> = spliced.iter().map(PathBuf::as_path).collect();
    source.retain_files(|f| !taken.contains(f));
    // Writers first: once the splicer runs, every later failure must go through cleanup.
    let mut writer = load_writers(&table, &write_metadata, &base, &settings, &options, &added)?;
    let splicer = if spliced.is_empty() {
        None
    } else {
        let splicer = SplicingWriter::new(
            &table,
            &write_metadata,
            &settings,
            base.file_io.clone(),
            &format!("{}-copy", Uuid::new_v4()),
            added.clone(),
            options.progress.clone(),
        );
        match splicer {
            Ok(splicer) => Some(
                splicer
                    .with_budget(source.batch_budget())
                    .spawn(planner, spliced),
            ),
            Err(e) => {
                writer.abort().await;
                added.lock().await.discard().await;
                return Err(e);
            }
        }
    };

    let mut rows = 0u64;
    let mut failure = None;
    let mut stream = source.into_stream();
    while let Some(item) = stream.next().await {
        let written = match item.and_then(|i| options.progress.check_cancelled().map(|_| i)) {
            Ok(input) => match conformer.conform(&input) {
                Ok(batch) => {
                    rows += batch.num_rows() as u64;
                    writer.write(batch).await
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            failure = Some(e);
            if let Some(task) = &splicer {
                task.cancel();
            }
            break;
        }
    }
    // Stop the reader if we bail out early.
    drop(stream);
    let mut spliced_files = Vec::new();
    if let Some(task) = splicer {
        let done = task.join().await;
        rows += done.rows;
        summary.rows_copied = done.rows;
        spliced_files = done.started;
        if let Err(e) = done.result {
            failure.get_or_insert(e);
        }
    }
    if let Some(e) = failure {
        writer.abort().await;
        delete_files(&base.file_io, &spliced_files).await;
        added.lock().await.discard().await;
        return Err(e);
    }
    let closed = writer.close().await;
    let files = match closed {
        Ok(()) => added.lock().await.finish().await,
        Err(e) => Err(e),
    };
    let files = match files {
        Ok(files) => files,
        Err(e) => {
            let mut added = added.lock().await;
            delete_files(&base.file_io, added.paths()).await;
            added.discard().await;
            return Err(e);
        }
    };
    options.progress.add_files_written(files.files());
    summary.rows_written = rows;
    summary.files_added = files.files();
    summary.bytes_written = files.bytes;

    if files.is_empty() && (kind != Kind::Replace || base.is_staged()) {
        summary.table_created = false;
        summary.message = if base.is_staged() {
            format!("the input has no rows; {table} does not exist and was not created")
        } else {
            format!("the input has no rows; nothing changed in {table}")
        };
        return Ok(finish(summary));
    }

    let file_io = base.file_io.clone();
    let paths = files.paths.clone();
    let committed = match commit_load(
        catalog,
        base,
        &load_id,
        kind.operation(),
        FileChanges::added(files),
        schema_change,
        options.max_commit_attempts,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            if !e.keeps_written_files() {
                delete_files(&file_io, &paths).await;
            }
            return Err(e);
        }
    };
    summary.snapshot_id = Some(committed.snapshot_id);
    summary.schema_id = Some(committed.schema_id);
    summary.commit_attempts = committed.attempts;
    summary.metadata_location = Some(committed.metadata_location.clone());
    if committed.already_committed {
        // A concurrent run with the same load id won; our files are not referenced.
        delete_files(&file_io, &paths).await;
        summary.skipped = true;
        summary.table_created = false;
        summary.schema_changes.clear();
        summary.rows_written = 0;
        summary.files_added = 0;
        summary.bytes_written = 0;
        summary.message = format!(
            "load id {load_id} was committed concurrently as snapshot {}; nothing added",
            committed.snapshot_id
        );
        return Ok(finish(summary));
    }
    summary.operation = Some(committed.operation.clone());
    summary.files_removed = committed.files_removed;
    summary.rows_removed = committed.rows_removed;
    summary.message = match kind {
        Kind::Append => format!(
            "appended {} rows in {} files to {table} (snapshot {})",
            summary.rows_written, summary.files_added, committed.snapshot_id
        ),
        Kind::Replace | Kind::ReplacePartitions => format!(
            "replaced {}{table}: {} rows in {} files added, {} files ({} rows) removed (snapshot {})",
            if kind == Kind::ReplacePartitions {
                "the load's partitions of "
            } else {
                ""
            },
            summary.rows_written,
            summary.files_added,
            summary.files_removed,
            summary.rows_removed,
            committed.snapshot_id
        ),
    };
    if !summary.schema_changes.is_empty() {
        summary.message = format!(
            "{}; schema: {}",
            summary.message,
            summary.schema_changes.join(", ")
        );
    }
    Ok(finish(summary))
}

/// Whether a load may copy input column chunks: into a table without partition fields, unless
/// the load asked for encoding (an explicit level or row group size: copied chunks keep the
/// input's).
pub(crate) fn splicing_allowed(write_metadata: &TableMetadataRef, options: &LoadOptions) -> bool {
    let w = &options.write;
    !w.rewrite
        && w.compression_level.is_none()
        && w.row_group_bytes.is_none()
        && write_metadata.default_partition_spec().fields().is_empty()
}

/// Best-effort removal of files no snapshot references.
pub(crate) async fn delete_files(file_io: &iceberg::io::FileIO, paths: &[String]) {
    for path in paths {
        if let Err(e) = file_io.delete(path).await {
            tracing::warn!(file = %path, error = %e, "could not delete a file of the failed load");
        }
    }
}

/// The data file writers of one load, all handing their files to `added`: several encoding in
/// parallel for an unpartitioned table, one (fanning out by partition) otherwise.
pub(crate) fn load_writers(
    table: &str,
    write_metadata: &TableMetadataRef,
    base: &TableState,
    settings: &FileSettings,
    options: &LoadOptions,
    added: &AddedFilesSink,
) -> Result<ParallelWriter> {
    let load_uuid = Uuid::new_v4();
    let writers = if write_metadata.default_partition_spec().is_unpartitioned() {
        options
            .write
            .writers
            .unwrap_or_else(parallel_writers)
            .clamp(1, 16)
    } else {
        1
    };
    let mut sinks = Vec::new();
    for k in 0..writers {
        sinks.push(TableWriter::new(
            table,
            write_metadata.clone(),
            base.file_io.clone(),
            &format!("{load_uuid}-{k}"),
            settings,
            added.clone(),
        )?);
    }
    Ok(ParallelWriter::new(sinks))
}

/// How many writers encode an unpartitioned load in parallel: one per core, at most two
/// (beyond that the reader, not encoding, is the bottleneck).
fn parallel_writers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 2)
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
        let next = evolve(&current.schema, last, input, mode, table, origin)?;
        last = last.max(next.schema.highest_field_id());
        current.schema = next.schema;
        current.changes.extend(next.changes);
    }
    Ok(current)
}
