//! The snapshot producer: manifests, manifest list and snapshot for one load.
//!
//! iceberg-rust 0.10.1 only produces `append` snapshots (and hides its producer), so floe owns
//! this. It is written so merge (copy-on-write rewrites, position-delete files) plugs in: an
//! operation only decides which existing entries die and which files are added.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use iceberg::spec::{
    DataContentType, DataFile, FormatVersion, MAIN_BRANCH, ManifestContentType, ManifestFile,
    ManifestListWriter, ManifestWriter, ManifestWriterBuilder, Operation, PartitionSpec,
    PartitionSpecRef, Schema, SchemaRef, Snapshot, SnapshotReference, SnapshotRetention,
    SnapshotSummaryCollector, Struct, Summary, TableMetadataBuilder,
};
use iceberg::{TableRequirement, TableUpdate};
use uuid::Uuid;

use super::LOAD_ID_PROPERTY;
use super::added::AddedManifests;
use super::summary::with_totals;
use crate::catalog::TableState;
use crate::error::{FloeError, Result, ResultExt};

/// Table property: whether appends merge small manifests (`true` unless set to `false`).
const PROP_MANIFEST_MERGE: &str = "commit.manifest-merge.enabled";
/// Table property: how many small manifests make a merge.
const PROP_MIN_COUNT_TO_MERGE: &str = "commit.manifest.min-count-to-merge";
const DEFAULT_MIN_COUNT_TO_MERGE: u64 = 100;
/// Table property: manifests this large or larger are left alone.
const PROP_MANIFEST_TARGET_SIZE: &str = "commit.manifest.target-size-bytes";
const DEFAULT_MANIFEST_TARGET_SIZE: u64 = 8 * 1024 * 1024;
/// Most entries one manifest merge gathers (bounds the entries held while merging).
const MAX_MERGED_ENTRIES: usize = 2 * super::added::MANIFEST_ENTRIES;

/// What a load does to the table: decides which existing files its snapshot removes, and
/// names the load in its summary (`append`, `replace`, `replace-partitions`, `merge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadOperation {
    /// Add files; every existing file stays.
    Append,
    /// Add files and remove every live data and delete file, in one snapshot.
    Replace,
    /// Add files and remove the live files of exactly the partitions the added files are in
    /// (dynamic partition overwrite). On an unpartitioned table this is `ReplaceAll`.
    ReplacePartitions,
    /// A merge: add data files and position-delete files, remove the data files named in
    /// `FileChanges::removed` (copy-on-write rewrites). Every removed file must still be
    /// live in the table, or the commit is a conflict.
    Merge,
    /// A compaction: the same rows in fewer files (Iceberg operation `replace`). Removes the
    /// data files named in `FileChanges::removed`, which must all still be live, and the
    /// position-delete files that reference only them (their deletes were applied).
    Compact,
}

impl LoadOperation {
    /// The name summaries and logs use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Replace => "replace",
            Self::ReplacePartitions => "replace-partitions",
            Self::Merge => "merge",
            Self::Compact => "compact",
        }
    }
}

/// The files one load adds and removes.
#[derive(Clone)]
pub struct FileChanges {
    /// Data files, already in manifests (see [`AddedFiles`](super::AddedFiles)).
    pub added: AddedManifests,
    /// Position-delete files (merge-on-read).
    pub added_deletes: Vec<AddedDelete>,
    /// Paths of live data files the load replaces (copy-on-write).
    pub removed: HashSet<String>,
}

