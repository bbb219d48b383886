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
//!   Catalog::commit (SQL: compare-and-swap; REST: commit endpoint)
//!        | committed -> done, if the answer's main branch is our snapshot
//!        |              (any other answer: as unknown)
//!        | conflict  -> reload the table first (a retried POST may have landed:
//!        |              our snapshot id there -> done); else delete this
//!        |              attempt's manifest list; if the load id landed
//!        |              meanwhile -> done (idempotent); else re-plan, retry
//!        |              (a merge fails instead: its key matches are stale)
//!        | unknown   -> delete nothing; reload: our snapshot id there -> done;
//!        |              branch moved past the attempt -> as conflict;
//!        |              unchanged -> retry (same snapshot id, so never twice)
//!        v
//!   RetriesExhausted / Conflict error: the table keeps its old state;
//!   CommitStateUnknown: files kept, rerun with the load id
//! ```
//!
//! A crash before the catalog swap leaves only unreferenced files; after it, the new state.
//! Rerunning a load id that is in the table's history is a no-op (see [`find_load`]).

mod added;
mod metadata;
mod producer;
mod summary;

use std::time::Duration;

use iceberg::spec::{Operation, Schema, TableMetadata};

pub use added::{AddedFiles, AddedFilesSink, AddedManifests, MANIFEST_ENTRIES};
pub use metadata::{MetadataChange, MetadataCommitted, commit_metadata};
pub use producer::{AddedDelete, FileChanges, LoadOperation, SnapshotProducer, StagedSnapshot};

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

/// A snapshot carrying `load_id` that the table still holds but the current main branch no
/// longer contains (the table was rolled back past it, or it sits on another branch): a rerun
/// must not load the data a second time, and must not claim it is in `main` either. Every
/// snapshot the metadata still lists counts (the snapshot log and branches point into them).
pub fn find_load_off_main(metadata: &TableMetadata, load_id: &str) -> Option<i64> {
    metadata
        .snapshots()
        .filter(|s| {
            s.summary()
                .additional_properties
                .get(LOAD_ID_PROPERTY)
                .is_some_and(|l| l == load_id)
        })
        .map(|s| s.snapshot_id())
        .min()
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
    /// The snapshot's operation (`append`, `overwrite`); `None` if the table no longer
    /// lists the snapshot that carries the load id.
    pub operation: Option<Operation>,
}

impl Committed {
    /// The snapshot carrying our load id, as the table shows it.
    fn found(base: &TableState, snapshot_id: i64, attempts: u32, already_committed: bool) -> Self {
        let snapshot = base.metadata.snapshot_by_id(snapshot_id);
        Self {
            snapshot_id,
            already_committed,
            attempts,
            files_removed: 0,
            rows_removed: 0,
            metadata_location: base.metadata_location.clone().unwrap_or_default(),
            schema_id: snapshot
                .and_then(|s| s.schema_id())
                .unwrap_or(base.metadata.current_schema_id()),
            operation: snapshot.map(|s| s.summary().operation.clone()),
        }
    }

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
            operation: Some(staged.operation.clone()),
        }
    }
}

