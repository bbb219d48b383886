//! The SQL catalog (SQLite): the schema pyiceberg's `SqlCatalog` and Java's JDBC catalog use.
//!
//! Reads go through `iceberg-catalog-sql`. Commits are floe's own compare-and-swap on
//! `iceberg_tables.metadata_location`, checked by the number of rows the statement changed, so a
//! commit never looks successful without having landed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use iceberg::io::FileIO;
use iceberg::spec::{Schema, TableMetadataBuilder, UnboundPartitionSpec};
use iceberg::{
    CatalogBuilder, MetadataLocation, NamespaceIdent, TableIdent, TableRequirement, TableUpdate,
};
use iceberg_catalog_sql::SqlCatalogBuilder;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use super::{CatalogConfig, CommitOutcome, TableState, display_ident, staged_metadata, storage};
use crate::error::{FloeError, Result, ResultExt};

const CATALOG_TABLE: &str = "iceberg_tables";

/// An opened SQL catalog.
pub(super) struct SqlCatalog {
    catalog_name: String,
    /// iceberg-rust's catalog, for reads and namespaces.
    inner: Arc<dyn iceberg::Catalog>,
    /// floe's own connection, for the compare-and-swap commit.
    pool: SqlitePool,
    file_io: FileIO,
    warehouse: String,
}

/// A SQLAlchemy-style SQLite URL (`sqlite:////abs/path.db`, `sqlite:///rel.db`) as a file path.
fn sqlite_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("sqlite")?;
    let rest = match rest.split_once(':') {
        Some((driver, rest)) if driver.is_empty() || driver.starts_with('+') => rest,
        _ => return None,
    };
    let path = rest
        .strip_prefix("///")
        .or_else(|| rest.strip_prefix("//"))?;
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

impl std::fmt::Debug for SqlCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlCatalog")
            .field("catalog_name", &self.catalog_name)
            .field("warehouse", &self.warehouse)
            .finish_non_exhaustive()
    }
}

impl SqlCatalog {
    pub(super) async fn open(config: CatalogConfig) -> Result<Self> {
        let name = config.name.clone();
        let fail = |reason: String| FloeError::Catalog {
            catalog: name.clone(),
            reason,
        };
        let uri = config.props.get("uri").ok_or_else(|| {
            fail("a sql catalog needs a 'uri' (for example sqlite:////data/catalog.db)".into())
        })?;
        let Some(db_path) = sqlite_path(uri) else {
            return Err(FloeError::CatalogNotSupported {
                catalog: name.clone(),
                kind: format!("sql ({})", uri.split(':').next().unwrap_or(uri)),
            });
        };
        let warehouse = config
            .props
            .get("warehouse")
            .ok_or_else(|| fail("a sql catalog needs a 'warehouse' location".into()))?
            .trim_end_matches('/')
            .to_string();
        // A local warehouse directory is created; an object-store warehouse (s3://) is used as is.
        let warehouse_dir = if let Some(p) = warehouse.strip_prefix("file://") {
            Some(PathBuf::from(p))
        } else if warehouse.contains("://") {
            None
        } else {
            Some(PathBuf::from(&warehouse))
        };
        for dir in [db_path.parent().map(PathBuf::from), warehouse_dir]
            .into_iter()
            .flatten()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(&dir)
                .map_err(|e| fail(format!("cannot create directory {}: {e}", dir.display())))?;
        }

        let sqlx_url = format!("sqlite://{}?mode=rwc", db_path.display());
        let mut props = HashMap::new();
        props.insert("uri".to_string(), sqlx_url.clone());
        props.insert("warehouse".to_string(), warehouse.clone());
        props.insert("sql_bind_style".to_string(), "QMark".to_string());
        let file_io = storage::file_io(&warehouse, &config.props)
            .map_err(|e| fail(format!("cannot set up storage for '{warehouse}': {e}")))?;
        let inner = SqlCatalogBuilder::default()
            .with_storage_factory(storage::factory(&warehouse))
            .load(name.clone(), props)
            .await
            .map_err(|e| fail(format!("cannot open {}: {e}", db_path.display())))?;

        let options = SqliteConnectOptions::from_str(&sqlx_url)
            .map_err(|e| fail(format!("bad uri '{uri}': {e}")))?
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(|e| fail(format!("cannot open {}: {e}", db_path.display())))?;

