//! Commit: publish one load as exactly one snapshot, atomically, or nothing.
//!
//! ```text
//!   data files, handed to AddedFiles as each one is finished: rolling
//!   manifests of 1,000 entries (never rewritten on retry; the entries
//!   inherit their sequence number, so they fit whatever base they land on)
//!                                |
//!                                v
//!   +--------------------- SnapshotProducer -------------------------+
//!   | the added manifests and a delete-files manifest (merge)        |
//!   | per attempt, against the base metadata:                        |
//!   |   append  -> carry every existing manifest over untouched      |
//!   |   replace -> rewrite each existing manifest as DELETED entries |
//!   |   manifest list + Snapshot + summary (added/deleted/total-*)   |
//!   |   an evolved schema rides in the same commit (AddSchema first)  |
//!   +----------------------------------------------------------------+
//!                                |  TableUpdates + TableRequirements
//!                                v
//!   Catalog::commit (SQL: compare-and-swap on metadata_location)
//!        | committed -> done
//!        | conflict  -> delete this attempt's manifest list, reload the
//!        |              table; if the load id landed meanwhile -> done
//!        |              (idempotent); else re-plan, backoff, retry
//!        |              (a merge fails instead: its key matches are stale)
//!        v
//!   RetriesExhausted / Conflict error: the table keeps its old state
//! ```
//!
//! A crash before the catalog swap leaves only unreferenced files; after it, the new state.
//! Rerunning a load id that is in the table's history is a no-op (see [`find_load`]).

mod added;
mod producer;
mod summary;

use std::time::Duration;

use iceberg::spec::{Schema, TableMetadata};

pub use added::{AddedFiles, AddedFilesSink, AddedManifests, MANIFEST_ENTRIES};
pub use producer::{FileChanges, SnapshotOperation, SnapshotProducer, StagedSnapshot};

use crate::catalog::{Catalog, CommitOutcome, TableState};
use crate::error::{FloeError, Result};

/// Snapshot summary key that records the load id.
pub const LOAD_ID_PROPERTY: &str = "floe.load-id";

/// How many times a commit is attempted before giving up.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// The snapshot that carries `load_id`, among the ancestors of the current snapshot.
pub fn find_load(metadata: &TableMetadata, load_id: &str) -> Option<i64> {
    let mut current = metadata.current_snapshot().cloned();
    while let Some(snapshot) = current {
        if snapshot
            .summary()
            .additional_properties
            .get(LOAD_ID_PROPERTY)
            .is_some_and(|id| id == load_id)
        {
            return Some(snapshot.snapshot_id());
        }
        current = snapshot
            .parent_snapshot_id()
            .and_then(|id| metadata.snapshot_by_id(id).cloned());
    }
    None
}

/// What a finished commit did.
#[derive(Debug, Clone)]
pub struct Committed {
    pub snapshot_id: i64,
    /// Whether the load id had already landed: nothing was committed by this call.
    pub already_committed: bool,
    pub attempts: u32,
    pub files_removed: u64,
    pub rows_removed: u64,
    pub metadata_location: String,
    /// The schema id of the committed snapshot.
    pub schema_id: i32,
    /// The snapshot's operation (`append`, `overwrite`).
    pub operation: String,
}

impl Committed {
    /// This call's own attempt landed.
    fn attempt(staged: &StagedSnapshot, attempts: u32, metadata_location: String) -> Self {
        Self {
            snapshot_id: staged.snapshot_id,
            already_committed: false,
            attempts,
            files_removed: staged.files_removed,
            rows_removed: staged.rows_removed,
            metadata_location,
            schema_id: staged.schema_id,
            operation: staged.operation.clone(),
        }
    }
}

