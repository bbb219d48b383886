//! Metadata-only commits (no new snapshot): what table maintenance changes, such as removing
//! expired snapshots. The change is planned against a table state, committed with the same
//! compare-and-swap as a load, and re-planned against the new state when another writer won.

use iceberg::spec::TableMetadata;
use iceberg::{TableRequirement, TableUpdate};

use crate::catalog::{Catalog, CommitOutcome, TableState};
use crate::error::{FloeError, Result};

/// One planned metadata change.
pub struct MetadataChange<T> {
    pub requirements: Vec<TableRequirement>,
    pub updates: Vec<TableUpdate>,
    /// What the caller planned (handed back once the change landed).
    pub plan: T,
    /// Whether a table state already shows the change (after an answer that was lost).
    pub landed: fn(&T, &TableMetadata) -> bool,
}

/// How a metadata commit ended.
pub enum MetadataCommitted<T> {
    /// The plan found nothing to change in the table as it is.
    Nothing(TableState),
    /// The change landed; `base` is the state it was planned against.
    Landed {
        base: TableState,
        plan: T,
        metadata_location: String,
        attempts: u32,
    },
}

/// Plans with `plan` against `base` and commits, re-planning against the table as it is after
/// a conflict (up to `max_attempts`). An answer that is lost is settled by reloading the table:
/// the change is there (landed) or not (planned again).
pub async fn commit_metadata<T>(
    catalog: &Catalog,
    mut base: TableState,
    max_attempts: u32,
    plan: impl Fn(&TableState) -> Result<Option<MetadataChange<T>>>,
) -> Result<MetadataCommitted<T>> {
    let table = base.name();
    for attempt in 1..=max_attempts.max(1) {
        let Some(change) = plan(&base)? else {
            return Ok(MetadataCommitted::Nothing(base));
        };
        let answer = catalog
            .commit(&base, &change.requirements, change.updates.clone())
            .await?;
        let reason = match answer {
            CommitOutcome::Committed {
                metadata_location,
                metadata,
            } if (change.landed)(&change.plan, &metadata) => {
                return Ok(MetadataCommitted::Landed {
                    base,
                    plan: change.plan,
                    metadata_location,
                    attempts: attempt,
                });
            }
            CommitOutcome::Committed { .. } => {
                "the catalog answered success without the change".to_string()
            }
            CommitOutcome::Conflict(reason) | CommitOutcome::Unknown(reason) => reason,
        };
        tracing::info!(table = %table, attempt, %reason, "metadata commit did not land, checking the table");
        let now = catalog
            .load_table(&base.ident)
            .await?
            .ok_or_else(|| FloeError::Conflict {
                table: table.clone(),
                reason: "the table was dropped".into(),
            })?;
        if (change.landed)(&change.plan, &now.metadata) {
            let location = now.metadata_location.clone().unwrap_or_default();
            return Ok(MetadataCommitted::Landed {
                base,
                plan: change.plan,
                metadata_location: location,
                attempts: attempt,
            });
        }
        base = now;
    }
    Err(FloeError::RetriesExhausted {
        table,
        attempts: max_attempts,
    })
}
