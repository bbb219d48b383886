//! Catalog access: open a configured catalog, load or stage a table, and commit new metadata.
//!
//! Two kinds of catalog, one face:
//! - `sql` (SQLite, the embedded default): reads through `iceberg-catalog-sql`, commits as floe's
//!   own compare-and-swap on `metadata_location` (`catalog/sql.rs`);
//! - `rest` (any Iceberg REST catalog): floe's own small client (`catalog/rest.rs`) for configuration,
//!   OAuth2 with token refresh, TLS, loads, staged creation and the commit call.
//!
//! Commits never go through iceberg-rust's `Catalog::update_table`: 0.10.1 only accepts its own
//! sealed `TableCommit`, which cannot carry floe's snapshots. When upstream can take arbitrary
//! updates, the commit paths shrink to a call. Table data and metadata files go through a
//! `FileIO` per table (`catalog/storage.rs`): local paths, or S3 with the pyiceberg property names.

pub mod config;
mod rest;
mod sql;
mod storage;

use std::collections::HashMap;

use iceberg::io::FileIO;
use iceberg::spec::{
    FormatVersion, Schema, TableMetadata, TableMetadataBuilder, TableMetadataRef,
    UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::{NamespaceIdent, TableCreation, TableIdent, TableRequirement, TableUpdate};

pub use config::CatalogConfig;

use crate::error::{FloeError, Result, ResultExt};

/// A parsed `namespace.table` (nested namespaces allowed: `a.b.table`).
pub fn parse_table_ident(name: &str) -> Result<TableIdent> {
    let invalid = |reason: &str| FloeError::InvalidTableName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() < 2 {
        return Err(invalid(
            "expected namespace.table (for example analytics.events)",
        ));
    }
    let (table, ns) = parts.split_last().expect("at least two parts");
    let ns = NamespaceIdent::from_strs(ns.iter()).map_err(|e| invalid(&e.to_string()))?;
    let ident = TableIdent::new(ns, table.to_string());
    validate_ident(&ident)?;
    Ok(ident)
}

/// Every part of a table identifier becomes a directory name under the warehouse: it must be
/// non-empty, not `.` or `..`, and free of path separators and control characters (checked
/// for identifiers built in code as for parsed ones).
pub fn validate_ident(ident: &TableIdent) -> Result<()> {
    let parts = ident
        .namespace()
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(ident.name()));
    for part in parts {
        let reason = if part.trim().is_empty() {
            "empty name part"
        } else if part == "." || part == ".." {
            "name parts may not be '.' or '..'"
        } else if part
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
        {
            "name parts may not contain '/', '\\' or control characters"
        } else {
            continue;
        };
        return Err(FloeError::InvalidTableName {
            name: display_ident(ident),
            reason: reason.to_string(),
        });
    }
    Ok(())
}

/// Human-readable `a.b.table` form of an identifier.
pub fn display_ident(ident: &TableIdent) -> String {
    format!("{}.{}", ident.namespace().join("."), ident.name())
}

/// A table as a load sees it: metadata pinned at one version.
#[derive(Clone)]
pub struct TableState {
    pub ident: TableIdent,
    pub metadata: TableMetadataRef,
    /// `None` while the table is only staged: it will be created by the load's commit.
    pub metadata_location: Option<String>,
    pub file_io: FileIO,
}

// FileIO's own Debug prints its properties, storage secrets included.
impl std::fmt::Debug for TableState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableState")
            .field("ident", &self.ident)
            .field("metadata_location", &self.metadata_location)
            .finish_non_exhaustive()
    }
}

impl TableState {
    /// Whether this table does not exist in the catalog yet.
    pub fn is_staged(&self) -> bool {
        self.metadata_location.is_none()
    }

    /// An `iceberg` table handle for scans.
    pub fn table(&self) -> Result<Table> {
        let mut builder = Table::builder()
            .identifier(self.ident.clone())
            .metadata(self.metadata.clone())
            .file_io(self.file_io.clone())
            .runtime(iceberg::Runtime::try_current().context(|| "no async runtime".into())?)
            .readonly(true);
        if let Some(loc) = &self.metadata_location {
            builder = builder.metadata_location(loc.clone());
        }
        builder
            .build()
            .context(|| format!("cannot open table {}", display_ident(&self.ident)))
    }

    pub fn name(&self) -> String {
        display_ident(&self.ident)
    }
}

/// What a commit attempt came to.
#[derive(Debug)]
pub enum CommitOutcome {
    /// The new metadata is the table's current state.
    Committed {
        metadata_location: String,
        metadata: TableMetadataRef,
    },
    /// Someone else committed first; nothing of this attempt is visible. Reload and retry.
    Conflict(String),
    /// The catalog may or may not have applied the commit (a 5xx, a timeout, a dropped
    /// connection after the request was sent). Nothing the attempt wrote may be deleted until
    /// the table shows whether the load landed.
    Unknown(String),
}

/// The catalog implementation behind a [`Catalog`].
#[derive(Debug)]
enum Backend {
    Sql(sql::SqlCatalog),
    Rest(rest::RestCatalog),
}

/// An opened catalog.
#[derive(Debug)]
pub struct Catalog {
    name: String,
    backend: Backend,
}

impl Catalog {
    /// Opens the catalog a [`CatalogConfig`] describes.
    pub async fn open(config: CatalogConfig) -> Result<Self> {
        let name = config.name.clone();
        let backend = match config.kind().as_str() {
            "sql" => Backend::Sql(sql::SqlCatalog::open(config).await?),
            "rest" => Backend::Rest(rest::RestCatalog::open(config).await?),
            kind => {
                return Err(FloeError::CatalogNotSupported {
                    catalog: config.name.clone(),
                    kind: kind.to_string(),
                });
            }
        };
        Ok(Self { name, backend })
    }

