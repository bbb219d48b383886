//! Distributed loads: planned once, written by many workers, committed once.
//!
//! ```text
//!   driver   plan_load      table loaded or staged, load id checked, schema evolved over
//!      |                    the data's schema: a LoadPlan (serialisable, sent to workers)
//!      v
//!   workers  write_staged   each writes its share of the rows into data files (the table's
//!      |                    partitioning, file settings and metrics) and one manifest per
//!      |                    1,000 of them; commits nothing, talks to no catalog; answers a
//!      |                    small StagedFiles (manifest paths and counts)
//!      v
//!   driver   commit_staged  reads every worker's manifests back, checks each entry against
//!                           the plan (this job's, under the table, its schema and spec, the
//!                           file present, counts agreeing), and commits them all as one
//!                           snapshot, or nothing; discard_staged deletes what a worker wrote
//!                           that the commit does not take (a retried task's first attempt)
//! ```
//!
//! Append, replace and replace-partitions load this way: their snapshot depends only on the
//! files added. A merge matches keys against the table, which one process does in bounded
//! memory; a distributed merge stages its input as Parquet files and merges them on the
//! driver (see the Python package's Ray sink).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow_schema::SchemaRef;
use iceberg::spec::{
    DataContentType, DataFileFormat, Manifest, ManifestContentType, ManifestStatus, Schema,
    TableMetadata,
};
use iceberg::writer::file_writer::location_generator::{
    DefaultLocationGenerator, LocationGenerator,
};
use iceberg::{NamespaceIdent, TableIdent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::prepare::{Prepared, Ready, prepare, with_schema};
use super::session::{LoadSession, Written};
use super::{LoadOptions, LoadSummary};
use crate::catalog::{Catalog, TableState, file_io_for};
use crate::commit::LoadOperation;
use crate::error::{FloeError, Result, ResultExt};
pub use crate::ledger::FileObserver;
use crate::source::{Source, SourceInfo};

/// What the driver decided before any worker writes: the table state the load is planned
/// against (metadata, location, storage settings), the load id and the schema the workers
/// write with. Its JSON goes to every worker; it holds the table's storage credentials.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoadPlan {
    /// In every result of this load's workers: a result of another job is refused.
    pub job: String,
    pub table: String,
    namespace: Vec<String>,
    name: String,
    pub operation: LoadOperation,
    pub load_id: String,
    metadata: TableMetadata,
    /// `None` when the load creates the table.
    metadata_location: Option<String>,
    storage: HashMap<String, String>,
    schema_change: Option<Schema>,
    schema_changes: Vec<String>,
    table_created: bool,
}

// The storage settings may hold credentials.
impl std::fmt::Debug for LoadPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadPlan")
            .field("job", &self.job)
            .field("table", &self.table)
            .field("operation", &self.operation)
            .field("load_id", &self.load_id)
            .finish_non_exhaustive()
    }
}

/// What planning found.
#[derive(Debug)]
pub enum Planned {
    /// The load id already landed: no worker needs to write anything.
    Skipped(Box<LoadSummary>),
    Ready(Box<LoadPlan>),
}

/// What one worker wrote: data files listed in manifests, nothing committed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedFiles {
    /// The plan's job.
    pub job: String,
    /// This worker's attempt: the prefix of every file name it wrote.
    pub attempt: String,
    /// Manifests listing the data files (1,000 at most each).
    pub manifests: Vec<String>,
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    /// Rows whose Parquet column chunks were copied instead of re-encoded.
    pub rows_copied: u64,
}

