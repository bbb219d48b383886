//! Orphan files: files under a table's location that no metadata references, older than a
//! threshold (a concurrent load's files are new, and are never touched).
//!
//! What counts as referenced, as Java's `DeleteOrphanFiles` does it: the current metadata file
//! and those in its metadata log, statistics files, every snapshot's manifest list, every
//! manifest those list and every file any manifest entry names (whatever its status). Listed
//! and referenced paths (normalised: `file:` dropped, `s3a://`/`s3n://` as `s3://`) stream
//! through the external sort together, so memory does not grow with the number of files; only
//! the distinct manifest paths are held while the references are collected.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, BooleanArray, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef};
use futures::TryStreamExt;

use crate::catalog::TableState;
use crate::error::{FloeError, Result, ResultExt};
use crate::spill::ExternalSorter;

/// Sort budget of the orphan search.
const SORT_BYTES: usize = 64 * 1024 * 1024;
/// Rows buffered before they go to the sorter.
const CHUNK: usize = 8192;

/// A file under the table location that nothing references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// As the storage names it (`s3://bucket/key`, or a local path).
    pub path: String,
    pub bytes: u64,
    pub modified_ms: i64,
}

/// What the search saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OrphanCounts {
    /// Files under the table location.
    pub files_listed: u64,
    /// Of those, unreferenced but newer than the threshold (kept: a load may be writing them).
    pub recent_unreferenced: u64,
    pub orphans: u64,
    pub orphan_bytes: u64,
}

/// `path` in the one form listings and metadata are compared in.
fn normalise(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("file://") {
        return rest.to_string();
    }
    if let Some(rest) = path.strip_prefix("file:") {
        return rest.to_string();
    }
    for scheme in ["s3a://", "s3n://"] {
        if let Some(rest) = path.strip_prefix(scheme) {
            return format!("s3://{rest}");
        }
    }
    path.to_string()
}

/// Rows of (normalised path, referenced, original path, size, modified).
fn schema() -> SchemaRef {
    Arc::new(ArrowSchema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("referenced", DataType::Boolean, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("size", DataType::UInt64, false),
        Field::new("modified", DataType::Int64, false),
    ]))
}

/// Buffers rows for the sorter.
struct Rows {
    sorter: ExternalSorter,
    rows: Vec<(String, bool, String, u64, i64)>,
}

impl Rows {
    fn push(&mut self, path: &str, referenced: bool, size: u64, modified: i64) -> Result<()> {
        self.rows.push((
            normalise(path),
            referenced,
            path.to_string(),
            size,
            modified,
        ));
        if self.rows.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.0.as_str()),
                )),
                Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.1)))),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.2.as_str()),
                )),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.3))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.4))),
            ],
        )
        .context(|| "cannot collect file paths".into())?;
        self.sorter.push(batch)
    }
}

/// Receives each orphan as the search finds it (to list or delete it).
pub trait OrphanSink {
    fn found(&mut self, orphan: Orphan) -> futures::future::BoxFuture<'_, Result<()>>;
}

/// One path's rows: whether metadata references it, and the listed file if any.
type Group = (String, bool, Option<Orphan>);

/// The orphans of `state` last modified before `older_than_ms`, each handed to `sink`.
pub async fn find(
    state: &TableState,
    older_than_ms: i64,
    spill_dir: Option<&std::path::Path>,
    sink: &mut impl OrphanSink,
) -> Result<OrphanCounts> {
    let mut rows = Rows {
        sorter: ExternalSorter::new(schema(), vec![0], SORT_BYTES, spill_dir)?,
        rows: Vec::new(),
    };
    references(state, &mut rows).await?;
    let mut counts = OrphanCounts::default();
    list(state, &mut |path, size, modified| {
        counts.files_listed += 1;
        rows.push(path, false, size, modified)
    })
    .await?;
    rows.flush()?;
    let mut group: Option<Group> = None;
    for batch in rows.sorter.finish()? {
        let batch = batch?;
        let keys = column::<StringArray>(&batch, 0);
        let referenced = column::<BooleanArray>(&batch, 1);
        let paths = column::<StringArray>(&batch, 2);
        let sizes = column::<UInt64Array>(&batch, 3);
        let modified = column::<Int64Array>(&batch, 4);
        for i in 0..batch.num_rows() {
            let key = keys.value(i);
            if group.as_ref().is_none_or(|(k, _, _)| k != key) {
                settle(group.take(), older_than_ms, &mut counts, sink).await?;
                group = Some((key.to_string(), false, None));
            }
            let (_, is_referenced, listed) = group.as_mut().expect("a group");
            if referenced.value(i) {
                *is_referenced = true;
            } else {
                *listed = Some(Orphan {
                    path: paths.value(i).to_string(),
                    bytes: sizes.value(i),
                    modified_ms: modified.value(i),
                });
            }
        }
    }
    settle(group.take(), older_than_ms, &mut counts, sink).await?;
    Ok(counts)
}

/// A listed, unreferenced file older than the threshold is an orphan.
async fn settle(
    group: Option<Group>,
    older_than_ms: i64,
    counts: &mut OrphanCounts,
    sink: &mut impl OrphanSink,
) -> Result<()> {
    let Some((_, false, Some(file))) = group else {
        return Ok(());
    };
    if file.modified_ms >= older_than_ms {
        counts.recent_unreferenced += 1;
        return Ok(());
    }
    counts.orphans += 1;
    counts.orphan_bytes += file.bytes;
    sink.found(file).await
}

