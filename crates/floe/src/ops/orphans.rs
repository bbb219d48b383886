//! Remove orphans: delete the files under a table's location that no metadata references and
//! that are older than a threshold (default 3 days, as Java's `DeleteOrphanFiles`): what
//! crashed loads, killed compactions or interrupted expires leave behind. Files newer than the
//! threshold are never touched (a load may be writing them); `dry_run` lists and deletes
//! nothing. Works on local tables and on S3.

use std::time::Instant;

use futures::FutureExt;
use futures::future::BoxFuture;
use iceberg::TableIdent;
use serde::Serialize;

use crate::catalog::{Catalog, display_ident};
use crate::error::Result;
use crate::maintain::expire::now_ms;
use crate::maintain::orphans::OrphanSink;
pub use crate::maintain::orphans::{Orphan, OrphanCounts};

/// Java's default: files younger than three days are never orphans.
pub const DEFAULT_ORPHAN_AGE_MS: i64 = 3 * 24 * 3600 * 1000;

/// Told about every orphan deleted (or, in a dry run, that would be).
pub type OrphanListener = Box<dyn FnMut(&Orphan) + Send>;

/// What a removal did (the CLI's `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct OrphanSummary {
    pub table: String,
    pub dry_run: bool,
    pub older_than_ms: i64,
    #[serde(flatten)]
    pub counts: OrphanCounts,
    /// Orphans deleted (0 in a dry run).
    pub files_deleted: u64,
    pub duration_ms: u64,
    pub message: String,
}

/// Builder for `floe remove-orphans`.
pub struct RemoveOrphansBuilder<'a> {
    catalog: &'a Catalog,
    table: TableIdent,
    older_than_ms: i64,
    dry_run: bool,
    spill_dir: Option<std::path::PathBuf>,
    listener: Option<OrphanListener>,
}

impl<'a> RemoveOrphansBuilder<'a> {
    pub fn new(catalog: &'a Catalog, table: TableIdent) -> Self {
        Self {
            catalog,
            table,
            older_than_ms: now_ms() - DEFAULT_ORPHAN_AGE_MS,
            dry_run: false,
            spill_dir: None,
            listener: None,
        }
    }

    /// Only files last modified before this instant (ms since the epoch) may go.
    pub fn older_than_ms(mut self, timestamp_ms: i64) -> Self {
        self.older_than_ms = timestamp_ms;
        self
    }

    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }

    pub fn with_spill_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.spill_dir = dir;
        self
    }

    pub fn with_listener(mut self, listener: OrphanListener) -> Self {
        self.listener = Some(listener);
        self
    }

    pub async fn execute(mut self) -> Result<OrphanSummary> {
        let started = Instant::now();
        let name = display_ident(&self.table);
        let state = super::inspect::existing(self.catalog, &self.table).await?;
        let mut sink = Deleter {
            file_io: state.file_io.clone(),
            delete: !self.dry_run,
            deleted: 0,
            listener: self.listener.take(),
        };
        let counts = crate::maintain::orphans::find(
            &state,
            self.older_than_ms,
            self.spill_dir.as_deref(),
            &mut sink,
        )
        .await?;
        let deleted = sink.deleted;
        let message = if self.dry_run {
            format!(
                "would delete {} orphan files ({} bytes) of {name}; {} newer unreferenced files kept; nothing changed (dry run)",
                counts.orphans, counts.orphan_bytes, counts.recent_unreferenced
            )
        } else {
            format!(
                "deleted {deleted} of {} orphan files ({} bytes) of {name}; {} newer unreferenced files kept",
                counts.orphans, counts.orphan_bytes, counts.recent_unreferenced
            )
        };
        Ok(OrphanSummary {
            table: name,
            dry_run: self.dry_run,
            older_than_ms: self.older_than_ms,
            counts,
            files_deleted: deleted,
            duration_ms: started.elapsed().as_millis() as u64,
            message,
        })
    }
}

/// Deletes (or, in a dry run, only lists) each orphan as it is found.
struct Deleter {
    file_io: iceberg::io::FileIO,
    delete: bool,
    deleted: u64,
    listener: Option<OrphanListener>,
}

impl OrphanSink for Deleter {
    fn found(&mut self, orphan: Orphan) -> BoxFuture<'_, Result<()>> {
        async move {
            if self.delete {
                if let Err(e) = self.file_io.delete(&orphan.path).await {
                    tracing::warn!(file = %orphan.path, error = %e, "could not delete an orphan");
                    return Ok(());
                }
                self.deleted += 1;
            }
            if let Some(listener) = self.listener.as_mut() {
                listener(&orphan);
            }
            Ok(())
        }
        .boxed()
    }
}