impl LoadPlan {
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self)
            .map_err(|e| FloeError::InvalidOption(format!("cannot encode the load plan: {e}")))
    }

    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| FloeError::InvalidOption(format!("not a floe load plan: {e}")))
    }

    /// The Arrow schema workers' batches are conformed to.
    pub fn arrow_schema(&self) -> Result<SchemaRef> {
        let schema = self
            .schema_change
            .as_ref()
            .unwrap_or_else(|| self.metadata.current_schema());
        iceberg::arrow::schema_to_arrow_schema(schema)
            .map(Arc::new)
            .context(|| format!("table {}: cannot map its schema to Arrow", self.table))
    }

    fn from_ready(ready: Ready, operation: LoadOperation) -> Self {
        let Ready {
            base,
            schema_change,
            summary,
            table,
            ..
        } = ready;
        Self {
            job: Uuid::new_v4().to_string(),
            table,
            namespace: base.ident.namespace().clone().inner(),
            name: base.ident.name().to_string(),
            operation,
            load_id: summary.load_id,
            metadata: base.metadata.as_ref().clone(),
            metadata_location: base.metadata_location,
            storage: base.file_io.config().props().clone(),
            schema_change,
            schema_changes: summary.schema_changes,
            table_created: summary.table_created,
        }
    }

    /// The prepared load this plan describes, rebuilt without the catalog.
    fn ready(&self) -> Result<Ready> {
        let namespace = NamespaceIdent::from_strs(&self.namespace)
            .context(|| format!("table {}: bad namespace in the load plan", self.table))?;
        let base = TableState {
            ident: TableIdent::new(namespace, self.name.clone()),
            metadata: Arc::new(self.metadata.clone()),
            metadata_location: self.metadata_location.clone(),
            file_io: file_io_for(self.metadata.location(), &self.storage)?,
        };
        let write_metadata = with_schema(&base, self.schema_change.as_ref(), &self.table)?;
        let mut summary = LoadSummary::new(&self.table, self.operation, &self.load_id);
        summary.table_created = self.table_created;
        summary.schema_changes = self.schema_changes.clone();
        Ok(Ready {
            base,
            schema_change: self.schema_change.clone(),
            write_metadata,
            summary,
            table: self.table.clone(),
        })
    }

    /// Where the load's data files go (`write.data.path`, else `<location>/data`), with a
    /// trailing `/`.
    fn data_dir(&self) -> Result<String> {
        let generator = DefaultLocationGenerator::new(&self.metadata)
            .context(|| format!("table {}: no data location", self.table))?;
        let probe = generator.generate_location(None, "f");
        Ok(probe.trim_end_matches('f').to_string())
    }

    fn metadata_dir(&self) -> String {
        format!(
            "{}/metadata/",
            self.metadata.location().trim_end_matches('/')
        )
    }

    /// Whether `path` is a file this load's workers may have written.
    fn owns(&self, path: &str) -> Result<bool> {
        let under = |dir: &str| path.starts_with(dir) && !path[dir.len()..].contains("..");
        Ok(under(&self.data_dir()?) || under(&self.metadata_dir()))
    }
}

/// Plans a distributed load of `operation` (append, replace or replace-partitions) of data
/// with `schema` into `ident`: what the driver does before its workers start.
pub async fn plan_load(
    catalog: &Catalog,
    ident: &TableIdent,
    operation: LoadOperation,
    options: &LoadOptions,
    schema: SchemaRef,
) -> Result<Planned> {
    if !matches!(
        operation,
        LoadOperation::Append | LoadOperation::Replace | LoadOperation::ReplacePartitions
    ) {
        return Err(FloeError::InvalidOption(format!(
            "a distributed load appends, replaces or replaces partitions, not {}",
            operation.name()
        )));
    }
    let name = "<distributed load>".to_string();
    let info = SourceInfo {
        name: name.clone(),
        schema: schema.clone(),
        schemas: vec![(name, schema)],
        typed_by_table: false,
    };
    Ok(
        match prepare(catalog, ident, Some(&info), options, operation).await? {
            Prepared::Skipped(summary) => Planned::Skipped(summary),
            Prepared::Ready(ready) => {
                Planned::Ready(Box::new(LoadPlan::from_ready(*ready, operation)))
            }
        },
    )
}

/// A worker's share of a distributed load: writes `source` as the plan says and hands the
/// files over (nothing committed). `observer` hears of every file before it is written (the
/// job's own ledger, so files of a worker that dies can be found). On failure the worker's
/// files are deleted.
pub async fn write_staged(
    plan: &LoadPlan,
    options: &LoadOptions,
    source: Source,
    observer: Option<FileObserver>,
) -> Result<StagedFiles> {
    let mut session = LoadSession::start(plan.ready()?, options, plan.operation, Instant::now())?;
    if let Some(observer) = observer {
        session.ledger.observe(observer);
    }
    let attempt = session.file_prefix.to_string();
    let written = session.write_source(source).await;
    let written = session.hand_over(written).await?;
    let added = &written.changes.added;
    Ok(StagedFiles {
        job: plan.job.clone(),
        attempt,
        manifests: added
            .manifests
            .iter()
            .map(|m| m.manifest_path.clone())
            .collect(),
        files: added.files,
        rows: added.rows,
        bytes: added.bytes,
        rows_copied: written.rows_copied,
    })
}

/// Commits what the workers wrote as one snapshot, or nothing. Every staged file is checked
/// against the plan first, and each attempt may be handed in once. The results are consumed:
/// the workers' manifests are deleted afterwards, landed or not (the snapshot lists the files
/// in manifests of its own); if the load fails, the data files it took are deleted (kept when
/// the outcome is unknown), and any others are the caller's to discard.
pub async fn commit_staged(
    catalog: &Catalog,
    plan: &LoadPlan,
    options: &LoadOptions,
    staged: &[StagedFiles],
) -> Result<LoadSummary> {
    let mut session = LoadSession::start(plan.ready()?, options, plan.operation, Instant::now())?;
    let written = match adopt(&mut session, plan, staged).await {
        Ok(rows_copied) => session
            .close_files()
            .await
            .map(|added| Written::added(added, rows_copied)),
        Err(e) => Err(e),
    };
    let file_io = session.base.file_io.clone();
    let summary = session.commit(catalog, written).await;
    for manifest in staged.iter().flat_map(|s| &s.manifests) {
        if plan.owns(manifest).unwrap_or(false)
            && let Err(e) = file_io.delete(manifest).await
        {
            tracing::warn!(file = %manifest, error = %e, "could not delete a worker's manifest");
        }
    }
    summary
}

