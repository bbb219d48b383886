//! Compact: the same rows in fewer, target-size files, in one `replace` snapshot.
//!
//! Each partition's small files and files with deletes are read back (deletes applied) through
//! the load's writers; the snapshot removes them and the position-delete files that reference
//! only them. Memory stays bounded: rows stream file by file, and the only per-file state is the
//! live files' entries. Another writer's append during the compaction survives (the commit
//! rebases over appends); a delete, merge or rewrite of the table meanwhile fails the compaction
//! cleanly instead of undoing it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use iceberg::TableIdent;

use super::session::{LoadSession, Opened, Written};
use super::{LoadOptions, LoadSummary};
use crate::catalog::Catalog;
use crate::commit::{FileChanges, LoadOperation};
use crate::error::{FloeError, Result};
pub use crate::maintain::compact::PartitionMatch;
use crate::maintain::compact::{CompactPolicy, plan, rewrite_file};
use crate::merge::table_files::{LiveState, live_state};
use crate::source::BatchBudget;
use crate::write::splice::SpliceTask;

/// Java's `RewriteDataFiles` default for `min-input-files`.
pub const DEFAULT_MIN_INPUT_FILES: usize = 5;

/// Builder for `floe compact`.
pub struct CompactBuilder<'a> {
    catalog: &'a Catalog,
    table: TableIdent,
    options: LoadOptions,
    min_input_files: usize,
    only: Option<PartitionMatch>,
}

impl<'a> CompactBuilder<'a> {
    pub fn new(catalog: &'a Catalog, table: TableIdent) -> Self {
        Self {
            catalog,
            table,
            options: LoadOptions::default(),
            min_input_files: DEFAULT_MIN_INPUT_FILES,
            only: None,
        }
    }

    /// Only the partitions matching `filter` (`tenant=a, day=2026-12-01`: partition field names
    /// and values as `floe inspect --partitions` shows them).
    pub fn only_partitions(mut self, filter: PartitionMatch) -> Self {
        self.only = Some(filter);
        self
    }

    /// Load id, target file size (`write.target_file_size`), codec, commit attempts.
    pub fn with_options(mut self, options: LoadOptions) -> Self {
        self.options = options;
        self
    }

    /// Small files a partition needs before they are rewritten (files with deletes always are).
    pub fn min_input_files(mut self, n: usize) -> Self {
        self.min_input_files = n.max(1);
        self
    }

    pub async fn execute(mut self) -> Result<LoadSummary> {
        // One writer fills each file to the target size (parallel writers would each cut
        // their own, half-full files: what compaction is meant to remove).
        self.options.write.writers.get_or_insert(1);
        let operation = LoadOperation::Compact;
        match LoadSession::open(self.catalog, &self.table, None, &self.options, operation).await? {
            Opened::Skipped(summary) => Ok(*summary),
            Opened::Ready(mut session) => {
                let written = compact(&mut session, self.min_input_files, self.only.as_ref()).await;
                session.commit(self.catalog, written).await
            }
        }
    }
}

/// Rewrites the planned files through the session's writers.
async fn compact(
    session: &mut LoadSession<'_>,
    min_input_files: usize,
    only: Option<&PartitionMatch>,
) -> Result<Written> {
    if let Some(filter) = only {
        check_fields(session, filter)?;
    }
    let metadata = session.base.metadata.clone();
    let in_filter = |f: &iceberg::spec::DataFile, spec_id| {
        only.is_none_or(|m| {
            let spec = metadata.partition_spec_by_id(spec_id);
            m.matches(spec.map(|s| s.fields()).unwrap_or_default(), f.partition())
        })
    };
    let spill_dir = session.options.write.spill_dir.clone();
    let live = live_state(&session.base, in_filter, Vec::new(), spill_dir.as_deref()).await?;
    let policy = CompactPolicy {
        target_file_size: session.settings.target_file_size,
        min_input_files,
    };
    let chosen = plan(&live, &policy);
    tracing::info!(table = %session.table, files = chosen.len(), live = live.files.len(), "compacting");
    let (copy, rest) = start_copy(session, &live, &chosen)?;
    let rewritten = rewrite_chosen(session, &live, &rest).await;
    let copied = finish_copy(copy, rewritten.is_err()).await;
    let (mut removed, mut rows) = rewritten?;
    let (rows_copied, copied) = copied?;
    rows += rows_copied;
    removed.extend(copied);
    let added = session.close_files().await?;
    if added.rows != rows {
        return Err(FloeError::TaskFailed {
            task: "the compaction's writers".into(),
            reason: format!("{rows} rows were read but {} written", added.rows),
        });
    }
    Ok(Written {
        changes: FileChanges {
            added,
            added_deletes: Vec::new(),
            removed,
        },
        rows_copied,
        merge: None,
    })
}