fn column<T: 'static>(batch: &RecordBatch, i: usize) -> &T {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<T>()
        .expect("the orphan search's own schema")
}

/// Pushes every path the table's metadata references.
async fn references(state: &TableState, rows: &mut Rows) -> Result<()> {
    let metadata = &state.metadata;
    if let Some(location) = &state.metadata_location {
        rows.push(location, true, 0, 0)?;
    }
    for entry in metadata.metadata_log() {
        rows.push(&entry.metadata_file, true, 0, 0)?;
    }
    for stats in metadata.statistics_iter() {
        rows.push(&stats.statistics_path, true, 0, 0)?;
    }
    for stats in metadata.partition_statistics_iter() {
        rows.push(&stats.statistics_path, true, 0, 0)?;
    }
    // Distinct manifests first (read a few lists at a time), then each manifest once.
    let ids: Vec<i64> = metadata.snapshots().map(|s| s.snapshot_id()).collect();
    let mut lists = Vec::new();
    let mut manifests = HashMap::new();
    super::expire::for_each_manifest(state, &ids, |list, m| {
        if lists.last() != Some(&list) {
            lists.push(list);
        }
        manifests.entry(m.manifest_path.clone()).or_insert(m);
    })
    .await?;
    for list in lists {
        rows.push(&list, true, 0, 0)?;
    }
    for (path, manifest) in manifests {
        rows.push(&path, true, 0, 0)?;
        let loaded = manifest
            .load_manifest(&state.file_io)
            .await
            .context(|| format!("cannot read manifest {path}"))?;
        for entry in loaded.entries() {
            rows.push(entry.data_file().file_path(), true, 0, 0)?;
        }
    }
    Ok(())
}

/// Calls `each(path, size, modified ms)` for every file under the table location.
async fn list(
    state: &TableState,
    each: &mut impl FnMut(&str, u64, i64) -> Result<()>,
) -> Result<()> {
    let location = state.metadata.location().trim_end_matches('/');
    if let Some(rest) = ["s3://", "s3a://", "s3n://"]
        .iter()
        .find_map(|s| location.strip_prefix(s))
    {
        return list_s3(state, rest, each).await;
    }
    let root = std::path::PathBuf::from(normalise(location));
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).context(|| format!("cannot list {}", dir.display())),
        };
        for entry in entries {
            let entry = entry.context(|| format!("cannot list {}", dir.display()))?;
            let meta = entry
                .metadata()
                .context(|| format!("cannot stat {}", entry.path().display()))?;
            if meta.is_dir() {
                dirs.push(entry.path());
                continue;
            }
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            each(&entry.path().to_string_lossy(), meta.len(), modified)?;
        }
    }
    Ok(())
}

/// The S3 listing: iceberg's `FileIO` cannot list, so an opendal operator is built from the
/// same storage properties (pyiceberg's `s3.*` names, vended credentials included).
async fn list_s3(
    state: &TableState,
    bucket_and_prefix: &str,
    each: &mut impl FnMut(&str, u64, i64) -> Result<()>,
) -> Result<()> {
    let (bucket, prefix) = bucket_and_prefix
        .split_once('/')
        .unwrap_or((bucket_and_prefix, ""));
    let props = state.file_io.config().props();
    let get = |k: &str| props.get(k).map(String::as_str);
    let mut builder = opendal::services::S3::default()
        .bucket(bucket)
        .root("/")
        .region(
            get("s3.region")
                .or(get("client.region"))
                .unwrap_or("us-east-1"),
        );
    if let Some(endpoint) = get("s3.endpoint") {
        builder = builder.endpoint(endpoint);
    }
    if let Some(key) = get("s3.access-key-id") {
        builder = builder.access_key_id(key);
    }
    if let Some(secret) = get("s3.secret-access-key") {
        builder = builder.secret_access_key(secret);
    }
    if let Some(token) = get("s3.session-token") {
        builder = builder.session_token(token);
    }
    if get("s3.path-style-access").is_some_and(|v| v.eq_ignore_ascii_case("false")) {
        builder = builder.enable_virtual_host_style();
    }
    let storage_error = |e: opendal::Error| FloeError::Catalog {
        catalog: format!("s3://{bucket}"),
        reason: format!("cannot list the table's files: {e}"),
    };
    let operator = opendal::Operator::new(builder)
        .map_err(storage_error)?
        .finish();
    let mut lister = operator
        .lister_with(&format!("{}/", prefix.trim_end_matches('/')))
        .recursive(true)
        .await
        .map_err(storage_error)?;
    while let Some(entry) = lister.try_next().await.map_err(storage_error)? {
        let meta = entry.metadata();
        if meta.is_dir() {
            continue;
        }
        let modified = meta
            .last_modified()
            .map_or(0, |t| t.into_inner().as_millisecond());
        let path = format!("s3://{bucket}/{}", entry.path().trim_start_matches('/'));
        each(&path, meta.content_length(), modified)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn listings_and_metadata_compare_in_one_form() {
        assert_eq!(
            normalise("file:///w/t/data/a.parquet"),
            "/w/t/data/a.parquet"
        );
        assert_eq!(normalise("file:/w/t/a"), "/w/t/a");
        assert_eq!(normalise("/w/t/a"), "/w/t/a");
        assert_eq!(normalise("s3a://b/t/a"), "s3://b/t/a");
        assert_eq!(normalise("s3://b/t/a"), "s3://b/t/a");
    }
}
