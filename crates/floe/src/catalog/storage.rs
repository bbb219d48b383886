//! Where table files live: a `FileIO` for a warehouse or table location.
//!
//! Local paths use iceberg-rust's local file system storage. Anything with a scheme (`s3://`,
//! `s3a://`) goes through `iceberg-storage-opendal`, which streams multipart uploads, retries
//! transient errors and reads the pyiceberg property names (`s3.endpoint`, `s3.access-key-id`,
//! `s3.secret-access-key`, `s3.session-token`, `s3.region`, `s3.path-style-access`, ...).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use iceberg::io::{FileIO, FileIOBuilder, LocalFsStorageFactory, StorageFactory};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;

/// Property prefixes that configure storage rather than the catalog.
const STORAGE_PREFIXES: &[&str] = &["s3.", "client.", "gcs.", "adls."];

/// Whether `location` is a local path (`file://` or no scheme at all).
pub(super) fn is_local(location: &str) -> bool {
    location.starts_with("file:") || !location.contains("://")
}

/// The storage factory for files under `location`.
pub(super) fn factory(location: &str) -> Arc<dyn StorageFactory> {
    if is_local(location) {
        Arc::new(LocalFsStorageFactory)
    } else {
        Arc::new(OpenDalResolvingStorageFactory::new())
    }
}

/// The storage-related subset of catalog or table properties.
pub(super) fn storage_props<'a>(
    props: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> HashMap<String, String> {
    props
        .into_iter()
        .filter(|(k, _)| STORAGE_PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A `FileIO` for files under `location`, configured from catalog properties.
pub(super) fn file_io(location: &str, props: &BTreeMap<String, String>) -> Result<FileIO, String> {
    if !is_local(location) {
        let scheme = location.split("://").next().unwrap_or_default();
        if !matches!(scheme, "s3" | "s3a" | "s3n") {
            return Err(format!(
                "storage scheme '{scheme}://' is not supported (supported: local paths, s3://)"
            ));
        }
    }
    Ok(FileIOBuilder::new(factory(location))
        .with_props(storage_props(props))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_object_store_locations() {
        assert!(is_local("file:///tmp/w"));
        assert!(is_local("/tmp/w"));
        assert!(!is_local("s3://bucket/w"));
        assert!(file_io("gs://bucket/w", &BTreeMap::new()).is_err());
        assert!(file_io("s3://bucket/w", &BTreeMap::new()).is_ok());
    }

    #[test]
    fn only_storage_properties_reach_storage() {
        let props: BTreeMap<String, String> = [
            ("s3.endpoint", "http://x"),
            ("credential", "id:secret"),
            ("uri", "http://catalog"),
            ("client.region", "eu-west-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let storage = storage_props(&props);
        assert_eq!(storage.len(), 2);
        assert!(!storage.contains_key("credential"));
    }
}
