//! One entry point for the faces (CLI, Python): a load described as data, run by the builder
//! of its kind. The faces parse their arguments into a [`LoadKind`] and [`LoadOptions`] and
//! call [`run`]; they report the [`LoadSummary`] or the error, nothing more.

use iceberg::TableIdent;

use super::{AppendBuilder, LoadOptions, LoadSummary, MergeBuilder, ReplaceBuilder};
use crate::catalog::Catalog;
use crate::error::{FloeError, Result};
use crate::merge::MergeSpec;
use crate::source::Source;

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
    /// The kind a face names by mode (`append`, `replace`, `merge`), with its settings; a
    /// setting that belongs to another mode is an error.
    pub fn from_mode(
        mode: &str,
        replace_partitions: bool,
        merge: Option<MergeSpec>,
    ) -> Result<Self> {
        let kind = match mode.to_ascii_lowercase().as_str() {
            "append" => Self::Append,
            "replace" => Self::Replace {
                partitions_only: replace_partitions,
            },
            "merge" => match merge {
                Some(spec) if !spec.keys.is_empty() => Self::Merge(spec),
                _ => {
                    return Err(FloeError::InvalidOption(
                        "mode merge needs a key (one or more columns)".into(),
                    ));
                }
            },
            other => {
                return Err(FloeError::InvalidOption(format!(
                    "mode '{other}': expected append, replace or merge"
                )));
            }
        };
        if replace_partitions && !matches!(kind, Self::Replace { .. }) {
            return Err(FloeError::InvalidOption(
                "replace-partitions goes with mode replace".into(),
            ));
        }
        Ok(kind)
    }
}

/// Runs one load of `kind` into `table`.
pub async fn run(
    catalog: &Catalog,
    table: TableIdent,
    kind: LoadKind,
    options: LoadOptions,
    source: Source,
) -> Result<LoadSummary> {
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
                .execute(source)
                .await
        }
    }
}
