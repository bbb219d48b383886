//! Expiring snapshots: which snapshots go (as Java's `ExpireSnapshots` decides), and which files
//! only they reach, found in bounded memory.
//!
//! A snapshot is kept when a ref reaches it within that ref's retention: a tag's snapshot; a
//! branch's head and its ancestors while fewer than the branch's minimum are kept or while
//! they are newer than its maximum age (the branch's own `min-snapshots-to-keep` /
//! `max-snapshot-age-ms`, else the call's `retain_last` / `older_than`). A snapshot no ref
//! reaches is kept while it is newer than `older_than`. Everything else expires; refs are never
//! removed.
//!
//! Files: a manifest list of an expired snapshot goes; a manifest goes when no kept snapshot
//! lists it; a data or delete file goes when an expired-only manifest has it and no manifest of
//! a kept snapshot has it alive. The last check streams both sides' paths through the external
//! sort, so memory does not grow with the number of files (it holds one path per distinct
//! manifest of the kept snapshots).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::{Array, BooleanArray, RecordBatch, StringArray, UInt8Array};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef};
use iceberg::spec::{
    DataContentType, ManifestFile, SnapshotReference, SnapshotRetention, TableMetadata,
};
use serde::Serialize;

use crate::catalog::TableState;
use crate::error::{FloeError, Result, ResultExt};
use crate::spill::ExternalSorter;

/// What to keep (the defaults are Iceberg's: one snapshot, five days).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Snapshots older than this (ms since the epoch) may expire.
    pub older_than_ms: i64,
    /// Ancestors every branch keeps at least (its head included).
    pub retain_last: usize,
}

/// The snapshots a retention keeps and expires, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpirePlan {
    pub expired: Vec<i64>,
    pub kept: Vec<i64>,
    /// The refs' heads it was planned against (name, snapshot id).
    pub heads: Vec<(String, i64)>,
}

/// The table's refs (iceberg 0.10.1 has no accessor for them; its serde form has them). Only
/// the refs are parsed back out of the serialised metadata, never a tree of all of it.
pub fn refs(metadata: &TableMetadata) -> Result<HashMap<String, SnapshotReference>> {
    #[derive(serde::Deserialize)]
    struct OnlyRefs {
        #[serde(default)]
        refs: HashMap<String, SnapshotReference>,
    }
    let bad = |e: serde_json::Error| FloeError::Catalog {
        catalog: "metadata".into(),
        reason: format!("cannot read the table's refs: {e}"),
    };
    let bytes = serde_json::to_vec(metadata).map_err(bad)?;
    Ok(serde_json::from_slice::<OnlyRefs>(&bytes)
        .map_err(bad)?
        .refs)
}

/// Which snapshots of `metadata` `retention` keeps.
pub fn plan(metadata: &TableMetadata, retention: Retention) -> Result<ExpirePlan> {
    let mut kept = HashSet::new();
    let mut reached = HashSet::new();
    let refs = refs(metadata)?;
    for reference in refs.values() {
        match &reference.retention {
            SnapshotRetention::Tag { .. } => {
                kept.insert(reference.snapshot_id);
            }
            SnapshotRetention::Branch {
                min_snapshots_to_keep,
                max_snapshot_age_ms,
                ..
            } => {
                let keep_at_least = min_snapshots_to_keep
                    .map(|n| n.max(1) as usize)
                    .unwrap_or(retention.retain_last.max(1));
                let older_than = max_snapshot_age_ms
                    .map(|age| now_ms() - age)
                    .unwrap_or(retention.older_than_ms);
                let mut id = Some(reference.snapshot_id);
                let mut count = 0;
                while let Some(snapshot) = id.and_then(|i| metadata.snapshot_by_id(i)) {
                    reached.insert(snapshot.snapshot_id());
                    if count < keep_at_least || snapshot.timestamp_ms() >= older_than {
                        kept.insert(snapshot.snapshot_id());
                    }
                    count += 1;
                    id = snapshot.parent_snapshot_id();
                }
            }
        }
    }
    for snapshot in metadata.snapshots() {
        let id = snapshot.snapshot_id();
        if !reached.contains(&id) && snapshot.timestamp_ms() >= retention.older_than_ms {
            kept.insert(id);
        }
    }
    let mut plan = ExpirePlan {
        heads: refs.into_iter().map(|(n, r)| (n, r.snapshot_id)).collect(),
        ..ExpirePlan::default()
    };
    for snapshot in metadata.snapshots() {
        let id = snapshot.snapshot_id();
        if kept.contains(&id) {
            plan.kept.push(id);
        } else {
            plan.expired.push(id);
        }
    }
    plan.expired.sort_unstable();
    plan.kept.sort_unstable();
    Ok(plan)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What kind of file a sweep found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    ManifestList,
    Manifest,
    Data,
    PositionDeletes,
    EqualityDeletes,
}

