//! Merge: upsert, insert-only, delete-insert and hard deletes by key, in one snapshot.
//!
//! The load's keys are sorted (spilling past the memory limit), the key columns of the table's
//! candidate files (pruned by key bounds) are sorted likewise, and one streaming sort-merge join
//! decides every row. The winning load rows are then written in input order: Parquet inputs are
//! read a second time (the first read decoded only the key columns), and when every row wins
//! their column chunks are copied as an append would; other sources' rows wait in a spill queue. Matched table rows leave by copy-on-write (files rewritten without them) or
//! merge-on-read (position-delete files). A merge that matches nothing commits an `append`
//! snapshot, anything else one `overwrite` snapshot.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use arrow_array::{BooleanArray, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef};
use arrow_select::filter::filter_record_batch;
use futures::StreamExt;
use iceberg::TableIdent;
use iceberg::spec::FormatVersion;
use roaring::RoaringTreemap;
use std::sync::Arc;
use uuid::Uuid;

use super::pipeline::{Prepared, Ready, finish, load_writers, prepare, splicing_allowed};
use super::{LoadOptions, LoadSummary};
use crate::catalog::Catalog;
use crate::commit::{AddedDelete, AddedFiles, FileChanges, SnapshotOperation, commit_load};
use crate::conform::Conformer;
use crate::error::{FloeError, Result, ResultExt};
use crate::merge::position_deletes::PositionDeleteWriter;
use crate::merge::table_files::{DataFileReader, LiveFile, live_state};
use crate::merge::{
    DuplicateKeys, JoinSink, KeyColumns, LoadSide, MergeCounts, MergeMode, MergeSpec,
    MergeStrategy, PartitionFilter, TableSide, join,
};
use crate::progress::Progress;
use crate::source::{BatchBudget, ParquetSource, Source};
use crate::spill::ExternalSorter;
use crate::spill::QueueStream;
use crate::write::splice::{SplicePlanner, SplicingWriter};
use crate::write::{FileSettings, ParallelWriter};

/// Writes the queued load rows whose input position is in `winners`.
async fn write_winners(
    queue: QueueStream,
    winners: &RoaringTreemap,
    writer: &mut ParallelWriter,
) -> Result<()> {
    let mut seq = 0u64;
    for batch in queue {
        write_selected(batch?, &mut seq, Some(winners), writer).await?;
    }
    Ok(())
}

/// Reads the input files again and writes the rows whose position is in `winners` (every row
/// when `None`).
async fn read_winners(
    files: &[PathBuf],
    budget: BatchBudget,
    conformer: &Conformer,
    winners: Option<&RoaringTreemap>,
    writer: &mut ParallelWriter,
) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    // The first pass counted the input; this one reports nothing.
    let mut stream = ParquetSource::from_files(files.to_vec())
        .with_budget(budget)
        .into_source(Arc::new(Progress::default()))?
        .into_stream();
    let mut seq = 0u64;
    while let Some(item) = stream.next().await {
        let batch = conformer.conform(&item?)?;
        write_selected(batch, &mut seq, winners, writer).await?;
    }
    Ok(())
}

/// Writes the rows of `batch` (input positions from `*seq` on) that are in `winners`.
async fn write_selected(
    batch: RecordBatch,
    seq: &mut u64,
    winners: Option<&RoaringTreemap>,
    writer: &mut ParallelWriter,
) -> Result<()> {
    let n = batch.num_rows() as u64;
    let range = *seq..*seq + n;
    *seq += n;
    let Some(winners) = winners else {
        return writer.write(batch).await;
    };
    match winners.range_cardinality(range.clone()) {
        0 => Ok(()),
        c if c == n => writer.write(batch).await,
        _ => {
            let keep = BooleanArray::from_iter(range.map(|s| Some(winners.contains(s))));
            let kept = filter_record_batch(&batch, &keep)
                .context(|| "cannot select the rows to write".into())?;
            writer.write(kept).await
        }
    }
}

/// Size and modification time of each input, to notice a file changing between two reads.
fn fingerprint(files: &[PathBuf]) -> Result<Vec<(u64, Option<SystemTime>)>> {
    files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f).map_err(|e| FloeError::InputRead {
                path: f.clone(),
                row_group: None,
                reason: e.to_string(),
            })?;
            Ok((meta.len(), meta.modified().ok()))
        })
        .collect()
}

/// Default memory the merge's sorts may use together before spilling to disk.
pub const DEFAULT_MEMORY_LIMIT: usize = 256 * 1024 * 1024;
const READ_BATCH_ROWS: usize = 16384;