/// Deletes files a worker of this load wrote that no commit takes (a retried task's first
/// attempt, a failed job's). Paths outside the table's data and metadata folders are refused
/// (left alone, with a warning). Returns how many were deleted.
pub async fn discard_staged(plan: &LoadPlan, paths: &[String]) -> Result<usize> {
    let file_io = file_io_for(plan.metadata.location(), &plan.storage)?;
    let mut deleted = 0;
    for path in paths {
        if !plan.owns(path)? {
            tracing::warn!(file = %path, table = %plan.table, "not deleting a file outside the table's folders");
            continue;
        }
        match file_io.delete(path).await {
            Ok(()) => deleted += 1,
            Err(e) => tracing::warn!(file = %path, error = %e, "could not delete a staged file"),
        }
    }
    Ok(deleted)
}

/// Takes every worker's data files into the session's own manifests (and its ledger, which
/// deletes them if the commit fails). Returns the rows the workers copied.
async fn adopt(
    session: &mut LoadSession<'_>,
    plan: &LoadPlan,
    staged: &[StagedFiles],
) -> Result<u64> {
    let mut rows_copied = 0;
    let mut attempts = HashSet::new();
    for result in staged {
        if result.job != plan.job {
            return Err(refuse(
                plan,
                format!(
                    "attempt {} belongs to job {}, not {}",
                    result.attempt, result.job, plan.job
                ),
            ));
        }
        if !attempts.insert(result.attempt.as_str()) {
            return Err(refuse(
                plan,
                format!(
                    "attempt {} is handed in twice (its files would land twice)",
                    result.attempt
                ),
            ));
        }
        let (mut files, mut rows) = (0u64, 0u64);
        for path in &result.manifests {
            let (f, r) = adopt_manifest(session, plan, &result.attempt, path).await?;
            files += f;
            rows += r;
        }
        if files != result.files || rows != result.rows {
            return Err(refuse(
                plan,
                format!(
                    "attempt {} reported {} files and {} rows, its manifests list {files} and {rows}",
                    result.attempt, result.files, result.rows
                ),
            ));
        }
        rows_copied += result.rows_copied;
    }
    Ok(rows_copied)
}

/// Why staged results are refused.
fn refuse(plan: &LoadPlan, detail: String) -> FloeError {
    FloeError::StagedFiles {
        table: plan.table.clone(),
        detail,
    }
}

/// Checks one manifest of `attempt` (in the table's metadata folder, the load's schema and
/// spec, only new Parquet data files of the attempt that exist) and adds its files to the
/// load: how many files and rows it lists.
async fn adopt_manifest(
    session: &mut LoadSession<'_>,
    plan: &LoadPlan,
    attempt: &str,
    path: &str,
) -> Result<(u64, u64)> {
    let schema_id = session.schema().schema_id();
    let spec_id = session.metadata.default_partition_spec_id();
    let data_dir = plan.data_dir()?;
    if !path.starts_with(&plan.metadata_dir()) {
        return Err(refuse(
            plan,
            format!("manifest {path} is not in the table's metadata folder"),
        ));
    }
    let manifest = read_manifest(session, path).await?;
    let meta = manifest.metadata();
    if meta.schema_id() != schema_id
        || meta.partition_spec().spec_id() != spec_id
        || *meta.content() != ManifestContentType::Data
    {
        return Err(refuse(
            plan,
            format!(
                "manifest {path} lists data of schema {} and spec {}, the load writes schema {schema_id} and spec {spec_id}",
                meta.schema_id(),
                meta.partition_spec().spec_id()
            ),
        ));
    }
    let (mut files, mut rows) = (0u64, 0u64);
    for entry in manifest.entries() {
        let file = entry.data_file();
        let path = file.file_path();
        let ours = path.starts_with(&data_dir)
            && path[data_dir.len()..].contains(attempt)
            && !path[data_dir.len()..].contains("..");
        if entry.status() != ManifestStatus::Added
            || file.content_type() != DataContentType::Data
            || file.file_format() != DataFileFormat::Parquet
            || !ours
        {
            return Err(refuse(
                plan,
                format!(
                    "{path} is not a new Parquet data file of attempt {attempt} under {data_dir}"
                ),
            ));
        }
        let present = session
            .base
            .file_io
            .exists(path)
            .await
            .context(|| format!("cannot check staged file {path}"))?;
        if !present {
            return Err(refuse(plan, format!("{path} does not exist")));
        }
        session.ledger.record(path);
        files += 1;
        rows += file.record_count();
        session.added.lock().await.add(file.clone()).await?;
    }
    Ok((files, rows))
}

async fn read_manifest(session: &LoadSession<'_>, path: &str) -> Result<Manifest> {
    let context = || format!("cannot read staged manifest {path}");
    let input = session.base.file_io.new_input(path).context(context)?;
    let bytes = input.read().await.context(context)?;
    Manifest::parse_avro(&bytes).context(|| format!("staged manifest {path} is not a manifest"))
}