impl FileChanges {
    pub fn added(added: AddedManifests) -> Self {
        Self {
            added,
            added_deletes: Vec::new(),
            removed: HashSet::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.added_deletes.is_empty() && self.removed.is_empty()
    }
}

/// A position-delete file, with the partition spec of the data file it applies to (a table
/// whose spec changed holds data files of several specs; each delete file is filed under its
/// data file's spec, as Iceberg's Java writers do).
#[derive(Clone, Debug)]
pub struct AddedDelete {
    pub spec_id: i32,
    pub file: DataFile,
}

/// What rewriting one manifest came to.
enum Rewrite {
    /// No live entry matched: keep the manifest as it is.
    Untouched,
    /// The manifest has no live entries at all: drop it.
    Empty,
    /// A new manifest with the matched entries DELETED (others EXISTING).
    Rewritten {
        manifest: Box<ManifestFile>,
        data_files: u64,
        rows: u64,
    },
}

/// The updates of one commit attempt, and what it wrote to get there.
#[derive(Debug)]
pub struct StagedSnapshot {
    pub snapshot_id: i64,
    /// The snapshot's operation (`append`, `overwrite`).
    pub operation: Operation,
    pub schema_id: i32,
    pub updates: Vec<TableUpdate>,
    pub requirements: Vec<TableRequirement>,
    pub files_removed: u64,
    pub rows_removed: u64,
    /// Files written for this attempt only (manifest list, rewritten manifests).
    pub(super) attempt_files: Vec<String>,
}

/// Builds the snapshot of one load; reusable across commit attempts.
pub struct SnapshotProducer {
    load_id: String,
    operation: LoadOperation,
    commit_uuid: Uuid,
    snapshot_id: i64,
    schema: SchemaRef,
    /// A new schema the load's data was conformed to, committed with the snapshot.
    schema_change: Option<Schema>,
    spec: PartitionSpecRef,
    /// The manifests of added data files, written once by the writers' sink: their entries
    /// inherit sequence numbers, so they stay valid whatever base the snapshot lands on.
    added: AddedManifests,
    added_deletes: Vec<AddedDelete>,
    removed: HashSet<String>,
    /// Likewise for added delete files.
    deletes_manifests: Vec<ManifestFile>,
    /// Summary properties of everything added (data and delete files).
    added_summary: HashMap<String, String>,
    /// Partition values of everything added.
    added_partitions: HashSet<Struct>,
    manifest_counter: u64,
}

impl SnapshotProducer {
    pub async fn new(
        base: &TableState,
        load_id: &str,
        operation: LoadOperation,
        changes: FileChanges,
        schema_change: Option<Schema>,
    ) -> Result<Self> {
        if base.metadata.format_version() == FormatVersion::V3 {
            return Err(FloeError::UnsupportedTable {
                table: base.name(),
                detail: "it uses Iceberg format v3, which floe does not write yet".into(),
            });
        }
        let mut producer = Self {
            load_id: load_id.to_string(),
            operation,
            commit_uuid: Uuid::new_v4(),
            snapshot_id: changes.added.snapshot_id,
            schema: match &schema_change {
                Some(schema) => Arc::new(schema.clone()),
                None => base.metadata.current_schema().clone(),
            },
            schema_change,
            spec: base.metadata.default_partition_spec().clone(),
            added_summary: changes.added.summary.clone(),
            added_partitions: changes.added.partitions.clone(),
            added: changes.added,
            added_deletes: changes.added_deletes,
            removed: changes.removed,
            deletes_manifests: Vec::new(),
            manifest_counter: 0,
        };
        producer.write_delete_manifests(base).await?;
        Ok(producer)
    }

    /// The load's delete files in manifests of their partition spec, 1,000 entries at most.
    async fn write_delete_manifests(&mut self, base: &TableState) -> Result<()> {
        if self.added_deletes.is_empty() {
            return Ok(());
        }
        let mut by_spec: std::collections::BTreeMap<i32, Vec<DataFile>> = Default::default();
        for delete in &self.added_deletes {
            by_spec
                .entry(delete.spec_id)
                .or_default()
                .push(delete.file.clone());
        }
        let mut collector = SnapshotSummaryCollector::default();
        for (spec_id, files) in by_spec {
            let spec = base
                .metadata
                .partition_spec_by_id(spec_id)
                .ok_or_else(|| FloeError::Conflict {
                    table: base.name(),
                    reason: format!("partition spec {spec_id} of a merged data file is gone"),
                })?
                .clone();
            // As many entries a manifest as the added-files manifests: whoever reads one
            // (a later merge, a reader's planning) holds it whole.
            for chunk in files.chunks(super::added::MANIFEST_ENTRIES) {
                let mut writer = self.manifest_writer(
                    base,
                    ManifestContentType::Deletes,
                    self.schema.clone(),
                    spec.as_ref().clone(),
                )?;
                for file in chunk {
                    collector.add_file(file, self.schema.clone(), spec.clone());
                    self.added_partitions.insert(file.partition().clone());
                    writer.add_file(file.clone(), -1).context(|| {
                        format!(
                            "table {}: cannot add delete file {} to a manifest",
                            base.name(),
                            file.file_path()
                        )
                    })?;
                }
                let manifest = writer.write_manifest_file().await.context(|| {
                    format!(
                        "table {}: cannot write the delete-files manifest",
                        base.name()
                    )
                })?;
                self.deletes_manifests.push(manifest);
            }
        }
        self.added_summary = sum_counts(&self.added_summary, &collector.build());
        Ok(())
    }

