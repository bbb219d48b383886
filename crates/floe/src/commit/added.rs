//! The data files a load adds, streamed into manifests as the writers finish them.
//!
//! A load into 10,000 partitions finishes 10,000 data files; holding every `DataFile` (bounds
//! and counts per column) until the commit would make memory grow with the number of files.
//! Instead each finished file goes straight into a manifest, and a manifest is written out every
//! [`MANIFEST_ENTRIES`] files. What stays in memory per file is its partition value (for
//! replace-partitions) and the summary counts; its path is in the load's [`FileLedger`], like
//! every manifest written here.
//!
//! The manifests are written once per load, before the commit: their entries carry the load's
//! snapshot id, chosen here, and inherit their sequence number when the snapshot lands.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use iceberg::io::FileIO;
use iceberg::spec::{
    DataFile, FormatVersion, ManifestFile, ManifestWriter, ManifestWriterBuilder, PartitionSpecRef,
    SchemaRef, SnapshotSummaryCollector, Struct, TableMetadata,
};
use uuid::Uuid;

use crate::error::{FloeError, Result, ResultExt};
use crate::ledger::FileLedger;
use crate::write::metrics_config::MetricsConfig;

/// Entries per manifest: bounds the `DataFile`s held in memory at once.
pub const MANIFEST_ENTRIES: usize = 1000;

/// A shared handle writers push finished files into.
pub type AddedFilesSink = Arc<tokio::sync::Mutex<AddedFiles>>;

/// Collects the files a load adds into rolling manifests.
pub struct AddedFiles {
    table: String,
    file_io: FileIO,
    metadata_dir: String,
    format_version: FormatVersion,
    schema: SchemaRef,
    spec: PartitionSpecRef,
    metrics: MetricsConfig,
    snapshot_id: i64,
    commit_uuid: Uuid,
    writer: Option<ManifestWriter>,
    in_writer: usize,
    manifests: Vec<ManifestFile>,
    collector: SnapshotSummaryCollector,
    partitions: HashSet<Struct>,
    files: u64,
    rows: u64,
    bytes: u64,
    ledger: FileLedger,
}

/// The finished result: manifests and what the snapshot summary needs to know about them.
#[derive(Clone, Debug)]
pub struct AddedManifests {
    /// The snapshot id the manifests' entries carry: the load's snapshot must use it.
    pub snapshot_id: i64,
    pub manifests: Vec<ManifestFile>,
    /// Summary properties of the added files (`added-*`).
    pub summary: HashMap<String, String>,
    /// The distinct partition values of the added files.
    pub partitions: HashSet<Struct>,
    /// How many data files were added.
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
}

impl AddedManifests {
    pub fn files(&self) -> u64 {
        self.files
    }

    pub fn is_empty(&self) -> bool {
        self.files == 0
    }
}

/// A snapshot id that `metadata` does not use yet.
pub fn fresh_snapshot_id(metadata: &TableMetadata) -> i64 {
    loop {
        let (a, b) = Uuid::new_v4().as_u64_pair();
        let id = ((a ^ b) & (i64::MAX as u64)) as i64;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

impl AddedFiles {
    /// Files of `metadata`'s current schema and default spec (the metadata writers write with),
    /// their metrics cut to the table's metrics modes.
    /// Every manifest it writes is recorded in `ledger`.
    pub fn new(
        table: &str,
        metadata: &TableMetadata,
        file_io: FileIO,
        ledger: FileLedger,
    ) -> Result<Self> {
        let metrics =
            MetricsConfig::from_properties(metadata.properties(), metadata.current_schema())
                .map_err(|e| FloeError::InvalidOption(format!("table {table}: {e}")))?;
        Ok(Self {
            table: table.to_string(),
            file_io,
            metadata_dir: format!("{}/metadata", metadata.location().trim_end_matches('/')),
            format_version: metadata.format_version(),
            schema: metadata.current_schema().clone(),
            spec: metadata.default_partition_spec().clone(),
            metrics,
            snapshot_id: fresh_snapshot_id(metadata),
            commit_uuid: Uuid::new_v4(),
            writer: None,
            in_writer: 0,
            manifests: Vec::new(),
            collector: SnapshotSummaryCollector::default(),
            partitions: HashSet::new(),
            files: 0,
            rows: 0,
            bytes: 0,
            ledger,
        })
    }

    /// A sink for writers running on other tasks.
    pub fn into_sink(self) -> AddedFilesSink {
        Arc::new(tokio::sync::Mutex::new(self))
    }

    /// Adds one finished data file.
    pub async fn add(&mut self, file: DataFile) -> Result<()> {
        let file = self.metrics.apply(file, self.spec.spec_id()).map_err(|e| {
            FloeError::InvalidOption(format!(
                "table {}: cannot apply metrics modes: {e}",
                self.table
            ))
        })?;
        self.collector
            .add_file(&file, self.schema.clone(), self.spec.clone());
        self.partitions.insert(file.partition().clone());
        self.files += 1;
        self.rows += file.record_count();
        self.bytes += file.file_size_in_bytes();
        if self.writer.is_none() {
            self.writer = Some(self.new_writer()?);
        }
        let table = &self.table;
        let path = file.file_path().to_string();
        // A negative sequence number leaves it unassigned: inherited at commit time.
        self.writer
            .as_mut()
            .expect("manifest writer")
            .add_file(file, -1)
            .context(|| format!("table {table}: cannot add {path} to a manifest"))?;
        self.in_writer += 1;
        if self.in_writer >= MANIFEST_ENTRIES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Adds several finished data files.
    pub async fn add_all(&mut self, files: impl IntoIterator<Item = DataFile>) -> Result<()> {
        for file in files {
            self.add(file).await?;
        }
        Ok(())
    }

    fn new_writer(&self) -> Result<ManifestWriter> {
        let path = format!(
            "{}/{}-m{}.avro",
            self.metadata_dir,
            self.commit_uuid,
            self.manifests.len()
        );
        self.ledger.record(&path);
        let output = self
            .file_io
            .new_output(&path)
            .context(|| format!("cannot create manifest {path}"))?;
        let builder = ManifestWriterBuilder::new(
            output,
            Some(self.snapshot_id),
            self.schema.clone(),
            self.spec.as_ref().clone(),
        );
        Ok(match self.format_version {
            FormatVersion::V1 => builder.build_v1(),
            _ => builder.build_v2_data(),
        })
    }

    async fn flush(&mut self) -> Result<()> {
        if let Some(writer) = self.writer.take() {
            let table = &self.table;
            let manifest = writer
                .write_manifest_file()
                .await
                .context(|| format!("table {table}: cannot write the added-files manifest"))?;
            self.manifests.push(manifest);
            self.in_writer = 0;
        }
        Ok(())
    }

    /// Writes the last manifest and hands everything over for the commit.
    pub async fn finish(&mut self) -> Result<AddedManifests> {
        self.flush().await?;
        Ok(AddedManifests {
            snapshot_id: self.snapshot_id,
            manifests: std::mem::take(&mut self.manifests),
            summary: std::mem::take(&mut self.collector).build(),
            partitions: std::mem::take(&mut self.partitions),
            files: std::mem::take(&mut self.files),
            rows: std::mem::take(&mut self.rows),
            bytes: std::mem::take(&mut self.bytes),
        })
    }
}
