//! Merge: upsert, insert-only, delete-insert and hard deletes by key, in one snapshot.
//!
//! The builder drives one `LoadSession` through the merge engine (`crate::merge`):
//!
//! 1. the load's keys are sorted (spilling past the memory limit); Parquet inputs decode only
//!    the join's columns, other sources queue their rows in input order; keys that only
//!    delete and the only keys rows may have join the sort, marked;
//! 2. the table's candidate files (pruned by key bounds and partition values) give their key
//!    columns, sorted likewise;
//! 3. one streaming sort-merge join decides every row;
//! 4. the winning load rows are written in input order: Parquet inputs are read a second time
//!    (checked unchanged), and when every row wins their column chunks are copied as an append
//!    would; other sources' rows come back from the queue;
//! 5. matched table rows leave by copy-on-write (files rewritten without them) or merge-on-read
//!    (position-delete files);
//! 6. the session commits: an `append` snapshot when nothing was matched, else `overwrite`.

use std::path::PathBuf;
use std::sync::Arc;

use iceberg::TableIdent;
use iceberg::spec::{DataFile, FormatVersion};

use super::session::{LoadSession, Opened, Written};
use super::{LoadOptions, LoadSummary};
use crate::catalog::Catalog;
use crate::commit::{FileChanges, LoadOperation};
use crate::conform::Conformer;
use crate::error::{FloeError, Result};
use crate::merge::candidates::CandidateFiles;
use crate::merge::position_deletes::PositionDeleteWriter;
use crate::merge::table_files::{LiveState, live_state, project_schema};
use crate::merge::{
    DeleteCollector, DeleteTargets, DuplicateKeys, Fingerprints, KeyColumns, KeyMarkers, LoadSide,
    Marker, MergeCounts, MergeMode, MergeSpec, MergeStrategy, PartitionFilter, TableSide,
    apply_deletes, join, read_winners, scan_candidates, write_winners,
};
use crate::progress::{Progress, Stage};
use crate::source::{BatchBudget, Source};
use crate::spill::SortedStream;

/// Default memory the merge's sorts may use together before spilling to disk.
pub const DEFAULT_MEMORY_LIMIT: usize = 256 * 1024 * 1024;

/// Each sort's share of a merge's memory limit: four buffers may be full at once (the load's
/// key sort and row queue, the table's key sort, the deletes' sort; then, while matched
/// files are rewritten, the deletes' stream, the row queue and the partition clustering).
fn sort_budget(memory_limit: usize) -> usize {
    memory_limit / 4
}

/// Builder for a merge load.
pub struct MergeBuilder<'a> {
    catalog: &'a Catalog,
    table: TableIdent,
    options: LoadOptions,
    spec: MergeSpec,
    delete_keys: Option<Source>,
    only_keys: Option<Source>,
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
            delete_keys: None,
            only_keys: None,
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

    /// Keys whose table rows are deleted before the load merges (`source` holds the key
    /// columns only). No row is written for them; a key the load also has is then inserted
    /// (upsert, insert-only) or its load rows are (delete-insert).
    pub fn with_delete_keys(mut self, source: Option<Source>) -> Self {
        self.delete_keys = source;
        self
    }

    /// The only keys the load's rows may have (`source` holds the key columns only): rows
    /// with other keys are left out, as if the input had not held them.
    pub fn with_only_keys(mut self, source: Option<Source>) -> Self {
        self.only_keys = source;
        self
    }

    /// Merges `source` into the table by key; creates the table if missing (every row is then
    /// an insert).
    pub async fn execute(mut self, source: Source) -> Result<LoadSummary> {
        let info = source.info();
        let operation = LoadOperation::Merge;
        // The rows a copy-on-write rewrites into many partitions are clustered by a sort too.
        let sort_bytes = &mut self.options.write.cluster_sort_bytes;
        sort_bytes.get_or_insert(sort_budget(self.spec.memory_limit));
        match LoadSession::open(
            self.catalog,
            &self.table,
            Some(&info),
            &self.options,
            operation,
        )
        .await?
        {
            Opened::Skipped(summary) => Ok(*summary),
            Opened::Ready(mut session) => {
                let inputs = Inputs {
                    rows: source,
                    delete_keys: self.delete_keys,
                    only_keys: self.only_keys,
                };
                let written = merge_into(&mut session, &self.spec, inputs).await;
                session.commit(self.catalog, written).await
            }
        }
    }
}

