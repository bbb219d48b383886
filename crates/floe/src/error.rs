//! Errors of the floe library.
//!
//! Every variant names what the user has to look at: the input file (and row group), the column,
//! the table or the catalog. The CLI turns them into one-paragraph reports.

use std::path::PathBuf;

/// Result alias used across floe.
pub type Result<T, E = FloeError> = std::result::Result<T, E>;

/// Everything that can make a load fail.
#[derive(Debug, thiserror::Error)]
pub enum FloeError {
    /// The table identifier is not `namespace.table`.
    #[error("invalid table name '{name}': {reason}")]
    InvalidTableName { name: String, reason: String },

    /// No input file matched what the user named.
    #[error("no input found for '{pattern}': {reason}")]
    NoInput { pattern: String, reason: String },

    /// An input file could not be opened or decoded.
    #[error("cannot read input '{path}'{}: {reason}", location_suffix(.row_group))]
    InputRead {
        path: PathBuf,
        row_group: Option<usize>,
        reason: String,
    },

    /// A record of a text input (JSON lines, CSV) could not be parsed.
    #[error("cannot read input '{path}' at line {line}: {reason}")]
    InputLine {
        path: PathBuf,
        line: u64,
        reason: String,
    },

    /// An input column has a type the table cannot hold.
    #[error(
        "input '{origin}': column '{column}' has type {found}, which Iceberg cannot store: {reason}"
    )]
    UnsupportedType {
        origin: String,
        column: String,
        found: String,
        reason: String,
    },

    /// The input's schema does not match the table's.
    #[error("input '{origin}' does not match table {table}: {detail}")]
    SchemaMismatch {
        origin: String,
        table: String,
        detail: String,
    },

    /// An input value cannot be stored in the table's type without changing it (a timestamp
    /// beyond microseconds' range, a decimal above its precision).
    #[error("input '{origin}': column '{column}' of table {table}: {detail}")]
    ValueOutOfRange {
        origin: String,
        table: String,
        column: String,
        detail: String,
    },

    /// A merge key column holds nulls.
    #[error(
        "input '{origin}': key column '{column}' has {nulls} null value(s); merge keys must not be null"
    )]
    NullKey {
        origin: String,
        column: String,
        nulls: usize,
    },

    /// One key appears several times in a merge load that refuses duplicates.
    #[error(
        "the load has {rows} rows with key {key} and --on-duplicate-keys error rejects duplicates"
    )]
    DuplicateKey { rows: usize, key: String },

    /// An input file changed between two reads of one load (a merge reads Parquet inputs
    /// twice; the copy path plans a file, then copies it).
    #[error("input '{path}' changed while the load was reading it; nothing was written")]
    InputChanged { path: PathBuf },

    /// A maintenance command named a table the catalog does not have.
    #[error("table {table} does not exist")]
    NoSuchTable { table: String },

    /// The table uses a feature floe does not read or write yet (format v3, equality
    /// deletes, delete files in a format v1 table).
    #[error("table {table}: {detail}")]
    UnsupportedTable { table: String, detail: String },

    /// A required column got a null.
    #[error(
        "input '{origin}': column '{column}' is required in table {table} but has {nulls} null value(s)"
    )]
    NullInRequiredColumn {
        origin: String,
        table: String,
        column: String,
        nulls: usize,
    },

    /// The catalog could not be configured or opened.
    #[error("catalog '{catalog}': {reason}")]
    Catalog { catalog: String, reason: String },

    /// The catalog refused a request (a 4xx answer other than a conflict, timeout or rate
    /// limit): asking again will not help; the request or the configuration must change.
    #[error("catalog '{catalog}' refused: {reason}")]
    CatalogRefused { catalog: String, reason: String },

    /// A catalog type floe does not speak yet.
    #[error(
        "catalog '{catalog}' has type '{kind}', which floe does not support yet (supported: sql with SQLite, rest)"
    )]
    CatalogNotSupported { catalog: String, kind: String },

    /// Another writer changed the table in a way this load cannot be rebased over.
    #[error("table {table} was changed by another writer during the load: {reason}")]
    Conflict { table: String, reason: String },

    /// The commit kept losing races until the retry budget ran out.
    #[error(
        "table {table}: gave up after {attempts} commit attempts, other writers kept committing first"
    )]
    RetriesExhausted { table: String, attempts: u32 },

    /// The catalog may or may not have applied the commit, and could not be asked. The load's
    /// files are kept (the table may reference them); a rerun with the same load id settles it.
    #[error(
        "table {table}: the commit's outcome is unknown ({reason}). The load may or may not have landed; rerun it with --load-id {load_id}: the rerun commits only if it did not"
    )]
    CommitStateUnknown {
        table: String,
        load_id: String,
        reason: String,
    },

    /// An error reported by the iceberg crate, with what floe was doing at the time.
    #[error("{context}: {source}")]
    Iceberg {
        context: String,
        #[source]
        source: Box<iceberg::Error>,
    },

    /// An Arrow compute error (cast, concat), with context.
    #[error("{context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: arrow_schema::ArrowError,
    },

    /// A local I/O error, with context.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A data file could not be written.
    #[error("cannot write data file '{path}': {reason}")]
    DataFileWrite { path: String, reason: String },

    /// A task of the load (a data file writer, the copy thread) stopped without reporting
    /// why: it panicked or was cancelled by the runtime.
    #[error("{task} stopped unexpectedly: {reason}")]
    TaskFailed { task: String, reason: String },

    /// A distributed load's worker handed back files its plan does not allow (another load's,
    /// outside the table, of another schema or spec, missing, or counted wrongly); nothing
    /// was committed.
    #[error("table {table}: a worker's staged files do not fit the load's plan: {detail}")]
    StagedFiles { table: String, detail: String },

    /// The load was cancelled (Ctrl-C, SIGTERM, or [`crate::Progress::cancel`]) before its
    /// commit; its files were deleted.
    #[error("cancelled before any commit; the files written so far were deleted")]
    Cancelled,

    /// The load was given an option it cannot honour.
    #[error("invalid option: {0}")]
    InvalidOption(String),
}

