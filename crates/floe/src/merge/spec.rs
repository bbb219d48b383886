//! The merge vocabulary: what a load asks for (strategy, mode, duplicate keys) and what a merge
//! did (counts).

use serde::Serialize;

use crate::error::{FloeError, Result};

/// What to do with load rows whose key is already in the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MergeStrategy {
    /// A matching live row is replaced; other rows are inserted.
    #[default]
    Upsert,
    /// Load rows whose key exists are dropped; others are inserted.
    InsertOnly,
    /// Every live row whose key appears in the load is deleted; all load rows are inserted.
    DeleteInsert,
}

/// How deleted rows leave the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MergeMode {
    /// Files holding matched rows are rewritten without them.
    #[default]
    CopyOnWrite,
    /// Position-delete files hide matched rows (format v2).
    MergeOnRead,
}

/// Which load row wins when one key appears several times in a load (upsert, insert-only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DuplicateKeys {
    /// The last occurrence in input order.
    #[default]
    LastWins,
    /// The greatest (`descending`) or smallest value of a column; ties go to the last row.
    SortBy { column: String, descending: bool },
    /// Duplicates reject the load.
    Error,
}

/// The names the CLI and the Python package use (`upsert`, `insert-only`, `delete-insert`).
impl std::str::FromStr for MergeStrategy {
    type Err = FloeError;
    fn from_str(s: &str) -> Result<Self> {
        crate::error::parse_choice("merge strategy", s)
    }
}

/// `copy-on-write` or `merge-on-read`.
impl std::str::FromStr for MergeMode {
    type Err = FloeError;
    fn from_str(s: &str) -> Result<Self> {
        crate::error::parse_choice("merge mode", s)
    }
}

/// What a load does with one key appearing several times (upsert, insert-only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnDuplicateKeys {
    /// The last occurrence in input order wins (or the dedup-sort winner).
    #[default]
    Last,
    /// Reject the load.
    Error,
}

/// `last` or `error`.
impl std::str::FromStr for OnDuplicateKeys {
    type Err = FloeError;
    fn from_str(s: &str) -> Result<Self> {
        crate::error::parse_choice("on-duplicate-keys", s)
    }
}

impl DuplicateKeys {
    /// From the faces' two settings: `dedup_sort` (`COLUMN[:asc|desc]`, default descending)
    /// and `on_duplicate_keys`, which exclude each other when it is `error`.
    pub fn from_settings(
        dedup_sort: Option<&str>,
        on_duplicate_keys: OnDuplicateKeys,
    ) -> Result<Self> {
        match (dedup_sort, on_duplicate_keys) {
            (Some(_), OnDuplicateKeys::Error) => Err(FloeError::InvalidOption(
                "dedup-sort and on-duplicate-keys error exclude each other".into(),
            )),
            (None, OnDuplicateKeys::Error) => Ok(Self::Error),
            (None, OnDuplicateKeys::Last) => Ok(Self::LastWins),
            (Some(spec), OnDuplicateKeys::Last) => {
                let (column, order) = spec.rsplit_once(':').unwrap_or((spec, "desc"));
                let descending = match order.to_ascii_lowercase().as_str() {
                    "desc" => true,
                    "asc" => false,
                    other => {
                        return Err(FloeError::InvalidOption(format!(
                            "dedup-sort {spec}: order must be asc or desc, not '{other}'"
                        )));
                    }
                };
                Ok(Self::SortBy {
                    column: column.to_string(),
                    descending,
                })
            }
        }
    }
}

/// The merge a load asks for.
#[derive(Debug, Clone)]
pub struct MergeSpec {
    pub keys: Vec<String>,
    pub strategy: MergeStrategy,
    pub mode: MergeMode,
    pub hard_delete_column: Option<String>,
    pub duplicates: DuplicateKeys,
    /// Memory the sorts may use together before spilling.
    pub memory_limit: usize,
}

/// What a merge did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MergeCounts {
    pub rows_inserted: u64,
    pub rows_updated: u64,
    pub rows_deleted: u64,
    pub files_rewritten: u64,
    pub delete_files_added: u64,
    /// Sorted runs the merge's sorts spilled to disk (0: everything fit the memory limit).
    pub spill_runs: u64,
}

impl MergeSpec {
    /// Every column the join reads: keys, the hard-delete column, the dedup column.
    pub fn columns(&self) -> Vec<String> {
        let mut names = self.keys.clone();
        names.extend(self.hard_delete_column.clone());
        if let DuplicateKeys::SortBy { column, .. } = &self.duplicates {
            names.push(column.clone());
        }
        names
    }
}
