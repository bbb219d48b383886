//! Replace: the input becomes the table's whole content, in one `overwrite` snapshot.
//!
//! The snapshot removes every live data and delete file and adds the new ones; readers see
//! either the old table or the new one. An empty input empties the table (still one snapshot).
//! On a concurrent commit the set of removed files is re-planned against the new state.
//!
//! With [`ReplaceBuilder::only_partitions_in_load`] (dynamic partition overwrite) only the live
//! files of the partitions the load writes are removed; the rest of the table stays.

use iceberg::TableIdent;

use super::append::write_and_commit;
use super::{LoadOptions, LoadSummary};
use crate::catalog::Catalog;
use crate::commit::LoadOperation;
use crate::error::Result;
use crate::source::Source;

/// Builder for a replace load.
pub struct ReplaceBuilder<'a> {
    catalog: &'a Catalog,
    table: TableIdent,
    options: LoadOptions,
    partitions_only: bool,
}

impl<'a> ReplaceBuilder<'a> {
    pub fn new(catalog: &'a Catalog, table: TableIdent) -> Self {
        Self {
            catalog,
            table,
            options: LoadOptions::default(),
            partitions_only: false,
        }
    }

    /// Replace only the partitions present in the load.
    pub fn only_partitions_in_load(mut self, yes: bool) -> Self {
        self.partitions_only = yes;
        self
    }

    pub fn with_options(mut self, options: LoadOptions) -> Self {
        self.options = options;
        self
    }

    /// Replaces the table's content with `source`; creates the table if missing.
    pub async fn execute(self, source: Source) -> Result<LoadSummary> {
        let operation = if self.partitions_only {
            LoadOperation::ReplacePartitions
        } else {
            LoadOperation::Replace
        };
        write_and_commit(self.catalog, &self.table, source, &self.options, operation).await
    }
}