    /// The snapshot id every attempt carries.
    pub fn snapshot_id(&self) -> i64 {
        self.snapshot_id
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn spec(&self) -> &PartitionSpec {
        &self.spec
    }

    fn manifest_writer(
        &mut self,
        base: &TableState,
        content: ManifestContentType,
        schema: SchemaRef,
        spec: PartitionSpec,
    ) -> Result<ManifestWriter> {
        let path = format!(
            "{}/metadata/{}-m{}.avro",
            base.metadata.location().trim_end_matches('/'),
            self.commit_uuid,
            self.manifest_counter
        );
        self.manifest_counter += 1;
        let output = base
            .file_io
            .new_output(&path)
            .context(|| format!("cannot create manifest {path}"))?;
        let builder = ManifestWriterBuilder::new(output, Some(self.snapshot_id), schema, spec);
        Ok(match (base.metadata.format_version(), content) {
            (FormatVersion::V1, _) => builder.build_v1(),
            (_, ManifestContentType::Data) => builder.build_v2_data(),
            (_, ManifestContentType::Deletes) => builder.build_v2_deletes(),
        })
    }

    /// Plans and writes one commit attempt against `base`.
    pub async fn stage(&mut self, base: &TableState, attempt: u32) -> Result<StagedSnapshot> {
        let mut written = Vec::new();
        let staged = self.stage_into(base, attempt, &mut written).await;
        if staged.is_err() {
            // Nothing references what a failed plan wrote (it was never sent).
            for path in &written {
                let _ = base.file_io.delete(path).await;
            }
        }
        staged
    }

    /// [`Self::stage`], recording every file it writes in `attempt_files` as it goes.
    async fn stage_into(
        &mut self,
        base: &TableState,
        attempt: u32,
        attempt_files: &mut Vec<String>,
    ) -> Result<StagedSnapshot> {
        let table = base.name();
        let metadata = &base.metadata;
        if metadata.snapshot_by_id(self.snapshot_id).is_some() {
            // The added manifests carry this id; only our own landed snapshot can hold it,
            // and the caller checks the load id before re-staging.
            return Err(FloeError::Conflict {
                table,
                reason: format!("snapshot id {} is already taken", self.snapshot_id),
            });
        }
        // What this attempt removes; the added side is fixed for the load.
        let mut collector = SnapshotSummaryCollector::default();
        let mut removed_partitions: HashSet<Struct> = HashSet::new();

        let mut manifests: Vec<ManifestFile> = Vec::new();
        let mut files_removed = 0;
        let mut rows_removed = 0;
        if let Some(current) = metadata.current_snapshot() {
            let table_handle = base.table()?;
            let list = table_handle
                .manifest_list_reader(current)
                .load()
                .await
                .context(|| {
                    format!(
                        "table {table}: cannot read the manifest list {}",
                        current.manifest_list()
                    )
                })?;
            let spec_id = self.spec.spec_id();
            let unpartitioned = self.spec.is_unpartitioned();
            let targets = self.added.partitions.clone();
            let operation = self.operation;
            let removed = std::mem::take(&mut self.removed);
            let mut found = 0usize;
            for manifest in list.entries() {
                let removes = |file: &DataFile| match operation {
                    LoadOperation::Append => false,
                    LoadOperation::Merge => removed.contains(file.file_path()),
                    LoadOperation::Compact => {
                        removed.contains(file.file_path())
                            || file
                                .referenced_data_file()
                                .is_some_and(|d| removed.contains(d.as_str()))
                    }
                    LoadOperation::Replace => true,
                    LoadOperation::ReplacePartitions => {
                        unpartitioned
                            || (manifest.partition_spec_id == spec_id
                                && targets.contains(file.partition()))
                    }
                };
                let touches_nothing = match operation {
                    LoadOperation::Append => true,
                    LoadOperation::Merge => {
                        removed.is_empty() || manifest.content != ManifestContentType::Data
                    }
                    LoadOperation::Compact => removed.is_empty(),
                    LoadOperation::Replace => false,
                    LoadOperation::ReplacePartitions => {
                        !unpartitioned && manifest.partition_spec_id != spec_id
                    }
                };
                if touches_nothing {
                    manifests.push(manifest.clone());
                    continue;
                }
                if !manifest.has_added_files() && !manifest.has_existing_files() {
                    continue;
                }
                match self
                    .rewrite_manifest(
                        base,
                        manifest,
                        removes,
                        &mut collector,
                        &mut removed_partitions,
                    )
                    .await?
                {
                    Rewrite::Untouched => manifests.push(manifest.clone()),
                    Rewrite::Empty => {}
                    Rewrite::Rewritten {
                        manifest,
                        data_files,
                        rows,
                    } => {
                        attempt_files.push(manifest.manifest_path.clone());
                        manifests.push(*manifest);
                        files_removed += data_files;
                        rows_removed += rows;
                        found += data_files as usize;
                    }
                }
            }
            let missing = removed.len().saturating_sub(found);
            self.removed = removed;
            if missing > 0 {
                // (`stage` deletes what this attempt wrote.)
                return Err(FloeError::Conflict {
                    table,
                    reason: format!(
                        "{missing} data file(s) this merge rewrites were removed by another commit; rerun the load"
                    ),
                });
            }
        } else if !self.removed.is_empty() {
            return Err(FloeError::Conflict {
                table,
                reason: "the table has no snapshot but the merge planned to rewrite files".into(),
            });
        }
        let mut manifests = self
            .merge_small_manifests(base, manifests, attempt_files)
            .await?;
        for (i, deletes) in self.deletes_manifests.iter().enumerate() {
            manifests.insert(i, deletes.clone());
        }
        for (i, added) in self.added.manifests.iter().enumerate() {
            manifests.insert(i, added.clone());
        }

        let mut properties = sum_counts(&self.added_summary, &collector.build());
        removed_partitions.extend(self.added_partitions.iter().cloned());
        removed_partitions.retain(|p| !p.fields().is_empty());
        properties.remove("changed-partition-count");
        if !removed_partitions.is_empty() {
            properties.insert(
                "changed-partition-count".to_string(),
                removed_partitions.len().to_string(),
            );
        }
        properties.insert(LOAD_ID_PROPERTY.to_string(), self.load_id.clone());
        let operation = match self.operation {
            LoadOperation::Append => Operation::Append,
            LoadOperation::Merge if self.removed.is_empty() && self.added_deletes.is_empty() => {
                Operation::Append
            }
            LoadOperation::Merge => Operation::Overwrite,
            LoadOperation::Compact => Operation::Replace,
            LoadOperation::Replace | LoadOperation::ReplacePartitions => Operation::Overwrite,
        };
        if self.operation == LoadOperation::ReplacePartitions {
            properties.insert("replace-partitions".to_string(), "true".to_string());
        }
        let operation_name = operation.clone();
        let summary = with_totals(
            Summary {
                operation,
                additional_properties: properties,
            },
            metadata.current_snapshot().map(|s| s.summary()),
        );

        // The schema change, unless the table already has exactly this schema (a concurrent
        // writer made the same change).
        let mut updates = Vec::new();
        let mut requirements = Vec::new();
        let schema_id = match &self.schema_change {
            Some(schema) if metadata.current_schema().as_struct() != schema.as_struct() => {
                let predicted =
                    TableMetadataBuilder::new_from_metadata(metadata.as_ref().clone(), None)
                        .add_current_schema(schema.clone())
                        .and_then(|b| b.build())
                        .context(|| format!("table {table}: cannot apply the evolved schema"))?
                        .metadata
                        .current_schema_id();
                updates.push(TableUpdate::AddSchema {
                    schema: schema.clone(),
                });
                updates.push(TableUpdate::SetCurrentSchema { schema_id: -1 });
                requirements.push(TableRequirement::LastAssignedFieldIdMatch {
                    last_assigned_field_id: metadata.last_column_id(),
                });
                predicted
            }
            _ => metadata.current_schema_id(),
        };

        let sequence_number = metadata.next_sequence_number();
        let parent = metadata.current_snapshot_id();
        let list_path = format!(
            "{}/metadata/snap-{}-{}-{}.avro",
            metadata.location().trim_end_matches('/'),
            self.snapshot_id,
            attempt,
            self.commit_uuid
        );
        let ctx = || format!("table {table}: cannot write manifest list {list_path}");
        let out = base.file_io.new_output(&list_path).context(ctx)?;
        attempt_files.push(list_path.clone());
        let writer = out.writer().await.context(ctx)?;
        let mut list_writer = match metadata.format_version() {
            FormatVersion::V1 => ManifestListWriter::v1(writer, self.snapshot_id, parent),
            _ => ManifestListWriter::v2(writer, self.snapshot_id, parent, sequence_number),
        };
        list_writer
            .add_manifests(manifests.into_iter())
            .context(ctx)?;
        list_writer.close().await.context(ctx)?;

        let snapshot = Snapshot::builder()
            .with_snapshot_id(self.snapshot_id)
            .with_parent_snapshot_id(parent)
            .with_sequence_number(sequence_number)
            .with_timestamp_ms(now_ms().max(metadata.last_updated_ms() + 1))
            .with_manifest_list(list_path)
            .with_summary(summary)
            .with_schema_id(schema_id)
            .build();
        updates.extend([
            TableUpdate::AddSnapshot { snapshot },
            TableUpdate::SetSnapshotRef {
                ref_name: MAIN_BRANCH.to_string(),
                reference: SnapshotReference::new(
                    self.snapshot_id,
                    SnapshotRetention::branch(None, None, None),
                ),
            },
        ]);
        if base.is_staged() {
            requirements = vec![TableRequirement::NotExist];
        } else {
            requirements.extend([
                TableRequirement::UuidMatch {
                    uuid: metadata.uuid(),
                },
                TableRequirement::RefSnapshotIdMatch {
                    r#ref: MAIN_BRANCH.to_string(),
                    snapshot_id: parent,
                },
                TableRequirement::CurrentSchemaIdMatch {
                    current_schema_id: metadata.current_schema_id(),
                },
                TableRequirement::DefaultSpecIdMatch {
                    default_spec_id: metadata.default_partition_spec_id(),
                },
            ]);
        }
        Ok(StagedSnapshot {
            snapshot_id: self.snapshot_id,
            operation: operation_name,
            schema_id,
            updates,
            requirements,
            files_removed,
            rows_removed,
            attempt_files: std::mem::take(attempt_files),
        })
    }

    /// Merges the small data manifests carried over from earlier snapshots into one, once there
    /// are `commit.manifest.min-count-to-merge` (default 100) of them, as Java's merge-append
    /// does: without it every append adds a manifest, and the manifest list every commit and
    /// every reader's planning must go through grows with the table's history.
    async fn merge_small_manifests(
        &mut self,
        base: &TableState,
        manifests: Vec<ManifestFile>,
        attempt_files: &mut Vec<String>,
    ) -> Result<Vec<ManifestFile>> {
        let props = base.metadata.properties();
        let number = |key: &str, default: u64| {
            props
                .get(key)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(default)
        };
        if props
            .get(PROP_MANIFEST_MERGE)
            .is_some_and(|v| v.eq_ignore_ascii_case("false"))
        {
            return Ok(manifests);
        }
        let min_count = number(PROP_MIN_COUNT_TO_MERGE, DEFAULT_MIN_COUNT_TO_MERGE).max(2);
        let target = number(PROP_MANIFEST_TARGET_SIZE, DEFAULT_MANIFEST_TARGET_SIZE);
        let spec_id = self.spec.spec_id();
        let (small, mut kept): (Vec<ManifestFile>, Vec<ManifestFile>) =
            manifests.into_iter().partition(|m| {
                m.content == ManifestContentType::Data
                    && m.partition_spec_id == spec_id
                    && (m.manifest_length.max(0) as u64) < target
                    // Manifests this attempt rewrote stay as written.
                    && !attempt_files.contains(&m.manifest_path)
            });
        if (small.len() as u64) < min_count {
            kept.extend(small);
            return Ok(kept);
        }
        // One merged manifest per commit, up to the target size and a bounded number of
        // entries (the manifest writer holds its entries in memory until it writes).
        let mut group = Vec::new();
        let (mut bytes, mut files) = (0u64, 0u64);
        for m in small {
            let m_files = u64::from(m.added_files_count.unwrap_or(0))
                + u64::from(m.existing_files_count.unwrap_or(0));
            let m_bytes = m.manifest_length.max(0) as u64;
            if group.len() >= 2
                && (bytes + m_bytes > target || files + m_files > MAX_MERGED_ENTRIES as u64)
            {
                kept.push(m);
                continue;
            }
            bytes += m_bytes;
            files += m_files;
            group.push(m);
        }
        let small = group;
        let table = base.name();
        let schema = base.metadata.current_schema().clone();
        let mut writer = self.manifest_writer(
            base,
            ManifestContentType::Data,
            schema,
            self.spec.as_ref().clone(),
        )?;
        let mut entries = 0usize;
        for manifest in &small {
            let ctx = || {
                format!(
                    "table {table}: cannot merge manifest {}",
                    manifest.manifest_path
                )
            };
            let loaded = manifest.load_manifest(&base.file_io).await.context(ctx)?;
            for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
                let seq = entry.sequence_number().unwrap_or(0);
                let file_seq = entry.file_sequence_number.or(Some(seq));
                let added_by = entry.snapshot_id().unwrap_or(manifest.added_snapshot_id);
                writer
                    .add_existing_file(entry.data_file().clone(), added_by, seq, file_seq)
                    .context(ctx)?;
                entries += 1;
            }
        }
        if entries > 0 {
            let merged = writer
                .write_manifest_file()
                .await
                .context(|| format!("table {table}: cannot write a merged manifest"))?;
            tracing::debug!(table = %table, merged = small.len(), entries, "merged small manifests");
            attempt_files.push(merged.manifest_path.clone());
            kept.push(merged);
        }
        Ok(kept)
    }