/// Commits `added` as one snapshot of `operation`, retrying against newer table states.
///
/// Every attempt carries the same snapshot id, so the table's history tells whether any attempt
/// of this call landed. After an attempt with an unknown outcome nothing may be deleted until
/// the table shows either our snapshot (committed) or a main branch that moved past what that
/// attempt required (it can never land); if neither can be established the load fails with
/// [`FloeError::CommitStateUnknown`] and keeps every file.
pub async fn commit_load(
    catalog: &Catalog,
    mut base: TableState,
    load_id: &str,
    operation: LoadOperation,
    changes: FileChanges,
    schema_change: Option<Schema>,
    max_attempts: u32,
) -> Result<Committed> {
    let table = base.name();
    let schema_id = base.metadata.current_schema_id();
    let spec_id = base.metadata.default_partition_spec_id();
    let created_here = base.is_staged();
    // A merge's matches hold against this state only.
    let planned_on = base.metadata.current_snapshot_id();
    let mut producer =
        SnapshotProducer::new(&base, load_id, operation, changes, schema_change).await?;
    // The last attempt not known to have failed (its outcome unknown, or a conflict answer not
    // yet checked against the table), and the main-branch head it required: while the table
    // still sits there, an unknown attempt may yet land.
    let mut in_doubt: Option<Doubt> = None;
    for attempt in 1..=max_attempts {
        let staged = match producer.stage(&base, attempt).await {
            Ok(staged) => staged,
            Err(e) => return Err(give_up(&mut producer, &base, load_id, &in_doubt, e).await),
        };
        let required = base.metadata.current_snapshot_id();
        let reason = match catalog
            .commit(&base, &staged.requirements, staged.updates.clone())
            .await
        {
            Ok(CommitOutcome::Committed {
                metadata_location,
                metadata,
            }) if metadata.current_snapshot_id() == Some(staged.snapshot_id) => {
                tracing::info!(table = %table, snapshot_id = staged.snapshot_id, attempt, "committed");
                return Ok(Committed::attempt(&staged, attempt, metadata_location));
            }
            Ok(CommitOutcome::Committed { metadata, .. }) => Doubt::unknown(format!(
                "the catalog answered success, but its main branch points at snapshot {:?}, not the load's {}",
                metadata.current_snapshot_id(),
                staged.snapshot_id
            )),
            Ok(CommitOutcome::Conflict(reason)) => {
                // A conflict answer can follow a retried request whose first copy landed (a
                // proxy resending the POST): look at the table before deleting anything.
                tracing::info!(table = %table, attempt, %reason, "commit conflict, checking the table");
                Doubt::conflict(reason)
            }
            Ok(CommitOutcome::Unknown(reason)) => {
                // The attempt may have landed: nothing it references may be deleted.
                tracing::warn!(table = %table, attempt, %reason, "commit outcome unknown, checking the table");
                Doubt::unknown(reason)
            }
            Err(e) => {
                if in_doubt.is_none() {
                    producer.discard_attempt(&base, &staged).await;
                }
                return Err(give_up(&mut producer, &base, load_id, &in_doubt, e).await);
            }
        };
        in_doubt = Some(reason.of(staged, required));
        // Back off a little (jittered), then look at the table as it is now.
        let jitter = (uuid::Uuid::new_v4().as_u128() % 50) as u64;
        tokio::time::sleep(Duration::from_millis((20u64 << attempt.min(6)) + jitter)).await;
        let reason = in_doubt
            .as_ref()
            .map(|d| d.reason.clone())
            .unwrap_or_default();
        base = match reload_after_unknown(catalog, &base, load_id, &reason).await {
            Ok(Some(state)) => state,
            Ok(None) => {
                let e = FloeError::Conflict {
                    table: table.clone(),
                    reason: "the table was dropped during the load".into(),
                };
                return Err(give_up(&mut producer, &base, load_id, &in_doubt, e).await);
            }
            Err(e) => return Err(give_up(&mut producer, &base, load_id, &in_doubt, e).await),
        };
        if let Some(snapshot_id) = find_load(&base.metadata, load_id) {
            let location = base.metadata_location.clone().unwrap_or_default();
            if snapshot_id == producer.snapshot_id() {
                // One of our own attempts landed (its answer was lost): done, keep everything.
                tracing::info!(table = %table, snapshot_id, "the commit had landed");
                let landed = match &in_doubt {
                    Some(doubt) => Committed::attempt(&doubt.staged, attempt, location),
                    None => Committed::found(&base, snapshot_id, attempt, false),
                };
                return Ok(landed);
            }
            // Another run with the same load id committed first; ours never can now.
            producer.discard_all(&base).await;
            return Ok(Committed::found(&base, snapshot_id, attempt, true));
        }
        let conflict = in_doubt.as_ref().is_some_and(|d| d.conflict);
        if let Some(doubt) = in_doubt.take_if(|d| {
            d.conflict
                || base.metadata.current_snapshot_id() != d.required
                || base.is_staged() != created_here
        }) {
            // Refused, or the branch moved past what the attempt required: it can never land.
            tracing::info!(table = %table, "the attempt did not land and cannot land any more");
            producer.discard_attempt(&base, &doubt.staged).await;
        }
        if operation == LoadOperation::Compact
            && in_doubt.is_none()
            && !only_appends_since(&base.metadata, planned_on)
        {
            // A compaction rewrote rows as they were: another writer's deletes (or rewrites)
            // of those rows since would be undone by replacing the files. Appends are safe.
            producer.discard_all(&base).await;
            return Err(FloeError::Conflict {
                table,
                reason: "another writer deleted or rewrote rows during the compaction; nothing was changed, rerun it".into(),
            });
        }
        if operation == LoadOperation::Merge
            && in_doubt.is_none()
            && (conflict || base.metadata.current_snapshot_id() != planned_on)
        {
            // A merge matched its keys against the state it planned on; rows another writer
            // committed since may hold the same keys, so the plan cannot simply be rebased.
            producer.discard_all(&base).await;
            return Err(FloeError::Conflict {
                table,
                reason: "another writer committed during the merge; nothing was changed, rerun the load (its load id makes the rerun safe)".into(),
            });
        }
        let schema_moved = (created_here || base.metadata.current_schema_id() != schema_id)
            && base.metadata.current_schema().as_struct() != producer.schema().as_struct();
        let spec_moved = (created_here || base.metadata.default_partition_spec_id() != spec_id)
            && base.metadata.default_partition_spec().fields() != producer.spec().fields();
        if schema_moved || spec_moved {
            let e = FloeError::Conflict {
                table: table.clone(),
                reason: if schema_moved {
                    "its schema changed; the load's data no longer matches it".into()
                } else {
                    "its partition spec changed".into()
                },
            };
            return Err(give_up(&mut producer, &base, load_id, &in_doubt, e).await);
        }
    }
    let e = FloeError::RetriesExhausted {
        table,
        attempts: max_attempts,
    };
    Err(give_up(&mut producer, &base, load_id, &in_doubt, e).await)
}