impl FloeError {
    /// Whether the files a failed load wrote must stay: the table may reference them.
    pub fn keeps_written_files(&self) -> bool {
        matches!(self, FloeError::CommitStateUnknown { .. })
    }
}

fn location_suffix(row_group: &Option<usize>) -> String {
    match row_group {
        Some(rg) => format!(" (row group {rg})"),
        None => String::new(),
    }
}

/// Attach context to foreign errors, so every error says what floe was doing.
pub(crate) trait ResultExt<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> ResultExt<T> for std::result::Result<T, iceberg::Error> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| FloeError::Iceberg {
            context: context(),
            source: Box::new(source),
        })
    }
}

impl<T> ResultExt<T> for std::result::Result<T, arrow_schema::ArrowError> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| FloeError::Arrow {
            context: context(),
            source,
        })
    }
}

impl<T> ResultExt<T> for std::result::Result<T, std::io::Error> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| FloeError::Io {
            context: context(),
            source,
        })
    }
}

/// A face's name for one of the library's choices (`insert-only`, `merge-on-read`, ...):
/// case-insensitive, `_` taken as `-`. Unknown names are an error that lists the known ones,
/// `{what} 'name': expected a, b or c`.
pub(crate) fn parse_choice<T: clap::ValueEnum>(what: &str, text: &str) -> Result<T> {
    let name = text.to_ascii_lowercase().replace('_', "-");
    let name_of = |v: &T| v.to_possible_value().map(|p| p.get_name().to_string());
    if let Some(found) = T::value_variants()
        .iter()
        .find(|v| name_of(v).as_deref() == Some(name.as_str()))
    {
        return Ok(found.clone());
    }
    let names: Vec<String> = T::value_variants().iter().filter_map(name_of).collect();
    let expected = match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.concat(),
    };
    Err(FloeError::InvalidOption(format!(
        "{what} '{name}': expected {expected}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::MergeStrategy;

    #[test]
    fn choices_parse_by_name_and_errors_list_them() {
        let s: MergeStrategy = parse_choice("merge strategy", "Insert_Only").unwrap();
        assert_eq!(s, MergeStrategy::InsertOnly);
        let e = parse_choice::<MergeStrategy>("merge strategy", "merge").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid option: merge strategy 'merge': expected upsert, insert-only or delete-insert"
        );
    }
}