/// Waits for the copy task (asking it to stop first when the rewrite beside it failed);
/// returns the rows it copied and the table paths it took.
async fn finish_copy(
    copy: Option<(SpliceTask, Vec<String>)>,
    stop: bool,
) -> Result<(u64, Vec<String>)> {
    let Some((task, copied)) = copy else {
        return Ok((0, Vec::new()));
    };
    if stop {
        task.cancel();
    }
    let done = task.join().await;
    done.result.map(|()| (done.rows, copied))
}

/// The chosen files whose column chunks can be copied instead of decoded (local files without
/// deletes whose row groups are large enough, in a table the copy path writes): their copy
/// starts on its own thread. Returns the copy task with the table paths it takes, and the
/// chosen files left to rewrite.
#[allow(clippy::type_complexity)]
fn start_copy(
    session: &LoadSession<'_>,
    live: &LiveState,
    chosen: &[usize],
) -> Result<(Option<(SpliceTask, Vec<String>)>, Vec<usize>)> {
    let local = |i: &usize| {
        let path = live.files[*i].path.as_str();
        let plain = !live.deleted.contains(path);
        let local = path.strip_prefix("file://").filter(|_| plain)?;
        Some((PathBuf::from(local), *i))
    };
    let candidates: HashMap<PathBuf, usize> = chosen.iter().filter_map(local).collect();
    if candidates.is_empty() || !session.may_copy() {
        return Ok((None, chosen.to_vec()));
    }
    let files: Vec<PathBuf> = chosen.iter().filter_map(local).map(|(p, _)| p).collect();
    let progress = session.options.progress.clone();
    let (task, decode) = session.start_copy(&files, BatchBudget::default(), progress)?;
    let Some(task) = task else {
        return Ok((None, chosen.to_vec()));
    };
    let decode: HashSet<PathBuf> = decode.into_iter().collect();
    let copied: Vec<String> = candidates
        .iter()
        .filter(|(p, _)| !decode.contains(*p))
        .map(|(_, i)| live.files[*i].path.as_str().to_string())
        .collect();
    let taken: HashSet<&str> = copied.iter().map(String::as_str).collect();
    let rest = chosen
        .iter()
        .copied()
        .filter(|i| !taken.contains(live.files[*i].path.as_str()))
        .collect();
    Ok((Some((task, copied)), rest))
}

/// A `--where` naming a field no partition spec of the table has is a mistake, not "nothing".
fn check_fields(session: &LoadSession<'_>, filter: &PartitionMatch) -> Result<()> {
    let known: HashSet<&str> = session
        .base
        .metadata
        .partition_specs_iter()
        .flat_map(|s| s.fields().iter().map(|f| f.name.as_str()))
        .collect();
    match filter.names().find(|n| !known.contains(n)) {
        Some(name) => Err(FloeError::InvalidOption(format!(
            "--where: table {} has no partition field '{name}' (its fields: {})",
            session.table,
            known.into_iter().collect::<Vec<_>>().join(", ")
        ))),
        None => Ok(()),
    }
}

/// Rewrites the `chosen` files of `live` through the session's writers (reporting progress as
/// a load does); returns their paths and the rows written.
async fn rewrite_chosen(
    session: &mut LoadSession<'_>,
    live: &LiveState,
    chosen: &[usize],
) -> Result<(HashSet<String>, u64)> {
    let schema = session.schema().clone();
    let progress = session.options.progress.clone();
    let bytes = |i: &usize| live.files[*i].size;
    progress.set_input_bytes_total(chosen.iter().map(bytes).sum());
    let mut removed = HashSet::new();
    let mut rows = 0u64;
    for &i in chosen {
        progress.check_cancelled()?;
        let file = &live.files[i];
        let deleted = live.deleted.get(&file.path)?;
        let io = &session.base.file_io;
        let read = rewrite_file(io, file, deleted.as_ref(), &schema, &mut session.writer).await?;
        rows += read;
        progress.add_input_file();
        progress.add_input_rows(read);
        progress.add_input_bytes(file.size);
        removed.insert(file.path.clone());
    }
    Ok((removed, rows))
}