    /// Rewrites `manifest` with the live entries `removes` picks as DELETED and the other live
    /// entries as EXISTING.
    async fn rewrite_manifest(
        &mut self,
        base: &TableState,
        manifest: &ManifestFile,
        removes: impl Fn(&DataFile) -> bool,
        collector: &mut SnapshotSummaryCollector,
        removed_partitions: &mut HashSet<Struct>,
    ) -> Result<Rewrite> {
        let table = base.name();
        let loaded = manifest.load_manifest(&base.file_io).await.context(|| {
            format!(
                "table {table}: cannot read manifest {}",
                manifest.manifest_path
            )
        })?;
        let live: Vec<_> = loaded.entries().iter().filter(|e| e.is_alive()).collect();
        if live.is_empty() {
            return Ok(Rewrite::Empty);
        }
        if !live.iter().any(|e| removes(e.data_file())) {
            return Ok(Rewrite::Untouched);
        }
        let spec = base
            .metadata
            .partition_spec_by_id(manifest.partition_spec_id)
            .cloned()
            .ok_or_else(|| FloeError::Conflict {
                table: table.clone(),
                reason: format!(
                    "manifest {} uses unknown partition spec {}",
                    manifest.manifest_path, manifest.partition_spec_id
                ),
            })?;
        let schema = base.metadata.current_schema().clone();
        let mut writer = self.manifest_writer(
            base,
            manifest.content,
            schema.clone(),
            spec.as_ref().clone(),
        )?;
        let (mut data_files, mut rows) = (0, 0);
        let ctx = || {
            format!(
                "table {table}: cannot rewrite manifest {}",
                manifest.manifest_path
            )
        };
        for entry in live {
            let file = entry.data_file().clone();
            let seq = entry.sequence_number().unwrap_or(0);
            let file_seq = entry.file_sequence_number.or(Some(seq));
            if removes(&file) {
                if file.content_type() == DataContentType::Data {
                    data_files += 1;
                    rows += file.record_count();
                }
                collector.remove_file(&file, schema.clone(), spec.clone());
                removed_partitions.insert(file.partition().clone());
                writer.add_delete_file(file, seq, file_seq).context(ctx)?;
            } else {
                let added_by = entry.snapshot_id().unwrap_or(manifest.added_snapshot_id);
                writer
                    .add_existing_file(file, added_by, seq, file_seq)
                    .context(ctx)?;
            }
        }
        let manifest = writer.write_manifest_file().await.context(ctx)?;
        Ok(Rewrite::Rewritten {
            manifest: Box::new(manifest),
            data_files,
            rows,
        })
    }

    /// Removes the files an unsuccessful attempt wrote.
    pub async fn discard_attempt(&self, base: &TableState, staged: &StagedSnapshot) {
        for path in &staged.attempt_files {
            let _ = base.file_io.delete(path).await;
        }
    }

    /// Removes the delete-file manifests it wrote (after the load is abandoned or found already
    /// done); the added files and their manifests are the load's ledger's.
    pub async fn discard_all(&mut self, base: &TableState) {
        for m in std::mem::take(&mut self.deletes_manifests) {
            let _ = base.file_io.delete(&m.manifest_path).await;
        }
    }
}

/// Two summaries' counts added up key by key (the keys are all counters).
fn sum_counts(a: &HashMap<String, String>, b: &HashMap<String, String>) -> HashMap<String, String> {
    let mut out = a.clone();
    for (k, v) in b {
        let sum = match (
            out.get(k).and_then(|x| x.parse::<u64>().ok()),
            v.parse::<u64>(),
        ) {
            (Some(x), Ok(y)) => (x + y).to_string(),
            _ => v.clone(),
        };
        out.insert(k.clone(), sum);
    }
    out
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