/// Builder for a merge load.
pub struct MergeBuilder<'a> {
    catalog: &'a Catalog,
    table: TableIdent,
    options: LoadOptions,
    spec: MergeSpec,
}

impl<'a> MergeBuilder<'a> {
    pub fn new(catalog: &'a Catalog, table: TableIdent, keys: Vec<String>) -> Self {
        Self {
            catalog,
            table,
            options: LoadOptions::default(),
            spec: MergeSpec {
                keys,
                strategy: MergeStrategy::default(),
                mode: MergeMode::default(),
                hard_delete_column: None,
                duplicates: DuplicateKeys::default(),
                memory_limit: DEFAULT_MEMORY_LIMIT,
            },
        }
    }

    pub fn with_options(mut self, options: LoadOptions) -> Self {
        self.options = options;
        self
    }

    pub fn with_strategy(mut self, strategy: MergeStrategy) -> Self {
        self.spec.strategy = strategy;
        self
    }

    pub fn with_mode(mut self, mode: MergeMode) -> Self {
        self.spec.mode = mode;
        self
    }

    pub fn with_hard_delete_column(mut self, column: Option<String>) -> Self {
        self.spec.hard_delete_column = column;
        self
    }

    pub fn with_duplicates(mut self, duplicates: DuplicateKeys) -> Self {
        self.spec.duplicates = duplicates;
        self
    }

    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.spec.memory_limit = bytes;
        self
    }

    pub async fn execute(self, mut source: Source) -> Result<LoadSummary> {
        let started = Instant::now();
        let options = &self.options;
        let ready =
            match prepare(self.catalog, &self.table, &source.info(), options, "merge").await? {
                Prepared::Skipped(summary) => return Ok(finish(*summary, options, started)),
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
        if self.spec.mode == MergeMode::MergeOnRead
            && base.metadata.format_version() == FormatVersion::V1
        {
            return Err(FloeError::InvalidOption(format!(
                "table {table} is format v1, which has no delete files; use --merge-mode copy-on-write"
            )));
        }
        let schema = write_metadata.current_schema().clone();
        let keys = KeyColumns::resolve(&self.spec, &schema, &table)?;
        let settings = FileSettings::resolve(base.metadata.properties(), &options.write)?;
        let conformer = Conformer::new(&table, schema.clone())?;
        let load_uuid = Uuid::new_v4();
        let added = AddedFiles::new(&table, &write_metadata, base.file_io.clone())?.into_sink();
        // Inserted and rewritten rows encode on several cores, as in an append.
        let mut writer = load_writers(&table, &write_metadata, &base, &settings, options, &added)?;
        let spill_dir = options.write.spill_dir.clone();
        // Four buffers may be full at once: the load's key sort and row queue, the table's key
        // sort, the deletes' sort.
        let budget = self.spec.memory_limit / 4;

        // Parquet inputs are read twice instead of queueing the load's rows: once for the keys,
        // once for the rows that win (or their column chunks are copied, when every row wins).
        let input_files: Option<Vec<PathBuf>> = source.parquet_files().map(|f| f.to_vec());
        let batch_budget = source.batch_budget();
        let fingerprints = input_files.as_deref().map(fingerprint).transpose()?;
        // The first read then decodes only the columns the join needs.
        let (key_conformer, load_keys) = if input_files.is_some() {
            let needed = self.spec.columns();
            let fields = schema
                .as_struct()
                .fields()
                .iter()
                .filter(|f| needed.contains(&f.name))
                .cloned()
                .collect::<Vec<_>>();
            let projected = iceberg::spec::Schema::builder()
                .with_schema_id(schema.schema_id())
                .with_fields(fields)
                .build()
                .context(|| format!("table {table}: cannot project its schema"))?;
            source.project(needed);
            let keys = KeyColumns::resolve(&self.spec, &projected, &table)?;
            (Conformer::new(&table, Arc::new(projected))?, keys)
        } else {
            (conformer.clone(), keys.clone())
        };
        let mut rows_copied = 0u64;

        let mut delete_files: Vec<AddedDelete> = Vec::new();
        let outcome: Result<(MergeCounts, FileChanges)> = async {
            // 1. The load, sorted by key.
            let mut load = LoadSide::new(key_conformer.arrow_schema(), load_keys.clone(), budget, spill_dir.as_deref(), input_files.is_none())?;
            load.track_partitions(PartitionFilter::new(write_metadata.default_partition_spec(), &load_keys)?);
            let mut stream = source.into_stream();
            while let Some(item) = stream.next().await {
                let input = item?;
                options.progress.check_cancelled()?;
                let batch = key_conformer.conform(&input)?;
                load.push(batch, &input.origin)?;
            }
            let load_schema = load.schema().clone();
            let sorted_keys = load.sorted_keys().clone();
            let ranges = load.ranges().clone();
            let partition_filter = load.take_partition_filter();
            let load_rows = load.rows();
            let mut spill_runs = load.spilled_runs() as u64;
            let (sorted_load, load_queue) = load.finish()?;

            // 2. The table's keys, from files that may hold a load key.
            let may_hold_a_load_key = |f: &LiveFile| {
                ranges.may_match(&keys, &f.file)
                    && partition_filter.as_ref().is_none_or(|p| p.may_match(f.spec_id, f.file.partition()))
            };
            let mut live = if base.is_staged() || load_rows == 0 { Default::default() } else { live_state(&base, may_hold_a_load_key).await? };
            let candidates: Vec<LiveFile> = std::mem::take(&mut live.files);
            tracing::info!(table = %table, candidates = candidates.len(), "scanning candidate files' keys");
            let sorted_table = if candidates.is_empty() {
                None
            } else {
                let mut side = TableSide::new(conformer.arrow_schema(), &keys, budget, spill_dir.as_deref())?;
                for (idx, candidate) in candidates.iter().enumerate() {
                    let path = candidate.file.file_path();
                    let deleted = live.deleted.get(path);
                    let mut reader = DataFileReader::open(&base.file_io, path, &schema, Some(&keys.field_ids), READ_BATCH_ROWS).await?;
                    while let Some(item) = reader.next().await {
                        let (first, batch) = item?;
                        let positions = UInt64Array::from_iter_values(first..first + batch.num_rows() as u64);
                        let (columns, positions) = match deleted {
                            None => (batch.columns().to_vec(), positions),
                            Some(d) => {
                                let keep = BooleanArray::from_iter(positions.values().iter().map(|p| Some(!d.contains(*p))));
                                let kept = filter_record_batch(&batch, &keep).context(|| "cannot filter deleted rows".into())?;
                                let pos = arrow_select::filter::filter(&positions, &keep).context(|| "cannot filter deleted rows".into())?;
                                let pos = pos.as_any().downcast_ref::<UInt64Array>().expect("u64").clone();
                                (kept.columns().to_vec(), pos)
                            }
                        };
                        side.push(columns, idx as u32, positions)?;
                    }
                }
                spill_runs += side.spilled_runs() as u64;
                Some(side.finish()?)
            };

            // 3. The join: inserts are written as they come, deletes are collected by file.
            let deletes_schema: SchemaRef = Arc::new(ArrowSchema::new(vec![
                Field::new("file", DataType::UInt32, false),
                Field::new("pos", DataType::UInt64, false),
            ]));
            let mut sink = Sink {
                writer: &mut writer,
                inserts: RoaringTreemap::new(),
                deletes: ExternalSorter::new(deletes_schema.clone(), vec![0, 1], budget, spill_dir.as_deref())?,
                deletes_schema,
                delete_buffer: (Vec::new(), Vec::new()),
            };
            let mut counts = join(&self.spec, &sorted_keys, &load_schema, sorted_load, sorted_table, &mut sink)?;
            sink.flush_deletes()?;
            // The winning load rows, in input order.
            let inserts = std::mem::take(&mut sink.inserts);
            match load_queue {
                Some(queue) => write_winners(queue, &inserts, sink.writer).await?,
                None => {
                    let files = input_files.as_deref().expect("inputs are read again");
                    if Some(fingerprint(files)?) != fingerprints {
                        return Err(FloeError::InvalidOption(
                            "an input file changed while the merge was reading it".into(),
                        ));
                    }
                    let every_row = inserts.len() == load_rows;
                    let planner = SplicePlanner::new(conformer.arrow_schema().clone(), &settings)?;
                    let spliced = if every_row && splicing_allowed(&write_metadata, options) {
                        planner.select(files)?
                    } else {
                        Vec::new()
                    };
                    let taken: HashSet<&PathBuf> = spliced.iter().collect();
                    let rest: Vec<PathBuf> = files.iter().filter(|f| !taken.contains(f)).cloned().collect();
                    drop(taken);
                    let splicer = if spliced.is_empty() {
                        None
                    } else {
                        let writer = SplicingWriter::new(
                            &table,
                            &write_metadata,
                            &settings,
                            base.file_io.clone(),
                            &format!("{load_uuid}-copy"),
                            added.clone(),
                            Arc::new(Progress::default()),
                        )?;
                        Some(writer.with_budget(batch_budget).spawn(planner, spliced))
                    };
                    let winners = if every_row { None } else { Some(&inserts) };
                    let decoded = read_winners(&rest, batch_budget, &conformer, winners, sink.writer).await;
                    if let Some(task) = splicer {
                        if decoded.is_err() {
                            task.cancel();
                        }
                        let done = task.join().await;
                        rows_copied = done.rows;
                        if decoded.is_err() || done.result.is_err() {
                            super::pipeline::delete_files(&base.file_io, &done.started).await;
                        }
                        done.result?;
                    }
                    decoded?;
                }
            }
            let deletes = sink.deletes;
            counts.spill_runs = spill_runs + deletes.spilled_runs() as u64;

            // 4. Apply deletes file by file (sorted by file): one file's positions at a time.
            let delete_writer = match self.spec.mode {
                MergeMode::MergeOnRead => Some(PositionDeleteWriter::new(
                    &table,
                    &write_metadata,
                    base.file_io.clone(),
                    load_uuid,
                    settings.writer_properties.clone(),
                )?),
                MergeMode::CopyOnWrite => None,
            };
            let mut apply = ApplyDeletes {
                candidates: &candidates,
                already_deleted: &live.deleted,
                schema: &schema,
                file_io: &base.file_io,
                delete_writer: delete_writer.as_ref(),
                removed: HashSet::new(),
                delete_files: &mut delete_files,
                counts: &mut counts,
            };
            let mut current: Option<(u32, RoaringTreemap)> = None;
            for batch in deletes.finish()? {
                let batch = batch?;
                let files = batch.column(0).as_any().downcast_ref::<UInt32Array>().expect("u32");
                let positions = batch.column(1).as_any().downcast_ref::<UInt64Array>().expect("u64");
                for i in 0..batch.num_rows() {
                    let file = files.value(i);
                    if current.as_ref().is_none_or(|(f, _)| *f != file) {
                        if let Some((done, positions)) = current.take() {
                            apply.file(done, &positions, sink.writer).await?;
                        }
                        current = Some((file, RoaringTreemap::new()));
                    }
                    current.as_mut().expect("group").1.insert(positions.value(i));
                }
            }
            if let Some((done, positions)) = current.take() {
                apply.file(done, &positions, sink.writer).await?;
            }
            let removed = std::mem::take(&mut apply.removed);
            writer.close().await?;
            let changes = FileChanges {
                added: added.lock().await.finish().await?,
                added_deletes: delete_files.clone(),
                removed,
            };
            Ok((counts, changes))
        }
        .await;

        let (counts, changes) = match outcome {
            Ok(v) => v,
            Err(e) => {
                writer.abort().await;
                let mut added = added.lock().await;
                super::pipeline::delete_files(&base.file_io, added.paths()).await;
                added.discard().await;
                delete_files_of(&base.file_io, &delete_files).await;
                return Err(e);
            }
        };
        options
            .progress
            .add_files_written(changes.added.files() + changes.added_deletes.len() as u64);
        summary.rows_copied = rows_copied;
        summary.rows_written = changes.added.rows;
        summary.files_added = changes.added.files();
        summary.bytes_written = changes.added.bytes
            + changes
                .added_deletes
                .iter()
                .map(|d| d.file.file_size_in_bytes())
                .sum::<u64>();
        if changes.is_empty() {
            summary.table_created = false;
            summary.merge = Some(counts);
            summary.message =
                format!("the merge changes nothing in {table}; no snapshot committed");
            return Ok(finish(summary, options, started));
        }
        let committed = match commit_load(
            self.catalog,
            base.clone(),
            &load_id,
            SnapshotOperation::RowDelta,
            changes.clone(),
            schema_change,
            options.max_commit_attempts,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                if !e.keeps_written_files() {
                    super::pipeline::delete_files(&base.file_io, &changes.added.paths).await;
                    delete_files_of(&base.file_io, &changes.added_deletes).await;
                }
                return Err(e);
            }
        };
        if committed.already_committed {
            super::pipeline::delete_files(&base.file_io, &changes.added.paths).await;
            delete_files_of(&base.file_io, &changes.added_deletes).await;
            summary.skipped = true;
            summary.snapshot_id = Some(committed.snapshot_id);
            summary.rows_written = 0;
            summary.files_added = 0;
            summary.message =
                format!("load id {load_id} was committed concurrently; nothing changed");
            return Ok(finish(summary, options, started));
        }
        summary.snapshot_id = Some(committed.snapshot_id);
        summary.schema_id = Some(committed.schema_id);
        summary.operation = Some(committed.operation.clone());
        summary.commit_attempts = committed.attempts;
        summary.metadata_location = Some(committed.metadata_location.clone());
        summary.files_removed = committed.files_removed;
        summary.rows_removed = committed.rows_removed;
        summary.message = format!(
            "merged into {table}: {} inserted, {} updated, {} deleted; {} files rewritten, {} delete files (snapshot {}, {})",
            counts.rows_inserted,
            counts.rows_updated,
            counts.rows_deleted,
            counts.files_rewritten,
            counts.delete_files_added,
            committed.snapshot_id,
            committed.operation
        );
        if !summary.schema_changes.is_empty() {
            summary.message = format!(
                "{}; schema: {}",
                summary.message,
                summary.schema_changes.join(", ")
            );
        }
        summary.merge = Some(counts);
        Ok(finish(summary, options, started))
    }
}