/// What a merge reads: the load's rows, keys that only delete, the only keys rows may have.
struct Inputs {
    rows: Source,
    delete_keys: Option<Source>,
    only_keys: Option<Source>,
}

/// Steps 1 to 5: everything the merge writes, ready for the commit.
async fn merge_into(
    session: &mut LoadSession<'_>,
    spec: &MergeSpec,
    mut inputs: Inputs,
) -> Result<Written> {
    refuse_unsupported(session, spec)?;
    let keys = KeyColumns::resolve(spec, session.schema(), &session.table)?;
    let budget = sort_budget(spec.memory_limit);
    let reread = ReRead::plan(session, spec, &mut inputs.rows)?;
    let load = sort_load(session, inputs, &keys, reread.as_ref(), budget).await?;
    let load_rows = load.rows();
    let mut spill_runs = load.spilled_runs() as u64;
    let live = find_candidates(session, &keys, &load).await?;
    let (load_keys, load_schema) = (load.sorted_keys().clone(), load.schema().clone());
    let (sorted_load, queue) = load.finish()?;
    let sorted_table = sort_candidates(session, &keys, &live, budget, &mut spill_runs).await?;
    let spill_dir = session.options.write.spill_dir.clone();
    let mut decisions = DeleteCollector::new(budget, spill_dir.as_deref())?;
    let mut counts = join(
        spec,
        &load_keys,
        &load_schema,
        sorted_load,
        sorted_table,
        &mut decisions,
    )?;
    let (inserts, deletes, spilled) = decisions.finish()?;
    counts.spill_runs = spill_runs + spilled as u64;
    let rows_copied = match (queue, reread) {
        (Some(queue), _) => write_winners(queue, &inserts, &mut session.writer)
            .await
            .map(|_| 0)?,
        (None, Some(reread)) => reread.write(session, &inserts, load_rows).await?,
        (None, None) => unreachable!("a load without a row queue reads its inputs again"),
    };
    let (removed, added_deletes) =
        remove_matched(session, spec, &live, deletes, &mut counts).await?;
    let added = session.close_files().await?;
    // Rows rewritten into many partitions went through the clustering sort.
    counts.spill_runs += session.writer.spilled_runs() as u64;
    let changes = FileChanges {
        added,
        added_deletes,
        removed,
    };
    Ok(Written {
        changes,
        rows_copied,
        merge: Some(counts),
    })
}

/// A merge-on-read needs delete files, which format v1 does not have.
fn refuse_unsupported(session: &LoadSession<'_>, spec: &MergeSpec) -> Result<()> {
    if spec.mode == MergeMode::MergeOnRead
        && session.base.metadata.format_version() == FormatVersion::V1
    {
        return Err(FloeError::UnsupportedTable {
            table: session.table.clone(),
            detail: "it is format v1, which has no delete files; use --merge-mode copy-on-write"
                .into(),
        });
    }
    Ok(())
}

/// Parquet inputs are read twice instead of queueing the load's rows: once for the join's
/// columns, once for the rows that win.
struct ReRead {
    files: Vec<PathBuf>,
    budget: BatchBudget,
    fingerprints: Fingerprints,
    /// Conforms the first read, which decodes only the join's columns.
    key_conformer: Conformer,
    /// The key columns as positions in that projection.
    keys: KeyColumns,
}

