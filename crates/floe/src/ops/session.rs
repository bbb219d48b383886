//! The load session: what every operation shares, from the table state it plans against to
//! the one commit that ends it.
//!
//! ```text
//!   LoadSession::open    table loaded or staged, load id checked, schema evolved,
//!        |               file settings, conformer, writers, one file ledger
//!        v
//!   the operation        writes through the session (conform -> writers; copy task),
//!        |               runs its own stages (a merge's join), closes the files
//!        v
//!   LoadSession::commit  Ok(Written): one snapshot (commit_load: retries, idempotency);
//!                        Err: nothing committed. The ledger keeps or deletes the files.
//! ```
//!
//! Every operation ends in [`LoadSession::commit`], which is the only place that decides what
//! becomes of the load's files ([`Fate`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use iceberg::TableIdent;
use iceberg::spec::{Schema, TableMetadataRef};
use uuid::Uuid;

use super::prepare::{Prepared, Ready, prepare};
use super::{LoadOptions, LoadSummary};
use crate::catalog::{Catalog, TableState};
use crate::commit::{
    AddedFiles, AddedFilesSink, AddedManifests, Committed, FileChanges, LoadOperation, commit_load,
};
use crate::conform::Conformer;
use crate::error::{FloeError, Result};
use crate::ledger::{Fate, FileLedger};
use crate::merge::MergeCounts;
use crate::progress::{Progress, Stage};
use crate::source::{BatchBudget, BatchStream, Source, SourceInfo};
use crate::write::splice::{SplicePlanner, SpliceTask, SplicingWriter};
use crate::write::{FileSettings, FileTarget, ParallelWriter, TableWriter};

/// One load in progress.
pub(crate) struct LoadSession<'a> {
    pub options: &'a LoadOptions,
    operation: LoadOperation,
    started: Instant,
    /// The table state the load is planned against.
    pub base: TableState,
    schema_change: Option<Schema>,
    /// `base` with the load's schema current: what conform and the writers use.
    pub metadata: TableMetadataRef,
    summary: LoadSummary,
    pub table: String,
    pub settings: FileSettings,
    pub conformer: Conformer,
    /// The added data files' manifests, filled as writers finish files.
    pub added: AddedFilesSink,
    pub writer: ParallelWriter,
    /// Every file the load writes.
    pub ledger: FileLedger,
    /// In every file name the load writes.
    pub file_prefix: Uuid,
}

/// What opening a session found.
pub(crate) enum Opened<'a> {
    /// The load id already landed: nothing to do; the summary says so.
    Skipped(Box<LoadSummary>),
    Ready(Box<LoadSession<'a>>),
}

/// What an operation wrote, handed to [`LoadSession::commit`].
pub(crate) struct Written {
    pub changes: FileChanges,
    /// Rows whose column chunks were copied instead of re-encoded.
    pub rows_copied: u64,
    /// A merge's counts.
    pub merge: Option<MergeCounts>,
}

impl Written {
    /// Data files only (append, replace).
    pub fn added(added: AddedManifests, rows_copied: u64) -> Self {
        Self {
            changes: FileChanges::added(added),
            rows_copied,
            merge: None,
        }
    }
}

