//! floe: stream data of any size into Apache Iceberg tables, in bounded memory, with exactly
//! one atomic snapshot per load.
//!
//! A load is a pipeline of stages, each a module with one job:
//!
//! ```text
//! source  -> conform -> write -> commit
//! (files to   (cast to    (rolling     (snapshot producer, manifests,
//!  bounded     the table   Parquet      catalog compare-and-swap,
//!  batches)    schema)     data files)  retry, idempotency by load id)
//! ```
//!
//! [`ops`] holds one builder per kind of load ([`ops::AppendBuilder`], [`ops::ReplaceBuilder`]);
//! [`catalog`] opens catalogs configured the way pyiceberg users configure them.
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
pub mod commit;
pub mod conform;
pub mod error;
pub mod ledger;
pub mod merge;
pub mod ops;
pub mod partition;
pub mod progress;
pub mod source;
pub mod spill;
pub mod write;

pub use catalog::{Catalog, CatalogConfig, TableState, parse_table_ident};
pub use error::{FloeError, Result};
pub use ops::{LoadOptions, LoadSummary};
pub use progress::{Progress, ProgressSnapshot};
pub use source::{BatchBudget, ParquetSource, Source, SourceBatch};
pub use write::WriteOptions;