    /// The catalog's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Loads a table, or `None` if it does not exist.
    pub async fn load_table(&self, ident: &TableIdent) -> Result<Option<TableState>> {
        match &self.backend {
            Backend::Sql(c) => c.load_table(ident).await,
            Backend::Rest(c) => c.load_table(ident).await,
        }
    }

    /// Creates the namespace (and its parents) if missing.
    pub async fn ensure_namespace(&self, ns: &NamespaceIdent) -> Result<()> {
        let parts = ns.clone().inner();
        for depth in 1..=parts.len() {
            let ns = NamespaceIdent::from_strs(&parts[..depth]).context(|| "namespace".into())?;
            match &self.backend {
                Backend::Sql(c) => c.ensure_namespace(&ns).await?,
                Backend::Rest(c) => c.ensure_namespace(&ns).await?,
            }
        }
        Ok(())
    }

    /// Registers a table that exists as files (as pyiceberg's `register_table` does): the
    /// catalog then names `ident` the table whose current metadata file is
    /// `metadata_location`. The namespace is created if missing. A table already named
    /// `ident` is [`FloeError::CatalogRefused`].
    pub async fn register_table(
        &self,
        ident: &TableIdent,
        metadata_location: &str,
    ) -> Result<TableState> {
        validate_ident(ident)?;
        let table = display_ident(ident);
        self.ensure_namespace(ident.namespace()).await?;
        if self.load_table(ident).await?.is_some() {
            return Err(FloeError::CatalogRefused {
                catalog: self.name.clone(),
                reason: format!("cannot register table {table}: it already exists"),
            });
        }
        match &self.backend {
            Backend::Sql(c) => c.register_table(ident, metadata_location).await?,
            Backend::Rest(c) => c.register_table(ident, metadata_location).await?,
        }
        self.load_table(ident)
            .await?
            .ok_or_else(|| FloeError::Catalog {
                catalog: self.name.clone(),
                reason: format!("table {table} was registered but cannot be found"),
            })
    }

    /// Prepares a new table's metadata without registering it; the load's commit creates it.
    /// `location` overrides where the table lives (default: the catalog's choice).
    pub async fn stage_table(
        &self,
        ident: &TableIdent,
        schema: Schema,
        partition_spec: Option<UnboundPartitionSpec>,
        properties: HashMap<String, String>,
        location: Option<String>,
    ) -> Result<TableState> {
        let location = location.map(|l| l.trim_end_matches('/').to_string());
        match &self.backend {
            Backend::Sql(c) => {
                c.stage_table(ident, schema, partition_spec, properties, location)
                    .await
            }
            Backend::Rest(c) => {
                c.stage_table(ident, schema, partition_spec, properties, location)
                    .await
            }
        }
    }

    /// Atomically moves the table from `base` to `base` + `updates`, if `requirements` still hold.
    ///
    /// For a staged table this creates it. Never retries: the caller re-plans on conflict.
    pub async fn commit(
        &self,
        base: &TableState,
        requirements: &[TableRequirement],
        updates: Vec<TableUpdate>,
    ) -> Result<CommitOutcome> {
        match &self.backend {
            Backend::Sql(c) => c.commit(base, requirements, updates).await,
            Backend::Rest(c) => c.commit(base, requirements, updates).await,
        }
    }
}

/// A `FileIO` for a table at `location` with the storage settings `props` (those of another
/// process's `FileIO`: a distributed load's workers rebuild the driver's).
pub(crate) fn file_io_for(location: &str, props: &HashMap<String, String>) -> Result<FileIO> {
    let props = props.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    storage::file_io(location, &props)
        .map_err(|e| FloeError::InvalidOption(format!("table location {location}: {e}")))
}

/// The metadata of a table that does not exist yet, laid out as `TableCreation` would.
pub(crate) fn staged_metadata(
    ident: &TableIdent,
    location: String,
    schema: Schema,
    partition_spec: Option<UnboundPartitionSpec>,
    properties: HashMap<String, String>,
) -> Result<TableMetadata> {
    let ctx = || format!("cannot prepare table {}", display_ident(ident));
    let creation = TableCreation::builder()
        .name(ident.name().to_string())
        .location(location)
        .schema(schema)
        .partition_spec_opt(partition_spec)
        .properties(properties)
        .format_version(FormatVersion::V2)
        .build();
    Ok(TableMetadataBuilder::from_table_creation(creation)
        .context(ctx)?
        .build()
        .context(ctx)?
        .metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_parse() {
        let t = parse_table_ident("a.b.events").unwrap();
        assert_eq!(t.name(), "events");
        assert_eq!(t.namespace().clone().inner(), vec!["a", "b"]);
        assert_eq!(display_ident(&t), "a.b.events");
        for bad in ["events", "a..b", ".x", "x.", "a/b.c"] {
            assert!(parse_table_ident(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn identifiers_built_in_code_cannot_escape_the_warehouse() {
        let ns = NamespaceIdent::from_strs(["analytics"]).unwrap();
        for bad in ["..", ".", "a/b", "x\\y", " "] {
            let ident = TableIdent::new(ns.clone(), bad.to_string());
            assert!(
                validate_ident(&ident).is_err(),
                "{bad:?} should be rejected"
            );
        }
        let up = TableIdent::new(NamespaceIdent::from_strs([".."]).unwrap(), "t".into());
        assert!(validate_ident(&up).is_err());
        assert!(validate_ident(&TableIdent::new(ns, "events".into())).is_ok());
    }
}
