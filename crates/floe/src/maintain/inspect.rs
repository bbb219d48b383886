//! What a table holds: schema, spec, snapshots (operation, summary, load id), history, and
//! the current snapshot's files per partition (counts, sizes, delete files, small files).
//!
//! The files are counted as the current snapshot's manifests stream by: memory holds one entry
//! per partition, never one per file.

use std::collections::{BTreeMap, HashMap, HashSet};

use iceberg::spec::{DataContentType, TableMetadata};
use serde::Serialize;

use super::expire::refs;
use crate::catalog::TableState;
use crate::commit::LOAD_ID_PROPERTY;
use crate::error::{Result, ResultExt};

/// A data file smaller than this share of the target file size counts as small (Java's
/// `RewriteDataFiles` default `min-file-size-bytes`).
const SMALL_FILE_SHARE: f64 = 0.75;
/// Iceberg's default `write.target-file-size-bytes`.
const DEFAULT_TARGET_FILE_SIZE: u64 = 512 * 1024 * 1024;

/// One snapshot as `floe inspect --snapshots` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    pub snapshot_id: i64,
    pub parent_id: Option<i64>,
    pub timestamp_ms: i64,
    /// The same instant in RFC 3339 (UTC).
    pub time: String,
    pub operation: String,
    /// The load id floe recorded (`floe.load-id`), if the snapshot is a floe load.
    pub load_id: Option<String>,
    pub schema_id: Option<i32>,
    /// Whether the main branch's history contains it.
    pub in_main: bool,
    /// The snapshot summary (added/deleted/total counts).
    pub summary: BTreeMap<String, String>,
}

/// File counts of one partition, or of the whole table.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FileStats {
    pub data_files: u64,
    pub data_rows: u64,
    pub data_bytes: u64,
    /// Data files below 75% of the table's target file size.
    pub small_data_files: u64,
    pub position_delete_files: u64,
    pub equality_delete_files: u64,
    pub delete_rows: u64,
    pub delete_bytes: u64,
}

/// One partition's files.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionStats {
    pub spec_id: i32,
    /// The partition tuple, as text (`{}` when unpartitioned).
    pub partition: String,
    #[serde(flatten)]
    pub files: FileStats,
}

/// One entry of the table's snapshot log (when main pointed where).
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub timestamp_ms: i64,
    /// The same instant in RFC 3339 (UTC).
    pub time: String,
    pub snapshot_id: i64,
    /// Whether the snapshot is still in main's history (false after a rollback).
    pub is_current_ancestor: bool,
}

/// One live file of the current snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct FileInfo {
    pub path: String,
    /// `data`, `position-deletes` or `equality-deletes`.
    pub content: &'static str,
    pub spec_id: i32,
    pub partition: String,
    pub rows: u64,
    pub bytes: u64,
}

/// One ref (branch or tag).
#[derive(Debug, Clone, Serialize)]
pub struct RefInfo {
    pub name: String,
    pub kind: &'static str,
    pub snapshot_id: i64,
}

/// Everything `floe inspect` reports.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub table: String,
    pub location: String,
    pub format_version: u8,
    pub metadata_location: Option<String>,
    pub current_snapshot_id: Option<i64>,
    pub schema: serde_json::Value,
    pub partition_spec: serde_json::Value,
    pub properties: BTreeMap<String, String>,
    pub refs: Vec<RefInfo>,
    pub snapshots: Vec<SnapshotInfo>,
    /// The snapshot log, oldest first.
    pub history: Vec<HistoryEntry>,
    /// The current snapshot's live files.
    pub files: FileStats,
    pub target_file_size: u64,
    pub partitions: Vec<PartitionStats>,
}

