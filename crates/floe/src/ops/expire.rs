//! Expire: remove old snapshots in one metadata commit, then delete the files only they reach.
//!
//! The commit comes first: until it lands nothing is deleted, and a crash after it leaves at
//! worst unreferenced files (what `remove-orphans` is for). Files are deleted only when the
//! catalog confirmed the change; `dry_run` lists what would go and changes nothing. Load ids
//! recorded in expired snapshots are forgotten: a rerun of such a load loads its data again.

use std::time::Instant;

use futures::FutureExt;
use futures::future::BoxFuture;
use iceberg::io::FileIO;
use iceberg::{TableIdent, TableRequirement, TableUpdate};
use serde::Serialize;

use crate::catalog::{Catalog, TableState, display_ident};
use crate::commit::{DEFAULT_MAX_ATTEMPTS, MetadataChange, MetadataCommitted, commit_metadata};
use crate::error::{FloeError, Result};
use crate::maintain::expire::{ExpirePlan, Retention, SweepSink, now_ms, plan, sweep};
pub use crate::maintain::expire::{FileKind, SweepCounts};

/// Iceberg's defaults: snapshots older than five days expire, the last one always stays.
pub const DEFAULT_MAX_AGE_MS: i64 = 5 * 24 * 3600 * 1000;

/// Something told about every file an expire deletes (or would delete, in a dry run).
pub type FileListener = Box<dyn FnMut(FileKind, &str) + Send>;

/// What an expire did (the CLI's `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct ExpireSummary {
    pub table: String,
    pub dry_run: bool,
    /// The snapshots removed (or, in a dry run, that would be).
    pub expired_snapshot_ids: Vec<i64>,
    pub snapshots_kept: u64,
    /// Files only the expired snapshots reached, by kind.
    #[serde(flatten)]
    pub files: SweepCounts,
    /// Of those, the files deleted (0 in a dry run; less than found if deletes failed).
    pub files_deleted: u64,
    pub metadata_location: Option<String>,
    pub commit_attempts: u32,
    pub duration_ms: u64,
    pub message: String,
}

/// Builder for `floe expire`.
pub struct ExpireBuilder<'a> {
    catalog: &'a Catalog,
    table: TableIdent,
    retention: Retention,
    dry_run: bool,
    max_attempts: u32,
    spill_dir: Option<std::path::PathBuf>,
    listener: Option<FileListener>,
}

impl<'a> ExpireBuilder<'a> {
    pub fn new(catalog: &'a Catalog, table: TableIdent) -> Self {
        Self {
            catalog,
            table,
            retention: Retention {
                older_than_ms: now_ms() - DEFAULT_MAX_AGE_MS,
                retain_last: 1,
            },
            dry_run: false,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            spill_dir: None,
            listener: None,
        }
    }

    /// Snapshots older than this instant (ms since the epoch) may expire.
    pub fn older_than_ms(mut self, timestamp_ms: i64) -> Self {
        self.retention.older_than_ms = timestamp_ms;
        self
    }

    /// Every branch keeps at least its last `n` snapshots (at least 1).
    pub fn retain_last(mut self, n: usize) -> Self {
        self.retention.retain_last = n.max(1);
        self
    }

    /// List what would go; change nothing.
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }

    pub fn with_spill_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.spill_dir = dir;
        self
    }

    /// Told about every file deleted (or, in a dry run, that would be).
    pub fn with_listener(mut self, listener: FileListener) -> Self {
        self.listener = Some(listener);
        self
    }

    pub async fn execute(mut self) -> Result<ExpireSummary> {
        let started = Instant::now();
        let name = display_ident(&self.table);
        let state = super::inspect::existing(self.catalog, &self.table).await?;
        refuse_without_gc(&state)?;
        let retention = self.retention;
        let (base, planned, location, attempts) = if self.dry_run {
            let planned = plan(&state.metadata, retention)?;
            (state, planned, None, 0)
        } else {
            match commit_metadata(self.catalog, state, self.max_attempts, |s| {
                change(s, retention)
            })
            .await?
            {
                MetadataCommitted::Nothing(state) => {
                    // Planned to nothing: the same plan, with nothing expired.
                    let planned = plan(&state.metadata, retention)?;
                    (state, planned, None, 0)
                }
                MetadataCommitted::Landed {
                    base,
                    plan,
                    metadata_location,
                    attempts,
                } => (base, plan, Some(metadata_location), attempts),
            }
        };
        let mut sink = Deleter {
            file_io: base.file_io.clone(),
            delete: !self.dry_run,
            deleted: 0,
            listener: self.listener.take(),
        };
        let files = sweep(&base, &planned, self.spill_dir.as_deref(), &mut sink).await?;
        let message = message(&name, self.dry_run, &planned, &files, sink.deleted);
        Ok(ExpireSummary {
            table: name,
            dry_run: self.dry_run,
            snapshots_kept: planned.kept.len() as u64,
            expired_snapshot_ids: planned.expired,
            files,
            files_deleted: sink.deleted,
            metadata_location: location.or(base.metadata_location),
            commit_attempts: attempts,
            duration_ms: started.elapsed().as_millis() as u64,
            message,
        })
    }
}

