//! Compact: the same rows in fewer, target-size files, in one `replace` snapshot.
//!
//! Each partition's small files and files with deletes are read back (deletes applied) through
//! the load's writers; the snapshot removes them and the position-delete files that reference
//! only them. Memory stays bounded: rows stream file by file, and the only per-file state is the
//! live files' entries. Another writer's append during the compaction survives (the commit
//! rebases over appends); a delete, merge or rewrite of the table meanwhile fails the compaction
//! cleanly instead of undoing it.

use std::collections::HashSet;

use iceberg::TableIdent;

use super::session::{LoadSession, Opened, Written};
use super::{LoadOptions, LoadSummary};
use crate::catalog::Catalog;
use crate::commit::{FileChanges, LoadOperation};
use crate::error::{FloeError, Result};
pub use crate::maintain::compact::PartitionMatch;
use crate::maintain::compact::{CompactPolicy, plan, rewrite_file};
use crate::merge::table_files::{LiveState, live_state};

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
    let live = live_state(&session.base, |f| {
        only.is_none_or(|m| {
            let spec = metadata.partition_spec_by_id(f.spec_id);
            m.matches(
                spec.map(|s| s.fields()).unwrap_or_default(),
                f.file.partition(),
            )
        })
    })
    .await?;
    let policy = CompactPolicy {
        target_file_size: session.settings.target_file_size,
        min_input_files,
    };
    let chosen = plan(&live, &policy);
    tracing::info!(table = %session.table, files = chosen.len(), live = live.files.len(), "compacting");
    let (removed, rows) = rewrite_chosen(session, &live, &chosen).await?;
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
        rows_copied: 0,
        merge: None,
    })
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
    let bytes = |i: &usize| live.files[*i].file.file_size_in_bytes();
    progress.set_input_bytes_total(chosen.iter().map(bytes).sum());
    let mut removed = HashSet::new();
    let mut rows = 0u64;
    for &i in chosen {
        progress.check_cancelled()?;
        let file = &live.files[i];
        let deleted = live.deleted.get(file.file.file_path());
        let io = &session.base.file_io;
        let read = rewrite_file(io, file, deleted, &schema, &mut session.writer).await?;
        rows += read;
        progress.add_input_file();
        progress.add_input_rows(read);
        progress.add_input_bytes(file.file.file_size_in_bytes());
        removed.insert(file.file.file_path().to_string());
    }
    Ok((removed, rows))
}