/// Files only expired snapshots reach, and how many of each kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SweepCounts {
    pub manifest_lists: u64,
    pub manifests: u64,
    pub data_files: u64,
    pub delete_files: u64,
    pub bytes: u64,
}

impl SweepCounts {
    fn add(&mut self, kind: FileKind, bytes: u64) {
        match kind {
            FileKind::ManifestList => self.manifest_lists += 1,
            FileKind::Manifest => self.manifests += 1,
            FileKind::Data => self.data_files += 1,
            FileKind::PositionDeletes | FileKind::EqualityDeletes => self.delete_files += 1,
        }
        self.bytes += bytes;
    }
}

/// Sort budget of the file sweep.
const SWEEP_SORT_BYTES: usize = 64 * 1024 * 1024;

/// Receives the files a sweep finds (to list or delete them).
pub trait SweepSink {
    fn found<'a>(
        &'a mut self,
        kind: FileKind,
        path: &'a str,
        bytes: u64,
    ) -> futures::future::BoxFuture<'a, Result<()>>;
}

/// Finds the files of `state` that only the snapshots of `plan.expired` reach and hands each
/// to `sink` (kind, path, size): the data and delete files first, then the manifests that list
/// them, then the manifest lists.
pub async fn sweep(
    state: &TableState,
    plan: &ExpirePlan,
    spill_dir: Option<&std::path::Path>,
    sink: &mut impl SweepSink,
) -> Result<SweepCounts> {
    // Distinct manifests only: a manifest carried over by many snapshots is held once.
    let mut kept_manifests: HashMap<String, ManifestFile> = HashMap::new();
    for_each_manifest(state, &plan.kept, |_, m| {
        kept_manifests.entry(m.manifest_path.clone()).or_insert(m);
    })
    .await?;
    let mut expired_manifests: HashMap<String, ManifestFile> = HashMap::new();
    let mut expired_lists = Vec::new();
    for_each_manifest(state, &plan.expired, |list, m| {
        if expired_lists.last() != Some(&list) {
            expired_lists.push(list);
        }
        if !kept_manifests.contains_key(&m.manifest_path) {
            expired_manifests
                .entry(m.manifest_path.clone())
                .or_insert(m);
        }
    })
    .await?;
    expired_lists.sort();
    expired_lists.dedup();
    let mut counts = SweepCounts::default();
    if !expired_manifests.is_empty() {
        let kept: Vec<&ManifestFile> = kept_manifests.values().collect();
        let expired: Vec<&ManifestFile> = expired_manifests.values().collect();
        sweep_files(state, &kept, &expired, spill_dir, &mut counts, sink).await?;
    }
    for m in expired_manifests.values() {
        let bytes = m.manifest_length.max(0) as u64;
        counts.add(FileKind::Manifest, bytes);
        sink.found(FileKind::Manifest, &m.manifest_path, bytes)
            .await?;
    }
    for list in &expired_lists {
        counts.add(FileKind::ManifestList, 0);
        sink.found(FileKind::ManifestList, list, 0).await?;
    }
    Ok(counts)
}

/// Manifest lists read at once while a sweep collects manifests.
const LIST_READS: usize = 8;

/// Calls `each` with (manifest list path, manifest) for every manifest of the snapshots `ids`
/// (expire's sweep and the orphan search)
/// (a snapshot the metadata no longer has is skipped; an empty manifest list path too). The
/// lists are read a few at a time and dropped once visited.
pub(crate) async fn for_each_manifest(
    state: &TableState,
    ids: &[i64],
    mut each: impl FnMut(String, ManifestFile),
) -> Result<()> {
    use futures::StreamExt;
    let table = state.table()?;
    let metadata = &state.metadata;
    // Owned futures (no borrow in the stream), so the sweep stays `Send` for every caller.
    let loads: Vec<_> = ids
        .iter()
        .filter_map(|id| metadata.snapshot_by_id(*id))
        .filter(|s| !s.manifest_list().is_empty())
        .map(|snapshot| {
            let reader = table.manifest_list_reader(snapshot);
            let (id, path) = (snapshot.snapshot_id(), snapshot.manifest_list().to_string());
            async move {
                let list = reader
                    .load()
                    .await
                    .context(|| format!("cannot read the manifest list of snapshot {id}"))?;
                Ok::<_, FloeError>((path, list))
            }
        })
        .collect();
    let mut lists = futures::stream::iter(loads).buffer_unordered(LIST_READS);
    while let Some(loaded) = lists.next().await {
        let (path, list) = loaded?;
        for m in list.entries() {
            each(path.clone(), m.clone());
        }
    }
    Ok(())
}