impl ReRead {
    /// `None` for sources that cannot be read again (their rows are queued instead).
    fn plan(
        session: &LoadSession<'_>,
        spec: &MergeSpec,
        source: &mut Source,
    ) -> Result<Option<Self>> {
        let Some(files) = source.parquet_files().map(<[PathBuf]>::to_vec) else {
            return Ok(None);
        };
        let (table, schema) = (&session.table, session.schema());
        let needed = spec.columns();
        let projected = project(schema, &needed)?;
        let fingerprints = Fingerprints::take(&files)?;
        source.project(needed);
        Ok(Some(Self {
            budget: source.batch_budget(),
            fingerprints,
            keys: KeyColumns::resolve(spec, &projected, table)?,
            key_conformer: Conformer::new(table, Arc::new(projected))?,
            files,
        }))
    }

    /// Step 4 for Parquet inputs: the winners read again (unchanged inputs only), or every
    /// row's column chunks copied where they can be. Returns the rows copied.
    async fn write(
        self,
        session: &mut LoadSession<'_>,
        inserts: &roaring::RoaringTreemap,
        load_rows: u64,
    ) -> Result<u64> {
        self.fingerprints.check(&self.files)?;
        let every_row = inserts.len() == load_rows;
        let (copy, rest) = if every_row {
            session.start_copy(&self.files, self.budget, Arc::new(Progress::default()))?
        } else {
            (None, self.files.clone())
        };
        let winners = (!every_row).then_some(inserts);
        let decoded = read_winners(
            &rest,
            self.budget,
            &session.conformer,
            winners,
            &mut session.writer,
        )
        .await;
        let Some(task) = copy else {
            return decoded.map(|_| 0);
        };
        if decoded.is_err() {
            task.cancel();
        }
        let done = task.join().await;
        decoded.and(done.result)?;
        Ok(done.rows)
    }
}

/// The table's schema with only the columns `names` (in the table's order).
fn project(schema: &iceberg::spec::Schema, names: &[String]) -> Result<iceberg::spec::Schema> {
    let ids: Vec<i32> = schema
        .as_struct()
        .fields()
        .iter()
        .filter(|f| names.contains(&f.name))
        .map(|f| f.id)
        .collect();
    project_schema(schema, &ids)
}

/// Step 1: the load's keys, sorted; its rows queued unless they can be read again. Keys
/// that only delete, and the only keys rows may have, join the sort after the rows.
async fn sort_load(
    session: &LoadSession<'_>,
    inputs: Inputs,
    keys: &KeyColumns,
    reread: Option<&ReRead>,
    budget: usize,
) -> Result<LoadSide> {
    use futures::StreamExt;
    let (conformer, keys) = match reread {
        Some(r) => (&r.key_conformer, &r.keys),
        None => (&session.conformer, keys),
    };
    let spill_dir = session.options.write.spill_dir.as_deref();
    let mut load = LoadSide::new(
        conformer.arrow_schema(),
        keys.clone(),
        budget,
        spill_dir,
        reread.is_none(),
        KeyMarkers {
            delete: inputs.delete_keys.is_some(),
            only: inputs.only_keys.is_some(),
        },
    )?;
    load.track_partitions(PartitionFilter::new(
        session.metadata.default_partition_spec(),
        keys,
    )?);
    let mut stream = inputs
        .rows
        .into_table_stream(Some(conformer.arrow_schema().clone()));
    while let Some(item) = stream.next().await {
        let input = item?;
        session.options.progress.check_cancelled()?;
        load.push(conformer.conform(&input)?, &input.origin)?;
    }
    for (marked, marker) in [
        (inputs.delete_keys, Marker::Delete),
        (inputs.only_keys, Marker::Only),
    ] {
        if let Some(source) = marked {
            sort_marked_keys(session, source, keys, &mut load, marker).await?;
        }
    }
    Ok(load)
}