/// As Java's action: a table whose files other tables may share (`gc.enabled=false`) keeps
/// every file, so floe does not expire its snapshots.
fn refuse_without_gc(state: &TableState) -> Result<()> {
    let gc = state.metadata.properties().get("gc.enabled");
    if gc.is_some_and(|v| v.eq_ignore_ascii_case("false")) {
        return Err(FloeError::UnsupportedTable {
            table: state.name(),
            detail: "gc.enabled is false (its files may be shared), so floe does not expire its snapshots".into(),
        });
    }
    Ok(())
}

/// The metadata change that expires what `retention` does not keep, if anything.
fn change(state: &TableState, retention: Retention) -> Result<Option<MetadataChange<ExpirePlan>>> {
    let planned = plan(&state.metadata, retention)?;
    if planned.expired.is_empty() {
        return Ok(None);
    }
    // Planned against these heads: a ref that moved may keep other snapshots.
    let mut requirements = vec![TableRequirement::UuidMatch {
        uuid: state.metadata.uuid(),
    }];
    for (name, head) in &planned.heads {
        requirements.push(TableRequirement::RefSnapshotIdMatch {
            r#ref: name.clone(),
            snapshot_id: Some(*head),
        });
    }
    Ok(Some(MetadataChange {
        requirements,
        updates: vec![TableUpdate::RemoveSnapshots {
            snapshot_ids: planned.expired.clone(),
        }],
        plan: planned,
        landed: |p, metadata| {
            p.expired
                .iter()
                .all(|id| metadata.snapshot_by_id(*id).is_none())
        },
    }))
}

fn message(
    table: &str,
    dry_run: bool,
    plan: &ExpirePlan,
    files: &SweepCounts,
    deleted: u64,
) -> String {
    let found = files.manifest_lists + files.manifests + files.data_files + files.delete_files;
    let what = format!(
        "{} snapshots ({} kept); {} data files, {} delete files, {} manifests, {} manifest lists ({} bytes of data and delete files)",
        plan.expired.len(),
        plan.kept.len(),
        files.data_files,
        files.delete_files,
        files.manifests,
        files.manifest_lists,
        files.bytes
    );
    match (dry_run, plan.expired.is_empty()) {
        (_, true) => format!(
            "nothing to expire in {table} ({} snapshots kept)",
            plan.kept.len()
        ),
        (true, false) => format!("would expire in {table}: {what}; nothing changed (dry run)"),
        (false, false) if deleted < found => format!(
            "expired in {table}: {what}; {} of {found} files deleted (the rest are unreferenced: remove them later)",
            deleted
        ),
        (false, false) => format!("expired in {table}: {what}; all deleted"),
    }
}

/// Deletes (or only lists, in a dry run) each file the sweep finds.
struct Deleter {
    file_io: FileIO,
    delete: bool,
    deleted: u64,
    listener: Option<FileListener>,
}

impl SweepSink for Deleter {
    fn found<'a>(
        &'a mut self,
        kind: FileKind,
        path: &'a str,
        _bytes: u64,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            if self.delete {
                match self.file_io.delete(path).await {
                    Ok(()) => self.deleted += 1,
                    Err(e) => {
                        tracing::warn!(file = %path, error = %e, "could not delete an expired file");
                        return Ok(());
                    }
                }
            }
            if let Some(listener) = self.listener.as_mut() {
                listener(kind, path);
            }
            Ok(())
        }
        .boxed()
    }
}

/// [`parse_older_than`] against the current time.
pub fn older_than_now(text: &str) -> Result<i64> {
    parse_older_than(text, now_ms())
}

/// An `--older-than` value as ms since the epoch: a duration before `now_ms` (`5d`, `12h`,
/// `30m`, `90s`, `2w`), an RFC 3339 timestamp (`2026-12-01T00:00:00Z`) or a date
/// (`2026-12-01`, midnight UTC).
pub fn parse_older_than(text: &str, now_ms: i64) -> Result<i64> {
    let t = text.trim();
    let bad = || {
        FloeError::InvalidOption(format!(
            "older-than '{text}': expected a duration (5d, 12h, 30m, 90s, 2w) or a timestamp (2026-12-01T00:00:00Z, 2026-12-01)"
        ))
    };
    if let Ok(ts) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(ts.timestamp_millis());
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let midnight = date.and_hms_opt(0, 0, 0).ok_or_else(bad)?;
        return Ok(midnight.and_utc().timestamp_millis());
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = t.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let unit_ms: i64 = match unit.trim() {
        "s" => 1000,
        "m" | "min" => 60 * 1000,
        "h" => 3600 * 1000,
        "d" => 24 * 3600 * 1000,
        "w" => 7 * 24 * 3600 * 1000,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_ms)
        .map(|ago| now_ms - ago)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_than_takes_durations_timestamps_and_dates() {
        let now = 10 * 24 * 3600 * 1000;
        assert_eq!(
            parse_older_than("5d", now).unwrap(),
            now - 5 * 24 * 3600 * 1000
        );
        assert_eq!(parse_older_than("90s", now).unwrap(), now - 90_000);
        assert_eq!(
            parse_older_than("2w", now).unwrap(),
            now - 14 * 24 * 3600 * 1000
        );
        assert_eq!(
            parse_older_than("1970-01-02T00:00:00Z", now).unwrap(),
            24 * 3600 * 1000
        );
        assert_eq!(
            parse_older_than("1970-01-03", now).unwrap(),
            2 * 24 * 3600 * 1000
        );
        for bad in ["5", "d", "5 years", "yesterday", ""] {
            assert!(parse_older_than(bad, now).is_err(), "{bad}");
        }
    }
}
