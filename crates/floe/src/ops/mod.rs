//! Operations: one file and one short builder per kind of load, each driving one
//! `session::LoadSession` and ending in its one commit call.
//!
//! - [`append::AppendBuilder`]: add the input's rows (snapshot operation `append`);
//! - [`replace::ReplaceBuilder`]: make the input the table's whole content, or only the
//!   partitions the input has (`overwrite`);
//! - [`merge::MergeBuilder`]: upsert, insert-only, delete-insert and hard deletes by key, the
//!   matching done by the merge engine (`crate::merge`);
//! - [`compact::CompactBuilder`]: small files and files with deletes rewritten into
//!   target-size files (`replace`);
//! - [`expire::ExpireBuilder`]: remove old snapshots (one metadata commit), then the files only
//!   they reach; [`orphans::RemoveOrphansBuilder`]: files no metadata references;
//!   [`inspect::inspect`]: what a table holds; [`matching::MatchBuilder`]: the live rows whose
//!   key a source has (reads only);
//! - [`distributed`]: one load planned on a driver, written by many workers
//!   ([`distributed::write_staged`]) and committed once ([`distributed::commit_staged`]);
//! - [`request`]: a load described as data ([`LoadKind`]), what the CLI and Python faces run.
//!
//! ```text
//! LoadSession::open (prepare: table, load id, schema) -> the operation writes through the
//! session (source -> conform -> write; merge: + match) -> LoadSession::commit (one snapshot,
//! or nothing; the file ledger keeps or deletes the files)
//! ```

pub mod append;
pub mod compact;
pub mod distributed;
pub mod expire;
pub mod inspect;
pub mod matching;
pub mod merge;
pub mod orphans;
mod prepare;
pub mod replace;
pub mod request;
mod session;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

pub use append::AppendBuilder;
pub use matching::{MatchBuilder, MatchSummary};
pub use merge::MergeBuilder;
/// The merge vocabulary (strategies, modes, duplicate-key policies).
pub mod merge_spec {
    pub use crate::merge::{
        DuplicateKeys, MergeCounts, MergeMode, MergeSpec, MergeStrategy, OnDuplicateKeys,
    };
}
pub use replace::ReplaceBuilder;
pub use request::{LoadInput, LoadKind, LoadMode, run};

use crate::commit::DEFAULT_MAX_ATTEMPTS;
pub use crate::commit::LoadOperation;
pub use crate::conform::evolve::SchemaEvolution;
use crate::progress::Progress;
use crate::write::WriteOptions;

/// Options every load kind shares.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Idempotency key stored in the snapshot summary; default: a fresh UUID.
    pub load_id: Option<String>,
    pub write: WriteOptions,
    pub max_commit_attempts: u32,
    pub progress: Arc<Progress>,
    /// What the load may change in the table's schema.
    pub schema_evolution: SchemaEvolution,
    /// Partition spec for a table the load creates, e.g. `day(ts), bucket(16, id)`.
    pub partition_by: Option<String>,
    /// Location of a table the load creates (default: the catalog's choice, for the embedded
    /// catalog `<warehouse>/<namespace>/<table>`). Ignored for an existing table.
    pub table_location: Option<String>,
    /// Table properties of a table the load creates. Ignored for an existing table.
    pub table_properties: HashMap<String, String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            load_id: None,
            write: WriteOptions::default(),
            max_commit_attempts: DEFAULT_MAX_ATTEMPTS,
            progress: Arc::new(Progress::default()),
            schema_evolution: SchemaEvolution::default(),
            partition_by: None,
            table_location: None,
            table_properties: HashMap::new(),
        }
    }
}

impl LoadOptions {
    pub fn with_load_id(mut self, load_id: impl Into<String>) -> Self {
        self.load_id = Some(load_id.into());
        self
    }

    pub fn with_write_options(mut self, write: WriteOptions) -> Self {
        self.write = write;
        self
    }

    pub fn with_progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = progress;
        self
    }

    pub fn with_schema_evolution(mut self, mode: SchemaEvolution) -> Self {
        self.schema_evolution = mode;
        self
    }

    pub fn with_partition_by(mut self, spec: impl Into<String>) -> Self {
        self.partition_by = Some(spec.into());
        self
    }

    /// Where a table the load creates lives (e.g. the folder a dlt dataset uses).
    pub fn with_table_location(mut self, location: impl Into<String>) -> Self {
        self.table_location = Some(location.into());
        self
    }

    /// Properties of a table the load creates (e.g. `write.parquet.compression-codec`).
    pub fn with_table_properties(mut self, properties: HashMap<String, String>) -> Self {
        self.table_properties = properties;
        self
    }

    pub fn with_max_commit_attempts(mut self, attempts: u32) -> Self {
        self.max_commit_attempts = attempts.max(1);
        self
    }
}

