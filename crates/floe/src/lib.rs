//! floe: stream data of any size into Apache Iceberg tables, in bounded memory, with exactly
//! one atomic snapshot per load.
//!
//! A load is a pipeline of stages, each a module with one job:
//!
//! ```text
//! source  -> conform -> write -> [merge] -> commit
//! (files to   (cast to    (rolling   (match keys   (snapshot producer, manifests,
//!  bounded     the table   Parquet    against the   catalog compare-and-swap,
//!  batches)    schema)     files)     table)        retry, idempotency by load id)
//! ```
//!
//! [`ops`] holds one short builder per kind of load ([`ops::AppendBuilder`],
//! [`ops::ReplaceBuilder`], [`ops::MergeBuilder`]), each driving one load session that ends in
//! one commit; a file ledger owns the cleanup of a load that does not land. [`ops::run`] runs a
//! load described as data ([`ops::LoadKind`]), as the CLI and the Python package do. [`catalog`]
//! opens catalogs configured the way pyiceberg users configure them; [`source`] turns files or
//! any Arrow record-batch stream into bounded batches. The stages themselves are internal.
//!
//! ```no_run
//! # async fn demo() -> floe::Result<()> {
//! use std::sync::Arc;
//! use floe::{Catalog, CatalogConfig, ParquetSource, Progress, ops};
//! let catalog = Catalog::open(CatalogConfig::resolve(None, None)?).await?;
//! let table = floe::parse_table_ident("analytics.events")?;
//! let source = ParquetSource::from_inputs(&["data/"])?.into_source(Arc::new(Progress::default()))?;
//! let summary = ops::AppendBuilder::new(&catalog, table).execute(source).await?;
//! println!("{}", summary.message);
//! # Ok(()) }
//! ```

pub mod catalog;
mod commit;
mod conform;
pub mod error;
mod ledger;
mod maintain;
mod merge;
pub mod ops;
mod partition;
pub mod progress;
pub mod source;
mod spill;
mod write;

pub use catalog::{Catalog, CatalogConfig, TableState, parse_table_ident};
pub use error::{FloeError, Result};
/// The `namespace.table` name every builder takes (from [`parse_table_ident`]).
pub use iceberg::TableIdent;
pub use ops::{LoadOptions, LoadSummary};
pub use progress::{Progress, ProgressSnapshot, Stage};
pub use source::{BatchBudget, ParquetSource, Source, SourceBatch};
pub use write::{WriteOptions, parse_size};

/// Helpers and internals the crate's tests reach; not part of floe's API.
#[doc(hidden)]
pub mod testing;