async fn delete_files_of(file_io: &iceberg::io::FileIO, files: &[AddedDelete]) {
    let paths: Vec<String> = files
        .iter()
        .map(|d| d.file.file_path().to_string())
        .collect();
    super::pipeline::delete_files(file_io, &paths).await;
}

/// Applies the deletes of one data file at a time.
struct ApplyDeletes<'a> {
    candidates: &'a [LiveFile],
    already_deleted: &'a std::collections::HashMap<String, RoaringTreemap>,
    schema: &'a iceberg::spec::Schema,
    file_io: &'a iceberg::io::FileIO,
    delete_writer: Option<&'a PositionDeleteWriter>,
    removed: HashSet<String>,
    delete_files: &'a mut Vec<AddedDelete>,
    counts: &'a mut MergeCounts,
}

impl ApplyDeletes<'_> {
    async fn file(
        &mut self,
        file: u32,
        positions: &RoaringTreemap,
        writer: &mut ParallelWriter,
    ) -> Result<()> {
        let target = &self.candidates[file as usize];
        let path = target.file.file_path();
        if let Some(deletes) = self.delete_writer {
            let files = deletes.write(target, positions).await?;
            self.counts.delete_files_added += files.len() as u64;
            self.delete_files
                .extend(files.into_iter().map(|file| AddedDelete {
                    spec_id: target.spec_id,
                    file,
                }));
            return Ok(());
        }
        // Copy-on-write: the file again, without the deleted rows (old and new).
        let old = self.already_deleted.get(path);
        let mut reader =
            DataFileReader::open(self.file_io, path, self.schema, None, READ_BATCH_ROWS).await?;
        while let Some(item) = reader.next().await {
            let (first, batch) = item?;
            let keep = BooleanArray::from_iter(
                (first..first + batch.num_rows() as u64)
                    .map(|p| Some(!positions.contains(p) && !old.is_some_and(|d| d.contains(p)))),
            );
            let kept =
                filter_record_batch(&batch, &keep).context(|| format!("cannot rewrite {path}"))?;
            if kept.num_rows() > 0 {
                writer.write(kept).await?;
            }
        }
        self.removed.insert(path.to_string());
        self.counts.files_rewritten += 1;
        Ok(())
    }
}