/// Commits `added` as one snapshot of `operation`, retrying against newer table states.
pub async fn commit_load(
    catalog: &Catalog,
    mut base: TableState,
    load_id: &str,
    operation: SnapshotOperation,
    changes: FileChanges,
    schema_change: Option<Schema>,
    max_attempts: u32,
) -> Result<Committed> {
    let table = base.name();
    let schema_id = base.metadata.current_schema_id();
    let spec_id = base.metadata.default_partition_spec_id();
    let mut producer =
        SnapshotProducer::new(&base, load_id, operation, changes, schema_change).await?;
    for attempt in 1..=max_attempts {
        let staged = producer.stage(&base, attempt).await?;
        match catalog
            .commit(&base, &staged.requirements, staged.updates.clone())
            .await
        {
            Ok(CommitOutcome::Committed {
                metadata_location, ..
            }) => {
                tracing::info!(table = %table, snapshot_id = staged.snapshot_id, attempt, "committed");
                return Ok(Committed::attempt(&staged, attempt, metadata_location));
            }
            Ok(CommitOutcome::Conflict(reason)) => {
                tracing::info!(table = %table, attempt, %reason, "commit conflict, re-planning");
                producer.discard_attempt(&base, &staged).await;
                if operation == SnapshotOperation::RowDelta {
                    // A merge matched its keys against `base`; rows another writer committed
                    // since may hold the same keys, so the plan cannot simply be rebased.
                    producer.discard_all(&base).await;
                    return Err(FloeError::Conflict {
                        table,
                        reason: format!(
                            "another writer committed during the merge ({reason}); nothing was changed, rerun the load (its load id makes the rerun safe)"
                        ),
                    });
                }
            }
            Ok(CommitOutcome::Unknown(reason)) => {
                // The attempt may have landed: nothing it references may be deleted. The table
                // itself tells: our snapshot id in its history means committed, else retry.
                tracing::warn!(table = %table, attempt, %reason, "commit outcome unknown, checking the table");
                let planned_on = base.metadata.current_snapshot().map(|s| s.snapshot_id());
                let now = reload_after_unknown(catalog, &base, load_id, &reason).await?;
                if find_load(&now.metadata, load_id) == Some(staged.snapshot_id) {
                    tracing::info!(table = %table, snapshot_id = staged.snapshot_id, "the commit had landed");
                    let location = now.metadata_location.clone().unwrap_or_default();
                    return Ok(Committed::attempt(&staged, attempt, location));
                }
                if operation == SnapshotOperation::RowDelta
                    && now.metadata.current_snapshot().map(|s| s.snapshot_id()) != planned_on
                {
                    producer.discard_all(&base).await;
                    return Err(FloeError::Conflict {
                        table,
                        reason: format!(
                            "the commit failed ({reason}) and another writer committed since; nothing was changed, rerun the load"
                        ),
                    });
                }
            }
            Err(e) => {
                producer.discard_attempt(&base, &staged).await;
                producer.discard_all(&base).await;
                return Err(e);
            }
        }
        // Back off a little (jittered), then look at the table as it is now.
        let jitter = (uuid::Uuid::new_v4().as_u128() % 50) as u64;
        tokio::time::sleep(Duration::from_millis((20u64 << attempt.min(6)) + jitter)).await;
        base = match catalog.load_table(&base.ident).await? {
            Some(state) => state,
            None if base.is_staged() => base,
            None => {
                producer.discard_all(&base).await;
                return Err(FloeError::Conflict {
                    table,
                    reason: "the table was dropped during the load".into(),
                });
            }
        };
        if let Some(snapshot_id) = find_load(&base.metadata, load_id) {
            producer.discard_all(&base).await;
            return Ok(Committed {
                snapshot_id,
                already_committed: true,
                attempts: attempt,
                files_removed: 0,
                rows_removed: 0,
                metadata_location: base.metadata_location.clone().unwrap_or_default(),
                schema_id: base
                    .metadata
                    .snapshot_by_id(snapshot_id)
                    .and_then(|s| s.schema_id())
                    .unwrap_or(base.metadata.current_schema_id()),
                operation: base
                    .metadata
                    .snapshot_by_id(snapshot_id)
                    .map(|s| s.summary().operation.as_str().to_string())
                    .unwrap_or_default(),
            });
        }
        if base.metadata.current_schema_id() != schema_id
            && base.metadata.current_schema().as_struct() != producer.schema().as_struct()
        {
            producer.discard_all(&base).await;
            return Err(FloeError::Conflict {
                table,
                reason: "its schema changed; the load's data no longer matches it".into(),
            });
        }
        if base.metadata.default_partition_spec_id() != spec_id
            && base.metadata.default_partition_spec().fields() != producer.spec().fields()
        {
            producer.discard_all(&base).await;
            return Err(FloeError::Conflict {
                table,
                reason: "its partition spec changed".into(),
            });
        }
    }
    producer.discard_all(&base).await;
    Err(FloeError::RetriesExhausted {
        table,
        attempts: max_attempts,
    })
}

/// How often the table is looked at after a commit with an unknown outcome, and how long apart.
const UNKNOWN_CHECKS: u32 = 6;
const UNKNOWN_CHECK_PAUSE: Duration = Duration::from_secs(2);

/// The table as it is after a commit whose outcome is unknown (a staged table that still does
/// not exist comes back staged). If the catalog cannot be asked, the outcome stays unknown and
/// the load fails saying so, keeping every file it wrote.
async fn reload_after_unknown(
    catalog: &Catalog,
    base: &TableState,
    load_id: &str,
    reason: &str,
) -> Result<TableState> {
    let mut last_error = String::new();
    for check in 1..=UNKNOWN_CHECKS {
        match catalog.load_table(&base.ident).await {
            Ok(Some(state)) => return Ok(state),
            Ok(None) if base.is_staged() => return Ok(base.clone()),
            Ok(None) => {
                return Err(FloeError::Conflict {
                    table: base.name(),
                    reason: "the table was dropped during the load".into(),
                });
            }
            Err(e) => {
                tracing::warn!(table = %base.name(), check, error = %e, "cannot check the table yet");
                last_error = e.to_string();
                tokio::time::sleep(UNKNOWN_CHECK_PAUSE).await;
            }
        }
    }
    Err(FloeError::CommitStateUnknown {
        table: base.name(),
        load_id: load_id.to_string(),
        reason: format!("{reason}; then: {last_error}"),
    })
}