        Ok(Self {
            catalog_name: name,
            inner: Arc::new(inner),
            pool,
            file_io,
            warehouse,
        })
    }

    pub(super) async fn load_table(&self, ident: &TableIdent) -> Result<Option<TableState>> {
        let ctx = || {
            format!(
                "catalog '{}': cannot load table {}",
                self.catalog_name,
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

    /// Points `ident` (not registered yet) at an existing metadata file.
    pub(super) async fn register_table(
        &self,
        ident: &TableIdent,
        metadata_location: &str,
    ) -> Result<()> {
        self.inner
            .register_table(ident, metadata_location.to_string())
            .await
            .context(|| {
                format!(
                    "catalog '{}': cannot register table {} at {metadata_location}",
                    self.catalog_name,
                    display_ident(ident)
                )
            })?;
        Ok(())
    }

    /// Creates one namespace level if it is missing.
    pub(super) async fn ensure_namespace(&self, ns: &NamespaceIdent) -> Result<()> {
        let ctx = || {
            format!(
                "catalog '{}': cannot create namespace {}",
                self.catalog_name,
                ns.join(".")
            )
        };
        if self.inner.namespace_exists(ns).await.context(ctx)? {
            return Ok(());
        }
        if let Err(e) = self.inner.create_namespace(ns, HashMap::new()).await {
            // Another loader may have created it in between.
            if !self.inner.namespace_exists(ns).await.context(ctx)? {
                return Err(e).context(ctx);
            }
        }
        Ok(())
    }

    /// A new table's metadata under the namespace's location (or the warehouse), not registered.
    pub(super) async fn stage_table(
        &self,
        ident: &TableIdent,
        schema: Schema,
        partition_spec: Option<UnboundPartitionSpec>,
        properties: HashMap<String, String>,
        location: Option<String>,
    ) -> Result<TableState> {
        let ns_location = self
            .inner
            .get_namespace(ident.namespace())
            .await
            .ok()
            .and_then(|ns| ns.properties().get("location").cloned());
        let location = match (location, ns_location) {
            (Some(given), _) => given,
            (None, Some(loc)) => format!("{}/{}", loc.trim_end_matches('/'), ident.name()),
            (None, None) => format!(
                "{}/{}/{}",
                self.warehouse.trim_end_matches('/'),
                ident.namespace().join("/"),
                ident.name()
            ),
        };
        let metadata = staged_metadata(ident, location, schema, partition_spec, properties)?;
        Ok(TableState {
            ident: ident.clone(),
            metadata: Arc::new(metadata),
            metadata_location: None,
            file_io: self.file_io.clone(),
        })
    }

    pub(super) async fn commit(
        &self,
        base: &TableState,
        requirements: &[TableRequirement],
        updates: Vec<TableUpdate>,
    ) -> Result<CommitOutcome> {
        let table = base.name();
        let ctx = || format!("cannot commit to table {table}");
        let current = base
            .metadata_location
            .as_ref()
            .map(|_| base.metadata.as_ref());
        for requirement in requirements {
            if let Err(e) = requirement.check(current) {
                return Ok(CommitOutcome::Conflict(e.message().to_string()));
            }
        }
        let mut builder = match &base.metadata_location {
            Some(loc) => TableMetadataBuilder::new_from_metadata(
                base.metadata.as_ref().clone(),
                Some(loc.clone()),
            ),
            None => base.metadata.as_ref().clone().into_builder(None),
        };
        for update in updates {
            builder = update.apply(builder).context(ctx)?;
        }
        let metadata = builder.build().context(ctx)?.metadata;
        let location = base
            .metadata_location
            .as_deref()
            .and_then(|loc| MetadataLocation::from_str(loc).ok())
            .map(|loc| loc.with_next_version().with_new_metadata(&metadata))
            .unwrap_or_else(|| {
                let first = MetadataLocation::new_with_metadata(metadata.location(), &metadata);
                if base.metadata_location.is_some() {
                    first.with_next_version()
                } else {
                    first
                }
            });
        metadata
            .write_to(&base.file_io, &location)
            .await
            .context(|| format!("cannot write metadata file {location}"))?;

        let location = location.to_string();
        let namespace = base.ident.namespace().join(".");
        let result = match &base.metadata_location {
            Some(previous) => {
                sqlx::query(&format!(
                    "UPDATE {CATALOG_TABLE} SET metadata_location = ?, previous_metadata_location = ? \
                     WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? AND metadata_location = ?"
                ))
                .bind(&location)
                .bind(previous)
                .bind(&self.catalog_name)
                .bind(&namespace)
                .bind(base.ident.name())
                .bind(previous)
                .execute(&self.pool)
                .await
            }
            None => {
                sqlx::query(&format!(
                    "INSERT INTO {CATALOG_TABLE} (catalog_name, table_namespace, table_name, metadata_location, previous_metadata_location, iceberg_type) \
                     VALUES (?, ?, ?, ?, NULL, 'TABLE') ON CONFLICT DO NOTHING"
                ))
                .bind(&self.catalog_name)
                .bind(&namespace)
                .bind(base.ident.name())
                .bind(&location)
                .execute(&self.pool)
                .await
            }
        };
        let rows = match result {
            Ok(r) => r.rows_affected(),
            Err(e) => {
                let _ = base.file_io.delete(&location).await;
                return Err(FloeError::Catalog {
                    catalog: self.catalog_name.clone(),
                    reason: format!("commit to table {table} failed: {e}"),
                });
            }
        };
        if rows == 1 {
            Ok(CommitOutcome::Committed {
                metadata_location: location,
                metadata: Arc::new(metadata),
            })
        } else {
            // Nobody can reference the file we just wrote: the swap did not happen.
            let _ = base.file_io.delete(&location).await;
            Ok(CommitOutcome::Conflict(match &base.metadata_location {
                Some(_) => "the table's metadata location moved".to_string(),
                None => "the table was created concurrently".to_string(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlalchemy_urls_map_to_paths() {
        assert_eq!(
            sqlite_path("sqlite:////tmp/w/catalog.db"),
            Some(PathBuf::from("/tmp/w/catalog.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:///catalog.db"),
            Some(PathBuf::from("catalog.db"))
        );
        assert_eq!(
            sqlite_path("sqlite+pysqlite:////a.db"),
            Some(PathBuf::from("/a.db"))
        );
        assert_eq!(sqlite_path("sqlite:///:memory:"), None);
        assert_eq!(sqlite_path("postgresql://x/y"), None);
    }
}