impl<'a> LoadSession<'a> {
    /// Prepares a load of `operation` into `ident` and sets up its writers. Without a `source`
    /// (compaction) the table must exist.
    pub async fn open(
        catalog: &'a Catalog,
        ident: &TableIdent,
        source: Option<&SourceInfo>,
        options: &'a LoadOptions,
        operation: LoadOperation,
    ) -> Result<Opened<'a>> {
        let started = Instant::now();
        match prepare(catalog, ident, source, options, operation).await? {
            Prepared::Skipped(summary) => Ok(Opened::Skipped(Box::new(finish(
                *summary, options, started,
            )))),
            Prepared::Ready(ready) => Ok(Opened::Ready(Box::new(Self::start(
                *ready, options, operation, started,
            )?))),
        }
    }

    /// Sets up the writers of a prepared load (on the process that planned it, or on a
    /// worker of a distributed load, which never talks to the catalog).
    pub fn start(
        ready: Ready,
        options: &'a LoadOptions,
        operation: LoadOperation,
        started: Instant,
    ) -> Result<Self> {
        let Ready {
            base,
            schema_change,
            write_metadata: metadata,
            summary,
            table,
        } = ready;
        let settings = FileSettings::resolve(base.metadata.properties(), &options.write)?;
        let conformer = Conformer::new(&table, metadata.current_schema().clone())?;
        let ledger = FileLedger::default();
        let added =
            AddedFiles::new(&table, &metadata, base.file_io.clone(), ledger.clone())?.into_sink();
        let file_prefix = Uuid::new_v4();
        let writer = writers(
            &table,
            &metadata,
            &base,
            &settings,
            options,
            &conformer,
            &added,
            &ledger,
            file_prefix,
        )?;
        Ok(Self {
            options,
            operation,
            started,
            base,
            schema_change,
            metadata,
            summary,
            table,
            settings,
            conformer,
            added,
            writer,
            ledger,
            file_prefix,
        })
    }

    /// The schema the load writes with.
    pub fn schema(&self) -> &iceberg::spec::SchemaRef {
        self.metadata.current_schema()
    }

    /// Whether the load may copy input column chunks: into a table without partition fields,
    /// unless the load asked for encoding (an explicit level or row group size: copied chunks
    /// keep the input's).
    pub fn may_copy(&self) -> bool {
        let w = &self.options.write;
        !w.rewrite
            && w.compression_level.is_none()
            && w.row_group_bytes.is_none()
            && self.metadata.default_partition_spec().fields().is_empty()
    }

    /// Of `files`, those whose column chunks can be copied: they are copied on their own
    /// thread (the returned task) while the caller decodes the rest (returned) as usual.
    pub fn start_copy(
        &self,
        files: &[PathBuf],
        budget: BatchBudget,
        progress: Arc<Progress>,
    ) -> Result<(Option<SpliceTask>, Vec<PathBuf>)> {
        if !self.may_copy() {
            return Ok((None, files.to_vec()));
        }
        let planner = SplicePlanner::new(self.conformer.arrow_schema().clone(), &self.settings)?;
        let copied = planner.select(files)?;
        if copied.is_empty() {
            return Ok((None, files.to_vec()));
        }
        let taken: std::collections::HashSet<&Path> = copied.iter().map(PathBuf::as_path).collect();
        let rest = files
            .iter()
            .filter(|f| !taken.contains(f.as_path()))
            .cloned()
            .collect();
        let target = FileTarget::new(
            &self.table,
            &self.metadata,
            &self.settings,
            self.base.file_io.clone(),
            &format!("{}-copy", self.file_prefix),
            self.added.clone(),
            self.ledger.clone(),
        )?;
        let splicer = SplicingWriter::new(target, progress);
        Ok((
            Some(splicer.with_budget(budget).spawn(planner, copied)),
            rest,
        ))
    }

    /// Conforms and writes every batch of `stream`; stops at the first error (after asking
    /// `copy`, running beside it, to stop too).
    pub async fn write_stream(
        &mut self,
        mut stream: BatchStream,
        copy: Option<&SpliceTask>,
    ) -> Result<()> {
        while let Some(item) = stream.next().await {
            let written =
                match item.and_then(|i| self.options.progress.check_cancelled().map(|_| i)) {
                    Ok(input) => match self.conformer.conform(&input) {
                        Ok(batch) => self.writer.write(batch).await,
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
            if let Err(e) = written {
                if let Some(task) = copy {
                    task.cancel();
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes all of `source`: Parquet inputs whose column chunks can be copied are copied on
    /// their own thread while the rest decode and encode as usual.
    pub async fn write_source(&mut self, mut source: Source) -> Result<Written> {
        let progress = self.options.progress.clone();
        let copy = match source.parquet_files() {
            Some(files) => {
                let (task, rest) = self.start_copy(files, source.batch_budget(), progress)?;
                let rest: std::collections::HashSet<PathBuf> = rest.into_iter().collect();
                source.retain_files(|f| rest.contains(f));
                task
            }
            None => None,
        };
        let stream = source.into_table_stream(Some(self.conformer.arrow_schema().clone()));
        let written = self.write_stream(stream, copy.as_ref()).await;
        let rows_copied = match copy {
            Some(task) => {
                let done = task.join().await;
                written.and(done.result)?;
                done.rows
            }
            None => {
                written?;
                0
            }
        };
        Ok(Written::added(self.close_files().await?, rows_copied))
    }

    /// Closes the writers and the added-files manifests: the load's data files.
    pub async fn close_files(&mut self) -> Result<AddedManifests> {
        self.options.progress.enter(Stage::FinishingFiles, 0);
        self.writer.close().await?;
        self.added.lock().await.finish().await
    }

    /// Ends the load. `written` is what the operation wrote, or why it failed: on success its
    /// changes are committed as one snapshot (none if they change nothing); on any failure
    /// nothing is committed. Either way the ledger then keeps or deletes the load's files.
    pub async fn commit(
        mut self,
        catalog: &Catalog,
        written: Result<Written>,
    ) -> Result<LoadSummary> {
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                self.writer.abort().await;
                self.ledger
                    .settle(&self.base.file_io, Fate::after(&e))
                    .await;
                return Err(e);
            }
        };
        self.count(&written);
        let empty = written.changes.is_empty()
            && (self.operation != LoadOperation::Replace || self.base.is_staged());
        if empty {
            self.ledger.settle(&self.base.file_io, Fate::Delete).await;
            return Ok(self.nothing_to_commit(written.merge));
        }
        let file_io = self.base.file_io.clone();
        self.options.progress.enter(Stage::Committing, 0);
        let committed = commit_load(
            catalog,
            self.base.clone(),
            &self.summary.load_id,
            self.operation,
            written.changes,
            self.schema_change.take(),
            self.options.max_commit_attempts,
        )
        .await;
        let committed = match committed {
            Ok(c) => c,
            Err(e) => {
                self.ledger.settle(&file_io, Fate::after(&e)).await;
                return Err(e);
            }
        };
        let fate = if committed.already_committed {
            Fate::Delete
        } else {
            Fate::Keep
        };
        self.ledger.settle(&file_io, fate).await;
        Ok(self.landed(&committed, written.merge))
    }

    /// Ends a worker's share of a distributed load instead of committing: on success the files
    /// are handed over (the driver commits them, or discards them); on failure they are
    /// deleted.
    pub async fn hand_over(mut self, written: Result<Written>) -> Result<Written> {
        let failed = self.ledger.observer_failed();
        let written = written.and_then(|w| match failed {
            Some(reason) => Err(FloeError::TaskFailed {
                task: "the job's file ledger".into(),
                reason,
            }),
            None => Ok(w),
        });
        let file_io = self.base.file_io.clone();
        match written {
            Ok(w) => {
                self.ledger.settle(&file_io, Fate::Keep).await;
                Ok(w)
            }
            Err(e) => {
                self.writer.abort().await;
                self.ledger.settle(&file_io, Fate::after(&e)).await;
                Err(e)
            }
        }
    }

    /// Fills the summary's counts of what was written.
    fn count(&mut self, written: &Written) {
        let changes = &written.changes;
        let deletes = changes.added_deletes.len() as u64;
        self.options
            .progress
            .add_files_written(changes.added.files() + deletes);
        let s = &mut self.summary;
        s.rows_copied = written.rows_copied;
        s.rows_written = changes.added.rows;
        s.files_added = changes.added.files();
        s.bytes_written = changes.added.bytes
            + changes
                .added_deletes
                .iter()
                .map(|d| d.file.file_size_in_bytes())
                .sum::<u64>();
    }

    /// The summary of a load that has nothing to commit.
    fn nothing_to_commit(mut self, merge: Option<MergeCounts>) -> LoadSummary {
        let table = &self.table;
        let s = &mut self.summary;
        s.message = if self.operation == LoadOperation::Compact {
            format!(
                "nothing to compact in {table}: no partition has enough small files or files with deletes"
            )
        } else if merge.is_some() {
            format!("the merge changes nothing in {table}; no snapshot committed")
        } else if self.base.is_staged() {
            format!("the input has no rows; {table} does not exist and was not created")
        } else {
            format!("the input has no rows; nothing changed in {table}")
        };
        s.table_created = false;
        s.merge = merge;
        finish(self.summary, self.options, self.started)
    }

    /// The summary of a load whose commit returned.
    fn landed(mut self, committed: &Committed, merge: Option<MergeCounts>) -> LoadSummary {
        let s = &mut self.summary;
        s.snapshot_id = Some(committed.snapshot_id);
        s.schema_id = Some(committed.schema_id);
        s.commit_attempts = committed.attempts;
        s.metadata_location = Some(committed.metadata_location.clone());
        s.operation = committed.operation.clone();
        if committed.already_committed {
            // A concurrent run with the same load id won; our files are not referenced.
            s.skipped = true;
            s.table_created = false;
            s.schema_changes.clear();
            s.rows_written = 0;
            s.rows_copied = 0;
            s.files_added = 0;
            s.bytes_written = 0;
            s.message = format!(
                "load id {} was committed concurrently as snapshot {}; nothing changed",
                s.load_id, committed.snapshot_id
            );
            return finish(self.summary, self.options, self.started);
        }
        s.files_removed = committed.files_removed;
        s.rows_removed = committed.rows_removed;
        s.message = super::summary_message(s, &self.table, merge.as_ref(), committed.snapshot_id);
        s.merge = merge;
        finish(self.summary, self.options, self.started)
    }
}

/// Fills the summary fields every load reports at the end.
fn finish(mut s: LoadSummary, options: &LoadOptions, started: Instant) -> LoadSummary {
    let p = options.progress.snapshot();
    s.input_files = p.input_files;
    s.input_bytes = p.input_bytes;
    s.duration_ms = started.elapsed().as_millis() as u64;
    s
}

/// The data file writers of one load: for a table without partition fields one writer whose
/// columns encode in parallel, otherwise one (fanning out by partition).
#[allow(clippy::too_many_arguments)]
fn writers(
    table: &str,
    metadata: &TableMetadataRef,
    base: &TableState,
    settings: &FileSettings,
    options: &LoadOptions,
    conformer: &Conformer,
    added: &AddedFilesSink,
    ledger: &FileLedger,
    file_prefix: Uuid,
) -> Result<ParallelWriter> {
    if metadata.default_partition_spec().fields().is_empty() {
        let threads = options
            .write
            .writers
            .unwrap_or_else(parallel_writers)
            .clamp(1, 16);
        let target = FileTarget::new(
            table,
            metadata,
            settings,
            base.file_io.clone(),
            &format!("{file_prefix}-0"),
            added.clone(),
            ledger.clone(),
        )?;
        return ParallelWriter::columns(target, conformer.arrow_schema().clone(), threads);
    }
    let writer = TableWriter::new(
        table,
        metadata.clone(),
        base.file_io.clone(),
        &format!("{file_prefix}-0"),
        settings,
        added.clone(),
        ledger.clone(),
    )?;
    Ok(ParallelWriter::table(writer))
}

/// How many threads encode an unpartitioned load's columns: one per core, at most two
/// (beyond that the reader, not encoding, is the bottleneck).
fn parallel_writers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 2)
}