struct Sink<'w> {
    writer: &'w mut ParallelWriter,
    /// Input positions of the load rows to write.
    inserts: RoaringTreemap,
    deletes: ExternalSorter,
    deletes_schema: SchemaRef,
    delete_buffer: (Vec<u32>, Vec<u64>),
}

impl Sink<'_> {
    fn flush_deletes(&mut self) -> Result<()> {
        if self.delete_buffer.0.is_empty() {
            return Ok(());
        }
        let (files, positions) = std::mem::take(&mut self.delete_buffer);
        let batch = RecordBatch::try_new(
            self.deletes_schema.clone(),
            vec![
                Arc::new(UInt32Array::from(files)),
                Arc::new(UInt64Array::from(positions)),
            ],
        )
        .context(|| "cannot collect deletes".into())?;
        self.deletes.push(batch)
    }
}

impl JoinSink for Sink<'_> {
    fn insert(&mut self, seq: u64) -> Result<()> {
        self.inserts.insert(seq);
        Ok(())
    }

    fn delete(&mut self, file: u32, pos: u64) -> Result<()> {
        self.delete_buffer.0.push(file);
        self.delete_buffer.1.push(pos);
        if self.delete_buffer.0.len() >= 65536 {
            self.flush_deletes()?;
        }
        Ok(())
    }
}