/// What a load did; also the CLI's `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    pub table: String,
    /// What the load did: `append`, `replace`, `replace-partitions` or `merge`.
    pub mode: LoadOperation,
    pub load_id: String,
    /// The snapshot the load committed (or found already committed); `None` if nothing was
    /// committed (empty append).
    pub snapshot_id: Option<i64>,
    /// Snapshot operation: `append`, `overwrite`, or `None` when nothing was committed.
    pub operation: Option<iceberg::spec::Operation>,
    /// Rows in the data files the load added (for a copy-on-write merge this includes the
    /// unchanged rows copied out of rewritten files).
    pub rows_written: u64,
    /// Of those, rows whose input Parquet column chunks were copied as they are instead of
    /// being decoded and encoded again (append, replace and merges of Parquet inputs).
    pub rows_copied: u64,
    /// Data files added (delete files are counted in `merge.delete_files_added`).
    pub files_added: u64,
    pub files_removed: u64,
    /// Rows in the data files the load removed (replace, replace-partitions, rewrites).
    pub rows_removed: u64,
    pub bytes_written: u64,
    pub input_files: u64,
    pub input_bytes: u64,
    pub duration_ms: u64,
    /// True when the load id had already landed, so nothing was done.
    pub skipped: bool,
    pub table_created: bool,
    /// Schema changes the load committed with its data (empty if none).
    pub schema_changes: Vec<String>,
    /// The schema id the load's snapshot was written with.
    pub schema_id: Option<i32>,
    pub commit_attempts: u32,
    pub metadata_location: Option<String>,
    /// Merge loads only: what the merge did.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub merge: Option<crate::merge::MergeCounts>,
    /// Loads of JSON lines or CSV whose schema was inferred: that schema (of the first input),
    /// as an Iceberg schema in JSON, before it was bound to the table's types.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inferred_schema: Option<serde_json::Value>,
    /// One line for humans.
    pub message: String,
}

impl LoadSummary {
    /// The summary of a load that has not done anything yet.
    pub(crate) fn new(table: &str, mode: LoadOperation, load_id: &str) -> Self {
        Self {
            table: table.to_string(),
            mode,
            load_id: load_id.to_string(),
            snapshot_id: None,
            operation: None,
            rows_written: 0,
            rows_copied: 0,
            files_added: 0,
            files_removed: 0,
            rows_removed: 0,
            bytes_written: 0,
            input_files: 0,
            input_bytes: 0,
            duration_ms: 0,
            skipped: false,
            table_created: false,
            schema_changes: Vec::new(),
            schema_id: None,
            commit_attempts: 0,
            metadata_location: None,
            merge: None,
            inferred_schema: None,
            message: String::new(),
        }
    }
}

/// The one line for humans about a load that committed `snapshot_id`.
fn summary_message(
    s: &LoadSummary,
    table: &str,
    merge: Option<&crate::merge::MergeCounts>,
    snapshot_id: i64,
) -> String {
    let line = match (s.mode, merge) {
        (LoadOperation::Merge, Some(c)) => format!(
            "merged into {table}: {} inserted, {} updated, {} deleted; {} files rewritten, {} delete files (snapshot {snapshot_id}, {})",
            c.rows_inserted,
            c.rows_updated,
            c.rows_deleted,
            c.files_rewritten,
            c.delete_files_added,
            s.operation.as_ref().map(|o| o.as_str()).unwrap_or("?"),
        ),
        (LoadOperation::Compact, _) => format!(
            "compacted {table}: {} files ({} rows) rewritten into {} files (snapshot {snapshot_id})",
            s.files_removed, s.rows_removed, s.files_added
        ),
        (LoadOperation::Append, _) | (LoadOperation::Merge, None) => format!(
            "appended {} rows in {} files to {table} (snapshot {snapshot_id})",
            s.rows_written, s.files_added
        ),
        (LoadOperation::Replace | LoadOperation::ReplacePartitions, _) => format!(
            "replaced {}{table}: {} rows in {} files added, {} files ({} rows) removed (snapshot {snapshot_id})",
            if s.mode == LoadOperation::ReplacePartitions {
                "the load's partitions of "
            } else {
                ""
            },
            s.rows_written,
            s.files_added,
            s.files_removed,
            s.rows_removed,
        ),
    };
    if s.schema_changes.is_empty() {
        line
    } else {
        format!("{line}; schema: {}", s.schema_changes.join(", "))
    }
}
