//! Inspect: what a table holds (schema, spec, refs, snapshots with their load ids, and the
//! current snapshot's files per partition). Reads only; commits nothing.

use iceberg::TableIdent;

use crate::catalog::{Catalog, display_ident};
use crate::error::{FloeError, Result};
pub use crate::maintain::inspect::{FileStats, PartitionStats, RefInfo, SnapshotInfo, TableReport};

/// The report of `table`.
pub async fn inspect(catalog: &Catalog, table: &TableIdent) -> Result<TableReport> {
    let state = catalog
        .load_table(table)
        .await?
        .ok_or_else(|| FloeError::NoSuchTable {
            table: display_ident(table),
        })?;
    crate::maintain::inspect::inspect(&state).await
}
