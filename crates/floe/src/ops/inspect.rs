//! Inspect: what a table holds (schema, spec, refs, snapshots with their load ids, and the
//! current snapshot's files per partition). Reads only; commits nothing.

use iceberg::TableIdent;

use crate::catalog::{Catalog, display_ident};
use crate::error::{FloeError, Result};
pub use crate::maintain::inspect::{
    FileInfo, FileStats, HistoryEntry, PartitionStats, RefInfo, SnapshotInfo, TableReport,
};

/// The report of `table`.
pub async fn inspect(catalog: &Catalog, table: &TableIdent) -> Result<TableReport> {
    let state = existing(catalog, table).await?;
    crate::maintain::inspect::inspect(&state).await
}

/// Calls `each` for every live file of `table`'s current snapshot (one at a time: a table's
/// file list is never held).
pub async fn for_each_file(
    catalog: &Catalog,
    table: &TableIdent,
    each: impl FnMut(FileInfo),
) -> Result<()> {
    let state = existing(catalog, table).await?;
    crate::maintain::inspect::for_each_file(&state, each).await
}

/// The state of `table`, which maintenance needs to exist.
pub(crate) async fn existing(
    catalog: &Catalog,
    table: &TableIdent,
) -> Result<crate::catalog::TableState> {
    catalog
        .load_table(table)
        .await?
        .ok_or_else(|| FloeError::NoSuchTable {
            table: display_ident(table),
        })
}
