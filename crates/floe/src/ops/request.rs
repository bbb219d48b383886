//! One entry point for the faces (CLI, Python): a load described as data, run by the builder
//! of its kind. The faces parse their arguments into a [`LoadKind`] and [`LoadOptions`] and
//! call [`run`]; they report the [`LoadSummary`] or the error, nothing more.

use iceberg::TableIdent;

use super::{AppendBuilder, LoadOptions, LoadSummary, MergeBuilder, ReplaceBuilder};
use crate::catalog::Catalog;
use crate::error::{FloeError, Result};
use crate::merge::MergeSpec;
use crate::source::Source;

/// The modes a face names (`append`, `replace`, `merge`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadMode {
    /// Add the input's rows (snapshot operation `append`).
    #[default]
    Append,
    /// Make the input the table's whole content (snapshot operation `overwrite`).
    Replace,
    /// Match rows by key against the table: upsert (default), insert-only, delete-insert.
    Merge,
}

/// `append`, `replace` or `merge`.
impl std::str::FromStr for LoadMode {
    type Err = FloeError;
    fn from_str(s: &str) -> Result<Self> {
        crate::error::parse_choice("mode", s)
    }
}

/// What a load does to the table.
#[derive(Debug, Clone)]
pub enum LoadKind {
    /// Add the input's rows.
    Append,
    /// Make the input the table's content: all of it, or only the partitions the input has.
    Replace { partitions_only: bool },
    /// Match the input against the table by key.
    Merge(MergeSpec),
}

impl LoadKind {
    /// The kind of `mode` with the faces' settings. `merge` is used only by mode merge, which
    /// needs its keys; keys or replace-partitions given to another mode are an error.
    pub fn from_mode(mode: LoadMode, replace_partitions: bool, merge: MergeSpec) -> Result<Self> {
        if replace_partitions && mode != LoadMode::Replace {
            return Err(FloeError::InvalidOption(
                "replace-partitions goes with mode replace".into(),
            ));
        }
        if mode != LoadMode::Merge && !merge.keys.is_empty() {
            return Err(FloeError::InvalidOption("key goes with mode merge".into()));
        }
        Ok(match mode {
            LoadMode::Append => Self::Append,
            LoadMode::Replace => Self::Replace {
                partitions_only: replace_partitions,
            },
            LoadMode::Merge if merge.keys.is_empty() => {
                return Err(FloeError::InvalidOption(
                    "mode merge needs a key (one or more columns)".into(),
                ));
            }
            LoadMode::Merge => Self::Merge(merge),
        })
    }
}

/// What a load reads: its rows, and (merge only) keys whose table rows are deleted first and
/// the only keys its rows may have.
pub struct LoadInput {
    pub rows: Source,
    pub delete_keys: Option<Source>,
    pub only_keys: Option<Source>,
}

impl From<Source> for LoadInput {
    fn from(rows: Source) -> Self {
        Self {
            rows,
            delete_keys: None,
            only_keys: None,
        }
    }
}

/// Runs one load of `kind` into `table`.
pub async fn run(
    catalog: &Catalog,
    table: TableIdent,
    kind: LoadKind,
    options: LoadOptions,
    input: impl Into<LoadInput>,
) -> Result<LoadSummary> {
    let input = input.into();
    let inferred_schema = input.rows.inferred_schema()?;
    let mut summary = run_kind(catalog, table, kind, options, input).await?;
    summary.inferred_schema = inferred_schema;
    Ok(summary)
}

async fn run_kind(
    catalog: &Catalog,
    table: TableIdent,
    kind: LoadKind,
    options: LoadOptions,
    input: LoadInput,
) -> Result<LoadSummary> {
    let LoadInput {
        rows: source,
        delete_keys,
        only_keys,
    } = input;
    if (delete_keys.is_some() || only_keys.is_some()) && !matches!(kind, LoadKind::Merge(_)) {
        return Err(FloeError::InvalidOption(
            "delete keys and only keys go with mode merge".into(),
        ));
    }
    match kind {
        LoadKind::Append => {
            AppendBuilder::new(catalog, table)
                .with_options(options)
                .execute(source)
                .await
        }
        LoadKind::Replace { partitions_only } => {
            ReplaceBuilder::new(catalog, table)
                .with_options(options)
                .only_partitions_in_load(partitions_only)
                .execute(source)
                .await
        }
        LoadKind::Merge(spec) => {
            MergeBuilder::new(catalog, table, spec.keys.clone())
                .with_options(options)
                .with_strategy(spec.strategy)
                .with_mode(spec.mode)
                .with_hard_delete_column(spec.hard_delete_column.clone())
                .with_duplicates(spec.duplicates.clone())
                .with_memory_limit(spec.memory_limit)
                .with_delete_keys(delete_keys)
                .with_only_keys(only_keys)
                .execute(source)
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(keys: &[&str]) -> MergeSpec {
        MergeSpec {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            strategy: Default::default(),
            mode: Default::default(),
            hard_delete_column: None,
            duplicates: Default::default(),
            memory_limit: 1 << 20,
        }
    }

    #[test]
    fn modes_parse_and_settings_must_belong_to_them() {
        assert_eq!("MERGE".parse::<LoadMode>().unwrap(), LoadMode::Merge);
        assert!("upsert".parse::<LoadMode>().is_err());
        let merge = LoadKind::from_mode(LoadMode::Merge, false, spec(&["id"])).unwrap();
        assert!(matches!(merge, LoadKind::Merge(s) if s.keys == ["id"]));
        assert!(LoadKind::from_mode(LoadMode::Merge, false, spec(&[])).is_err());
        assert!(LoadKind::from_mode(LoadMode::Append, false, spec(&["id"])).is_err());
        assert!(LoadKind::from_mode(LoadMode::Append, true, spec(&[])).is_err());
        let replace = LoadKind::from_mode(LoadMode::Replace, true, spec(&[])).unwrap();
        assert!(matches!(
            replace,
            LoadKind::Replace {
                partitions_only: true
            }
        ));
    }
}