/// Whether every snapshot main gained since `planned_on` only appended (so files live at
/// `planned_on` still hold the same rows).
fn only_appends_since(metadata: &TableMetadata, planned_on: Option<i64>) -> bool {
    let mut id = metadata.current_snapshot_id();
    while id != planned_on {
        let Some(snapshot) = id.and_then(|i| metadata.snapshot_by_id(i)) else {
            return false;
        };
        if snapshot.summary().operation != Operation::Append {
            return false;
        }
        id = snapshot.parent_snapshot_id();
    }
    true
}

/// Ends a commit that cannot succeed. While an attempt's outcome is still in doubt nothing is
/// deleted and the error says so; otherwise the load's manifests go.
async fn give_up(
    producer: &mut SnapshotProducer,
    base: &TableState,
    load_id: &str,
    in_doubt: &Option<Doubt>,
    error: FloeError,
) -> FloeError {
    match in_doubt {
        Some(doubt) if !error.keeps_written_files() => FloeError::CommitStateUnknown {
            table: base.name(),
            load_id: load_id.to_string(),
            reason: format!("{}; then: {error}", doubt.reason),
        },
        Some(_) => error,
        None => {
            producer.discard_all(base).await;
            error
        }
    }
}

/// An attempt that may have landed: its outcome was unknown, or a conflict answer that the
/// table has not yet been checked against.
struct Doubt {
    staged: StagedSnapshot,
    /// The main-branch head the attempt required.
    required: Option<i64>,
    reason: String,
    /// The catalog answered with a conflict: once the table is seen without our snapshot,
    /// the attempt is known to have failed.
    conflict: bool,
}

/// The answer that puts an attempt in doubt, before the attempt is attached.
struct DoubtReason {
    reason: String,
    conflict: bool,
}

impl Doubt {
    fn unknown(reason: String) -> DoubtReason {
        DoubtReason {
            reason,
            conflict: false,
        }
    }

    fn conflict(reason: String) -> DoubtReason {
        DoubtReason {
            reason,
            conflict: true,
        }
    }
}

impl DoubtReason {
    fn of(self, staged: StagedSnapshot, required: Option<i64>) -> Doubt {
        Doubt {
            staged,
            required,
            reason: self.reason,
            conflict: self.conflict,
        }
    }
}

/// How often the table is looked at after a commit with an unknown outcome, and how long apart.
const UNKNOWN_CHECKS: u32 = 6;
const UNKNOWN_CHECK_PAUSE: Duration = Duration::from_secs(2);

/// The table as it is after a commit whose outcome is unknown (a staged table that still does
/// not exist comes back staged; `None`: the table was dropped). Asks a few times: a catalog
/// that just failed may need a moment.
async fn reload_after_unknown(
    catalog: &Catalog,
    base: &TableState,
    load_id: &str,
    reason: &str,
) -> Result<Option<TableState>> {
    let mut last_error = String::new();
    for check in 1..=UNKNOWN_CHECKS {
        match catalog.load_table(&base.ident).await {
            Ok(Some(state)) => return Ok(Some(state)),
            Ok(None) if base.is_staged() => return Ok(Some(base.clone())),
            Ok(None) => return Ok(None),
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

#[cfg(test)]
mod tests;
