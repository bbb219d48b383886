//! Append: add the input's rows to the table in one `append` snapshot.
//!
//! Existing manifests are carried over untouched, so the commit costs O(new files) however
//! long the table's history is. An empty input commits nothing and says so.

use iceberg::TableIdent;

use super::session::{LoadSession, Opened};
use super::{LoadOptions, LoadSummary};
use crate::catalog::Catalog;
use crate::commit::LoadOperation;
use crate::error::Result;
use crate::source::Source;

/// Builder for an append load.
pub struct AppendBuilder<'a> {
    catalog: &'a Catalog,
    table: TableIdent,
    options: LoadOptions,
}

impl<'a> AppendBuilder<'a> {
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

    /// Streams `source` into the table; creates the table from the source's schema if missing.
    pub async fn execute(self, source: Source) -> Result<LoadSummary> {
        write_and_commit(
            self.catalog,
            &self.table,
            source,
            &self.options,
            LoadOperation::Append,
        )
        .await
    }
}

/// Append and replace: the source written as it is, then one commit.
pub(super) async fn write_and_commit(
    catalog: &Catalog,
    table: &TableIdent,
    source: Source,
    options: &LoadOptions,
    operation: LoadOperation,
) -> Result<LoadSummary> {
    let info = source.info();
    match LoadSession::open(catalog, table, Some(&info), options, operation).await? {
        Opened::Skipped(summary) => Ok(*summary),
        Opened::Ready(mut session) => {
            let written = session.write_source(source).await;
            session.commit(catalog, written).await
        }
    }
}
