//! Catalog access: open a configured catalog, load or stage a table, and commit new metadata.
//!
//! Reads (namespaces, table loading) go through the `iceberg` crate's catalog implementations.
//! Commits do not: iceberg-rust 0.10.1 only accepts its own sealed `TableCommit`, so floe sends
//! its own snapshot updates through a [`Committer`] per catalog kind (SQL compare-and-swap
//! today). When upstream can take arbitrary updates, the committers shrink to a call.

pub mod config;
mod sql;

use std::collections::HashMap;
use std::sync::Arc;

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
    if parts.iter().any(|p| p.trim().is_empty()) {
        return Err(invalid("empty name part"));
    }
    if parts
        .iter()
        .any(|p| p.chars().any(|c| c.is_control() || c == '/' || c == '\\'))
    {
        return Err(invalid(
            "name parts may not contain '/', '\\' or control characters",
        ));
    }
    let (table, ns) = parts.split_last().expect("at least two parts");
    let ns = NamespaceIdent::from_strs(ns.iter()).map_err(|e| invalid(&e.to_string()))?;
    Ok(TableIdent::new(ns, table.to_string()))
}

/// Human-readable `a.b.table` form of an identifier.
pub fn display_ident(ident: &TableIdent) -> String {
    format!("{}.{}", ident.namespace().join("."), ident.name())
}

/// A table as a load sees it: metadata pinned at one version.
#[derive(Clone, Debug)]
pub struct TableState {
    pub ident: TableIdent,
    pub metadata: TableMetadataRef,
    /// `None` while the table is only staged: it will be created by the load's commit.
    pub metadata_location: Option<String>,
    pub file_io: FileIO,
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
}

/// The commit path of one catalog kind.
#[derive(Debug)]
enum Committer {
    Sql(sql::SqlCommitter),
}

/// An opened catalog.
#[derive(Debug)]
pub struct Catalog {
    name: String,
    inner: Arc<dyn iceberg::Catalog>,
    committer: Committer,
    file_io: FileIO,
    warehouse: String,
}

impl Catalog {
    /// Opens the catalog a [`CatalogConfig`] describes.
    pub async fn open(config: CatalogConfig) -> Result<Self> {
        match config.kind().as_str() {
            "sql" => sql::open(config).await,
            kind => Err(FloeError::CatalogNotSupported {
                catalog: config.name.clone(),
                kind: kind.to_string(),
            }),
        }
    }

    /// The catalog's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The FileIO for table data and metadata.
    pub fn file_io(&self) -> &FileIO {
        &self.file_io
    }

    /// Loads a table, or `None` if it does not exist.
    pub async fn load_table(&self, ident: &TableIdent) -> Result<Option<TableState>> {
        let ctx = || {
            format!(
                "catalog '{}': cannot load table {}",
                self.name,
                display_ident(ident)
            )
        };
        if !self.inner.table_exists(ident).await.context(ctx)? {
            return Ok(None);
        }
        let table = self.inner.load_table(ident).await.context(ctx)?;
        Ok(Some(TableState {
            ident: ident.clone(),
            metadata: table.metadata_ref(),
            metadata_location: table.metadata_location().map(str::to_string),
            file_io: self.file_io.clone(),
        }))
    }

    /// Creates the namespace (and its parents) if missing.
    pub async fn ensure_namespace(&self, ns: &NamespaceIdent) -> Result<()> {
        let parts = ns.clone().inner();
        for depth in 1..=parts.len() {
            let ns = NamespaceIdent::from_strs(&parts[..depth]).context(|| "namespace".into())?;
            let ctx = || {
                format!(
                    "catalog '{}': cannot create namespace {}",
                    self.name,
                    ns.join(".")
                )
            };
            if self.inner.namespace_exists(&ns).await.context(ctx)? {
                continue;
            }
            if let Err(e) = self.inner.create_namespace(&ns, HashMap::new()).await {
                // Another loader may have created it in between.
                if !self.inner.namespace_exists(&ns).await.context(ctx)? {
                    return Err(e).context(ctx);
                }
            }
        }
        Ok(())
    }

    /// Prepares a new table's metadata without registering it; the load's commit creates it.
    pub async fn stage_table(
        &self,
        ident: &TableIdent,
        schema: Schema,
        partition_spec: Option<UnboundPartitionSpec>,
        properties: HashMap<String, String>,
    ) -> Result<TableState> {
        let ctx = || format!("cannot prepare table {}", display_ident(ident));
        let ns_location = self
            .inner
            .get_namespace(ident.namespace())
            .await
            .ok()
            .and_then(|ns| ns.properties().get("location").cloned());
        let location = match ns_location {
            Some(loc) => format!("{}/{}", loc.trim_end_matches('/'), ident.name()),
            None => format!(
                "{}/{}/{}",
                self.warehouse.trim_end_matches('/'),
                ident.namespace().join("/"),
                ident.name()
            ),
        };
        let creation = TableCreation::builder()
            .name(ident.name().to_string())
            .location(location)
            .schema(schema)
            .partition_spec_opt(partition_spec)
            .properties(properties)
            .format_version(FormatVersion::V2)
            .build();
        let metadata: TableMetadata = TableMetadataBuilder::from_table_creation(creation)
            .context(ctx)?
            .build()
            .context(ctx)?
            .metadata;
        Ok(TableState {
            ident: ident.clone(),
            metadata: Arc::new(metadata),
            metadata_location: None,
            file_io: self.file_io.clone(),
        })
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
        match &self.committer {
            Committer::Sql(c) => c.commit(base, requirements, updates).await,
        }
    }
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
}