/// Inspects `state`.
pub async fn inspect(state: &TableState) -> Result<TableReport> {
    let metadata = &state.metadata;
    let table = state.name();
    let target_file_size = metadata
        .properties()
        .get("write.target-file-size-bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TARGET_FILE_SIZE);
    let (files, partitions) = count_files(state, target_file_size).await?;
    let mut refs: Vec<RefInfo> = refs(metadata)?
        .into_iter()
        .map(|(name, r)| RefInfo {
            kind: match r.retention {
                iceberg::spec::SnapshotRetention::Branch { .. } => "branch",
                iceberg::spec::SnapshotRetention::Tag { .. } => "tag",
            },
            snapshot_id: r.snapshot_id,
            name,
        })
        .collect();
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    let to_json = |v: serde_json::Result<serde_json::Value>| {
        v.map_err(|e| crate::error::FloeError::Catalog {
            catalog: table.clone(),
            reason: format!("cannot describe the table: {e}"),
        })
    };
    Ok(TableReport {
        table: table.clone(),
        location: metadata.location().to_string(),
        format_version: metadata.format_version() as u8,
        metadata_location: state.metadata_location.clone(),
        current_snapshot_id: metadata.current_snapshot_id(),
        schema: to_json(serde_json::to_value(metadata.current_schema().as_ref()))?,
        partition_spec: to_json(serde_json::to_value(
            metadata.default_partition_spec().as_ref(),
        ))?,
        properties: metadata.properties().clone().into_iter().collect(),
        refs,
        history: history(metadata),
        snapshots: snapshots(metadata),
        files,
        target_file_size,
        partitions,
    })
}

/// Every snapshot the metadata lists, oldest first.
fn snapshots(metadata: &TableMetadata) -> Vec<SnapshotInfo> {
    let main = main_ancestors(metadata);
    let mut out: Vec<SnapshotInfo> = metadata
        .snapshots()
        .map(|s| {
            let summary = s.summary();
            let mut props: BTreeMap<String, String> =
                summary.additional_properties.clone().into_iter().collect();
            let load_id = props.remove(LOAD_ID_PROPERTY);
            SnapshotInfo {
                snapshot_id: s.snapshot_id(),
                parent_id: s.parent_snapshot_id(),
                timestamp_ms: s.timestamp_ms(),
                time: rfc3339(s.timestamp_ms()),
                operation: summary.operation.as_str().to_string(),
                load_id,
                schema_id: s.schema_id(),
                in_main: main.contains(&s.snapshot_id()),
                summary: props,
            }
        })
        .collect();
    out.sort_by_key(|s| (s.timestamp_ms, s.snapshot_id));
    out
}

/// The snapshots in main's history (the current one and its ancestors).
fn main_ancestors(metadata: &TableMetadata) -> HashSet<i64> {
    let mut main = HashSet::new();
    let mut id = metadata.current_snapshot_id();
    while let Some(snapshot) = id.and_then(|i| metadata.snapshot_by_id(i)) {
        main.insert(snapshot.snapshot_id());
        id = snapshot.parent_snapshot_id();
    }
    main
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn history(metadata: &TableMetadata) -> Vec<HistoryEntry> {
    let main = main_ancestors(metadata);
    metadata
        .history()
        .iter()
        .map(|h| HistoryEntry {
            timestamp_ms: h.timestamp_ms,
            time: rfc3339(h.timestamp_ms),
            snapshot_id: h.snapshot_id,
            is_current_ancestor: main.contains(&h.snapshot_id),
        })
        .collect()
}

/// Calls `each` for every live file of the current snapshot, as the manifests stream by.
pub async fn for_each_file(state: &TableState, mut each: impl FnMut(FileInfo)) -> Result<()> {
    let Some(snapshot) = state.metadata.current_snapshot() else {
        return Ok(());
    };
    let table = state.table()?;
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .context(|| format!("table {}: cannot read the manifest list", state.name()))?;
    for manifest in list.entries() {
        let loaded = manifest
            .load_manifest(&state.file_io)
            .await
            .context(|| format!("cannot read manifest {}", manifest.manifest_path))?;
        let spec = state
            .metadata
            .partition_spec_by_id(manifest.partition_spec_id);
        for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
            let file = entry.data_file();
            each(FileInfo {
                path: file.file_path().to_string(),
                content: match file.content_type() {
                    DataContentType::Data => "data",
                    DataContentType::PositionDeletes => "position-deletes",
                    DataContentType::EqualityDeletes => "equality-deletes",
                },
                spec_id: manifest.partition_spec_id,
                partition: partition_text(
                    spec.map(|s| s.fields()).unwrap_or_default(),
                    file.partition(),
                ),
                rows: file.record_count(),
                bytes: file.file_size_in_bytes(),
            });
        }
    }
    Ok(())
}

/// The current snapshot's live files: totals and per partition.
async fn count_files(
    state: &TableState,
    target_file_size: u64,
) -> Result<(FileStats, Vec<PartitionStats>)> {
    let mut total = FileStats::default();
    let mut by_partition: HashMap<(i32, String), FileStats> = HashMap::new();
    let small = (target_file_size as f64 * SMALL_FILE_SHARE) as u64;
    for_each_file(state, |file| {
        let stats = by_partition
            .entry((file.spec_id, file.partition.clone()))
            .or_default();
        for s in [&mut total, stats] {
            add_file(s, &file, small);
        }
    })
    .await?;
    let mut partitions: Vec<PartitionStats> = by_partition
        .into_iter()
        .map(|((spec_id, partition), files)| PartitionStats {
            spec_id,
            partition,
            files,
        })
        .collect();
    partitions.sort_by(|a, b| (a.spec_id, &a.partition).cmp(&(b.spec_id, &b.partition)));
    Ok((total, partitions))
}

fn add_file(s: &mut FileStats, file: &FileInfo, small: u64) {
    match file.content {
        "data" => {
            s.data_files += 1;
            s.data_rows += file.rows;
            s.data_bytes += file.bytes;
            s.small_data_files += u64::from(file.bytes < small);
        }
        kind => {
            if kind == "position-deletes" {
                s.position_delete_files += 1;
            } else {
                s.equality_delete_files += 1;
            }
            s.delete_rows += file.rows;
            s.delete_bytes += file.bytes;
        }
    }
}

/// `name=value, ...` for a partition tuple (`{}` when the spec has no fields).
fn partition_text(
    fields: &[iceberg::spec::PartitionField],
    values: &iceberg::spec::Struct,
) -> String {
    if fields.is_empty() {
        return "{}".into();
    }
    partition_values(fields, values)
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each partition field's name and value as text (`null` for none), as inspect shows them.
pub(crate) fn partition_values(
    fields: &[iceberg::spec::PartitionField],
    values: &iceberg::spec::Struct,
) -> Vec<(String, String)> {
    use iceberg::spec::{Literal, PrimitiveLiteral as P};
    let value = |v: Option<&Literal>| match v {
        None => "null".to_string(),
        Some(Literal::Primitive(p)) => match p {
            P::Boolean(b) => b.to_string(),
            P::Int(i) => i.to_string(),
            P::Long(l) => l.to_string(),
            P::Float(f) => f.to_string(),
            P::Double(d) => d.to_string(),
            P::String(s) => s.clone(),
            P::Int128(i) => i.to_string(),
            P::UInt128(u) => u.to_string(),
            P::Binary(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
            P::AboveMax | P::BelowMin => format!("{p:?}"),
        },
        Some(other) => format!("{other:?}"),
    };
    fields
        .iter()
        .zip(values.iter())
        .map(|(f, v)| (f.name.clone(), value(v)))
        .collect()
}
