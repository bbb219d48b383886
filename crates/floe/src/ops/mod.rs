//! Operations: one file and one builder per kind of load.
//!
//! - [`append::AppendBuilder`]: add the input's rows (snapshot operation `append`);
//! - [`replace::ReplaceBuilder`]: make the input the table's whole content (`overwrite`);
//! - [`merge::MergeBuilder`]: upsert, insert-only, delete-insert and hard deletes by key.
//!
//! Both run the same pipeline ([`pipeline`]): source -> conform -> write -> commit.

pub mod append;
pub mod merge;
mod pipeline;
pub mod replace;
pub mod request;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

pub use append::AppendBuilder;
pub use merge::MergeBuilder;
/// The merge vocabulary (strategies, modes, duplicate-key policies).
pub mod merge_spec {
    pub use crate::merge::{
        DuplicateKeys, MergeCounts, MergeMode, MergeSpec, MergeStrategy, OnDuplicateKeys,
    };
}
pub use replace::ReplaceBuilder;
pub use request::{LoadKind, LoadMode, run};

use crate::commit::DEFAULT_MAX_ATTEMPTS;
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
    pub mode: String,
    pub load_id: String,
    /// The snapshot the load committed (or found already committed); `None` if nothing was
    /// committed (empty append).
    pub snapshot_id: Option<i64>,
    /// Snapshot operation: `append`, `overwrite`, or `None` when nothing was committed.
    pub operation: Option<String>,
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
    /// One line for humans.
    pub message: String,
}