/// Sorted rows of (path, kept, kind, size): a path goes when none of its rows is kept.
fn sweep_schema() -> SchemaRef {
    Arc::new(ArrowSchema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("kept", DataType::Boolean, false),
        Field::new("kind", DataType::UInt8, false),
        Field::new("size", DataType::UInt64, false),
    ]))
}

const KINDS: [FileKind; 3] = [
    FileKind::Data,
    FileKind::PositionDeletes,
    FileKind::EqualityDeletes,
];

fn kind_code(content: DataContentType) -> u8 {
    match content {
        DataContentType::Data => 0,
        DataContentType::PositionDeletes => 1,
        DataContentType::EqualityDeletes => 2,
    }
}

/// The data and delete files of `expired` manifests that no `kept` manifest has alive.
async fn sweep_files(
    state: &TableState,
    kept: &[&ManifestFile],
    expired: &[&ManifestFile],
    spill_dir: Option<&std::path::Path>,
    counts: &mut SweepCounts,
    sink: &mut impl SweepSink,
) -> Result<()> {
    let schema = sweep_schema();
    let mut sorter = ExternalSorter::new(schema.clone(), vec![0], SWEEP_SORT_BYTES, spill_dir)?;
    for (manifests, is_kept) in [(kept, true), (expired, false)] {
        for manifest in manifests {
            let loaded = manifest
                .load_manifest(&state.file_io)
                .await
                .context(|| format!("cannot read manifest {}", manifest.manifest_path))?;
            let entries = loaded.entries().iter().filter(|e| !is_kept || e.is_alive());
            let (mut paths, mut kinds, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
            for entry in entries {
                let file = entry.data_file();
                paths.push(file.file_path().to_string());
                kinds.push(kind_code(file.content_type()));
                sizes.push(file.file_size_in_bytes());
            }
            if paths.is_empty() {
                continue;
            }
            let n = paths.len();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(paths)),
                    Arc::new(BooleanArray::from(vec![is_kept; n])),
                    Arc::new(UInt8Array::from(kinds)),
                    Arc::new(arrow_array::UInt64Array::from(sizes)),
                ],
            )
            .context(|| "cannot collect file paths".into())?;
            sorter.push(batch)?;
        }
    }
    let mut group: Option<(String, bool, u8, u64)> = None;
    for batch in sorter.finish()? {
        let batch = batch?;
        let col = |i: usize| batch.column(i).clone();
        let (paths, kept, kinds, sizes) = (col(0), col(1), col(2), col(3));
        let paths = paths.as_any().downcast_ref::<StringArray>().expect("utf8");
        let kept = kept.as_any().downcast_ref::<BooleanArray>().expect("bool");
        let kinds = kinds.as_any().downcast_ref::<UInt8Array>().expect("u8");
        let sizes = sizes
            .as_any()
            .downcast_ref::<arrow_array::UInt64Array>()
            .expect("u64");
        for i in 0..batch.num_rows() {
            let path = paths.value(i);
            match &mut group {
                Some((p, k, _, _)) if p == path => *k |= kept.value(i),
                _ => {
                    if let Some((p, false, kind, size)) = group.take() {
                        counts.add(KINDS[kind as usize], size);
                        sink.found(KINDS[kind as usize], &p, size).await?;
                    }
                    group = Some((
                        path.to_string(),
                        kept.value(i),
                        kinds.value(i),
                        sizes.value(i),
                    ));
                }
            }
        }
    }
    if let Some((p, false, kind, size)) = group.take() {
        counts.add(KINDS[kind as usize], size);
        sink.found(KINDS[kind as usize], &p, size).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_codes() {
        for content in [
            DataContentType::Data,
            DataContentType::PositionDeletes,
            DataContentType::EqualityDeletes,
        ] {
            let kind = KINDS[kind_code(content) as usize];
            let expected = match content {
                DataContentType::Data => FileKind::Data,
                DataContentType::PositionDeletes => FileKind::PositionDeletes,
                DataContentType::EqualityDeletes => FileKind::EqualityDeletes,
            };
            assert_eq!(kind, expected);
        }
    }
}
