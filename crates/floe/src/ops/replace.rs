//! Replace: the input becomes the table's whole content, in one `overwrite` snapshot.
//!
//! The snapshot removes every live data and delete file and adds the new ones; readers see
//! either the old table or the new one. An empty input empties the table (still one snapshot).
//! On a concurrent commit the set of removed files is re-planned against the new state.

use iceberg::TableIdent;

use super::pipeline::{self, Kind};
use super::{LoadOptions, LoadSummary};
use crate::catalog::Catalog;
use crate::error::Result;
use crate::source::Source;

/// Builder for a replace load.
pub struct ReplaceBuilder<'a> {
    catalog: &'a Catalog,
    table: TableIdent,
    options: LoadOptions,
}

impl<'a> ReplaceBuilder<'a> {
    pub fn new(catalog: &'a Catalog, table: TableIdent) -> Self {
        Self {
            catalog,
            table,
            options: LoadOptions::default(),
        }
    }

    pub fn with_options(mut self, options: LoadOptions) -> Self {
        self.options = options;
        self
    }

    /// Replaces the table's content with `source`; creates the table if missing.
    pub async fn execute(self, source: Source) -> Result<LoadSummary> {
        pipeline::run(
            self.catalog,
            &self.table,
            source,
            self.options,
            Kind::Replace,
        )
        .await
    }
}