/// Step 1b: marked keys, conformed to the key columns' types (the source may hold no other
/// column).
async fn sort_marked_keys(
    session: &LoadSession<'_>,
    source: Source,
    keys: &KeyColumns,
    load: &mut LoadSide,
    marker: Marker,
) -> Result<()> {
    use futures::StreamExt;
    let table = &session.table;
    // The key columns alone, in the keys' order.
    let projected = Arc::new(project_schema(session.schema(), &keys.field_ids)?);
    let mut key_only = keys.clone();
    key_only.indices = (0..keys.field_ids.len()).collect();
    let conformer = Conformer::new(table, projected)?;
    let mut stream = source.into_table_stream(Some(conformer.arrow_schema().clone()));
    while let Some(item) = stream.next().await {
        let input = item?;
        session.options.progress.check_cancelled()?;
        let batch = conformer.conform(&input).map_err(|e| match e {
            FloeError::SchemaMismatch {
                origin,
                table,
                detail,
            } => FloeError::SchemaMismatch {
                origin,
                table,
                detail: format!(
                    "{detail} ({} keys hold the key columns only: {})",
                    match marker {
                        Marker::Delete => "delete",
                        Marker::Only => "only",
                    },
                    keys.names.join(", ")
                ),
            },
            other => other,
        })?;
        load.push_marked(&key_only, &batch, &input.origin, marker)?;
    }
    Ok(())
}

/// Step 2a: the table's live files that may hold a load key, and their deleted positions.
async fn find_candidates(
    session: &LoadSession<'_>,
    keys: &KeyColumns,
    load: &LoadSide,
) -> Result<LiveState<CandidateFiles>> {
    let spill_dir = session.options.write.spill_dir.as_deref();
    let candidates = CandidateFiles::new(spill_dir);
    if session.base.is_staged() || load.rows() + load.deleted_keys() == 0 {
        return Ok(LiveState::new(candidates, spill_dir));
    }
    let (ranges, partitions) = (load.ranges(), load.partition_filter());
    let may_hold_a_load_key = |f: &DataFile, spec_id: i32| {
        ranges.may_match(keys, f) && partitions.is_none_or(|p| p.may_match(spec_id, f.partition()))
    };
    let live = live_state(&session.base, may_hold_a_load_key, candidates, spill_dir).await?;
    tracing::info!(table = %session.table, candidates = live.files.len(), "scanning candidate files' keys");
    Ok(live)
}

/// Step 2b: the candidate files' keys, sorted (`None` without candidates).
async fn sort_candidates(
    session: &LoadSession<'_>,
    keys: &KeyColumns,
    live: &LiveState<CandidateFiles>,
    budget: usize,
    spill_runs: &mut u64,
) -> Result<Option<SortedStream>> {
    if live.files.is_empty() {
        return Ok(None);
    }
    let spill_dir = session.options.write.spill_dir.as_deref();
    let side = TableSide::new(session.conformer.arrow_schema(), keys, budget, spill_dir)?;
    let schema = session.schema();
    let progress = &session.options.progress;
    progress.enter(Stage::MatchingKeys, live.files.len() as u64);
    let (sorted, spilled) =
        scan_candidates(&session.base.file_io, live, schema, side, keys, progress).await?;
    *spill_runs += spilled as u64;
    Ok(Some(sorted))
}

/// Step 5: the matched table rows leave, by the merge's mode. Returns the data files removed
/// (copy-on-write) and the delete files added (merge-on-read).
async fn remove_matched(
    session: &mut LoadSession<'_>,
    spec: &MergeSpec,
    live: &LiveState<CandidateFiles>,
    deletes: SortedStream,
    counts: &mut MergeCounts,
) -> Result<(
    std::collections::HashSet<String>,
    Vec<crate::commit::AddedDelete>,
)> {
    let delete_writer = match spec.mode {
        MergeMode::MergeOnRead => Some(PositionDeleteWriter::new(
            &session.table,
            &session.metadata,
            session.base.file_io.clone(),
            session.file_prefix,
            session.settings.writer_properties.clone(),
            session.ledger.clone(),
        )?),
        MergeMode::CopyOnWrite => None,
    };
    let schema = session.schema().clone();
    session.options.progress.enter(Stage::ApplyingDeletes, 0);
    let targets = DeleteTargets {
        progress: &session.options.progress,
        candidates: &live.files,
        already_deleted: &live.deleted,
        schema: &schema,
        file_io: &session.base.file_io,
        delete_writer: delete_writer.as_ref(),
    };
    let applied = apply_deletes(deletes, &targets, &mut session.writer, counts).await?;
    Ok((applied.removed, applied.delete_files))
}
