//! Write: turn conformed batches into Iceberg data files.
//!
//! Layered like iceberg-rust's writers, which floe composes rather than re-implements:
//! `ParquetWriterBuilder` (one Parquet file, field ids, column metrics) ->
//! `RollingFileWriter` (rolls at a real-bytes target size) -> `DataFileWriter` (one partition)
//! -> [`TableWriter`] (splits batches by partition). floe adds what 0.10.1 leaves out: writer
//! properties from the table (`write.parquet.compression-codec`, zstd by default, row-group
//! byte limits), a per-load UUID in every file name, and every file it starts recorded in the
//! load's [`FileLedger`], which deletes them if the load fails.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use iceberg::io::FileIO;
use iceberg::spec::{DataFileFormat, PartitionKey, TableMetadata};
use iceberg::writer::base_writer::data_file_writer::{DataFileWriter, DataFileWriterBuilder};
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::commit::AddedFilesSink;
use crate::error::{FloeError, Result, ResultExt};
use crate::ledger::{FileLedger, LedgerLocations};

mod columns;
mod metrics;
pub mod metrics_config;
mod output;
mod parallel;
mod partition_values;
mod partitioned;
pub mod splice;
mod verify;

pub use output::FileTarget;
pub use parallel::ParallelWriter;

/// Table property: target data file size in bytes.
pub const PROP_TARGET_FILE_SIZE: &str = "write.target-file-size-bytes";
/// Table property: Parquet compression codec.
pub const PROP_COMPRESSION_CODEC: &str = "write.parquet.compression-codec";
/// Table property: Parquet compression level.
pub const PROP_COMPRESSION_LEVEL: &str = "write.parquet.compression-level";
/// Table property: Parquet row group size in bytes.
pub const PROP_ROW_GROUP_BYTES: &str = "write.parquet.row-group-size-bytes";
/// Table property: most bytes of a column's dictionary before it falls back to plain encoding.
pub const PROP_DICT_BYTES: &str = "write.parquet.dict-size-bytes";

/// Default target file size (the Iceberg default).
pub const DEFAULT_TARGET_FILE_SIZE: u64 = 512 * 1024 * 1024;
/// Default row group size, per data file. Much smaller than Iceberg's 128 MiB: a row group is
/// buffered (encoded) in memory until it is full, once per open file, and floe keeps its memory
/// small; on typical data this still gives row groups of tens of thousands of rows.
pub const DEFAULT_ROW_GROUP_BYTES: usize = 8 * 1024 * 1024;
/// Default dictionary limit per column chunk. Far below the usual 1-2 MiB: low-cardinality
/// columns still get a dictionary, while high-cardinality ones (ids, timestamps, amounts, free
/// text) fall back to plain encoding early, which under zstd is smaller (7% less on the
/// benchmark data, ids half the size) and skips most of the dictionary hashing (25% faster
/// loads). See docs/benchmarks.md.
pub const DEFAULT_DICT_BYTES: usize = 64 * 1024;

/// A byte size as users write it: `1048576`, `64MiB`, `1GiB` (K/M/G, KB/MB/GB and KiB/MiB/GiB
/// are all powers of 1,024).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (examples: 1048576, 64MiB, 1GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit '{other}' (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("'{s}' is not a usable size"))
}

/// Choices a caller can make about the files written; `None` means the table's property, then
/// floe's default.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub target_file_size: Option<u64>,
    /// Codec name as in `write.parquet.compression-codec` (`zstd`, `snappy`, `gzip`, `lz4`,
    /// `brotli`, `uncompressed`).
    pub compression: Option<String>,
    pub compression_level: Option<i32>,
    pub row_group_bytes: Option<usize>,
    /// Partitioned tables: most data files open at once (default 16). A load that touches
    /// more partitions is clustered by partition through a bounded sort that spills to disk.
    pub max_open_files: Option<usize>,
    /// Where sorts spill (default: the system temp directory).
    pub spill_dir: Option<std::path::PathBuf>,
    /// Partitioned tables: bytes the clustering sort buffers before it spills a run (default
    /// 64 MiB; a merge gives it its sorts' share of its memory limit).
    pub cluster_sort_bytes: Option<usize>,
    /// Unpartitioned loads: threads encoding the columns of each row group (default: one per
    /// core, at most 2). Files are written one at a time, rows in input order.
    pub writers: Option<usize>,
    /// Decode and re-encode every input row, never copying Parquet column chunks as they are
    /// (see `write::splice`).
    pub rewrite: bool,
}

/// Default memory of the clustering sort (partitioned tables, past `max_open_files`).
pub const DEFAULT_CLUSTER_SORT_BYTES: usize = 64 * 1024 * 1024;
/// Default cap on open data files per load (partitioned tables).
pub const DEFAULT_MAX_OPEN_FILES: usize = 16;
/// Memory all open partition writers may buffer together; each gets an equal share as its
/// row group size (at most the table's row group size).
pub const PARTITIONED_BUFFER_BYTES: usize = 128 * 1024 * 1024;

/// Resolved settings for one load.
#[derive(Debug, Clone)]
pub struct FileSettings {
    pub target_file_size: u64,
    pub row_group_bytes: usize,
    pub compression: Compression,
    pub writer_properties: WriterProperties,
    /// Writer properties for partitioned tables: row groups sized so that `max_open_files`
    /// writers fit in [`PARTITIONED_BUFFER_BYTES`].
    pub partitioned_writer_properties: WriterProperties,
    pub max_open_files: usize,
    pub spill_dir: Option<std::path::PathBuf>,
    pub cluster_sort_bytes: usize,
}

impl FileSettings {
    pub fn resolve(props: &HashMap<String, String>, opts: &WriteOptions) -> Result<Self> {
        let parse_prop = |key: &str| -> Result<Option<i64>> {
            props
                .get(key)
                .map(|v| {
                    v.trim().parse::<i64>().map_err(|_| {
                        FloeError::InvalidOption(format!(
                            "table property {key}={v} is not a number"
                        ))
                    })
                })
                .transpose()
        };
        let target_file_size = match opts.target_file_size {
            Some(n) => n,
            None => parse_prop(PROP_TARGET_FILE_SIZE)?
                .map(|n| n.max(1) as u64)
                .unwrap_or(DEFAULT_TARGET_FILE_SIZE),
        };
        let row_group_bytes = match opts.row_group_bytes {
            Some(n) => n,
            None => parse_prop(PROP_ROW_GROUP_BYTES)?
                .map(|n| n.max(1) as usize)
                .unwrap_or(DEFAULT_ROW_GROUP_BYTES),
        };
        let codec = opts
            .compression
            .clone()
            .or_else(|| props.get(PROP_COMPRESSION_CODEC).cloned())
            .unwrap_or_else(|| "zstd".to_string());
        let level = match opts.compression_level {
            Some(l) => Some(l),
            None => parse_prop(PROP_COMPRESSION_LEVEL)?.map(|l| l as i32),
        };
        let compression = compression(&codec, level)?;
        let dictionary_bytes = parse_prop(PROP_DICT_BYTES)?
            .map(|n| n.max(1) as usize)
            .unwrap_or(DEFAULT_DICT_BYTES);
        let properties = |row_group_bytes: usize| {
            WriterProperties::builder()
                .set_compression(compression)
                .set_max_row_group_bytes(Some(row_group_bytes))
                .set_dictionary_page_size_limit(dictionary_bytes)
                .build()
        };
        let max_open_files = opts.max_open_files.unwrap_or(DEFAULT_MAX_OPEN_FILES).max(1);
        let partitioned_row_group = (PARTITIONED_BUFFER_BYTES / max_open_files)
            .clamp(1 << 20, row_group_bytes.max(1 << 20));
        Ok(Self {
            target_file_size,
            row_group_bytes,
            compression,
            writer_properties: properties(row_group_bytes),
            partitioned_writer_properties: properties(partitioned_row_group),
            max_open_files,
            spill_dir: opts.spill_dir.clone(),
            cluster_sort_bytes: opts
                .cluster_sort_bytes
                .unwrap_or(DEFAULT_CLUSTER_SORT_BYTES),
        })
    }
}

fn compression(codec: &str, level: Option<i32>) -> Result<Compression> {
    let bad_level = |e: parquet::errors::ParquetError| {
        FloeError::InvalidOption(format!("compression level {level:?} for {codec}: {e}"))
    };
    Ok(match codec.to_ascii_lowercase().as_str() {
        "zstd" => Compression::ZSTD(ZstdLevel::try_new(level.unwrap_or(1)).map_err(bad_level)?),
        "snappy" => Compression::SNAPPY,
        "gzip" => {
            Compression::GZIP(GzipLevel::try_new(level.unwrap_or(6) as u32).map_err(bad_level)?)
        }
        "brotli" => {
            Compression::BROTLI(BrotliLevel::try_new(level.unwrap_or(1) as u32).map_err(bad_level)?)
        }
        "lz4" => Compression::LZ4_RAW,
        "uncompressed" | "none" => Compression::UNCOMPRESSED,
        other => {
            return Err(FloeError::InvalidOption(format!(
                "unknown Parquet compression codec '{other}' (zstd, snappy, gzip, brotli, lz4, uncompressed)"
            )));
        }
    })
}

type Locations = LedgerLocations<DefaultLocationGenerator>;
type PartitionWriter = DataFileWriter<ParquetWriterBuilder, Locations, DefaultFileNameGenerator>;
type PartitionWriterBuilder =
    DataFileWriterBuilder<ParquetWriterBuilder, Locations, DefaultFileNameGenerator>;

/// Writes a load's batches into data files of the table's current schema and partition spec.
pub struct TableWriter {
    builder: PartitionWriterBuilder,
    table: String,
    metadata: Arc<TableMetadata>,
    mode: Mode,
    /// Where finished data files go (into manifests, not memory).
    sink: AddedFilesSink,
}

enum Mode {
    Unpartitioned(Option<Box<PartitionWriter>>),
    Partitioned(Box<partitioned::PartitionedWriter>),
}

impl TableWriter {
    pub fn new(
        table: &str,
        metadata: Arc<TableMetadata>,
        file_io: FileIO,
        file_prefix: &str,
        settings: &FileSettings,
        sink: AddedFilesSink,
        ledger: FileLedger,
    ) -> Result<Self> {
        let ctx = || format!("table {table}: cannot set up data file writers");
        let schema = metadata.current_schema().clone();
        let spec = metadata.default_partition_spec().clone();
        let properties = if spec.is_unpartitioned() {
            settings.writer_properties.clone()
        } else {
            settings.partitioned_writer_properties.clone()
        };
        let parquet = ParquetWriterBuilder::new(properties, schema.clone());
        let locations = LedgerLocations::new(
            DefaultLocationGenerator::new(&metadata).context(ctx)?,
            ledger,
        );
        let names =
            DefaultFileNameGenerator::new(file_prefix.to_string(), None, DataFileFormat::Parquet);
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            settings.target_file_size as usize,
            file_io.clone(),
            locations,
            names,
        );
        let builder = DataFileWriterBuilder::new(rolling);
        let mode = if spec.is_unpartitioned() {
            Mode::Unpartitioned(None)
        } else {
            Mode::Partitioned(Box::new(partitioned::PartitionedWriter::new(
                table,
                schema,
                spec.clone(),
                settings,
            )?))
        };
        Ok(Self {
            builder,
            table: table.to_string(),
            metadata,
            mode,
            sink,
        })
    }

    /// The key of a table whose spec has no fields, or only `void` ones (all null).
    fn unpartitioned_key(&self) -> PartitionKey {
        let spec = self.metadata.default_partition_spec();
        PartitionKey::new(
            spec.as_ref().clone(),
            self.metadata.current_schema().clone(),
            std::iter::repeat_n(None, spec.fields().len()).collect(),
        )
    }

    /// Writes one conformed batch.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let table = self.table.clone();
        let ctx = || format!("table {table}: writing data files failed");
        let new_key =
            matches!(self.mode, Mode::Unpartitioned(None)).then(|| self.unpartitioned_key());
        match &mut self.mode {
            Mode::Unpartitioned(writer) => {
                if let Some(key) = new_key {
                    *writer = Some(Box::new(self.builder.build(Some(key)).await.context(ctx)?));
                }
                writer
                    .as_mut()
                    .expect("writer")
                    .write(batch)
                    .await
                    .context(ctx)
            }
            Mode::Partitioned(writer) => writer.write(&self.builder, &self.sink, batch).await,
        }
    }

    /// Finishes every open file; the data files go to the sink.
    pub async fn close(&mut self) -> Result<()> {
        let table = self.table.clone();
        let ctx = || format!("table {table}: finishing data files failed");
        match &mut self.mode {
            Mode::Unpartitioned(writer) => {
                if let Some(mut w) = writer.take() {
                    let files = w.close().await.context(ctx)?;
                    self.sink.lock().await.add_all(files).await?;
                }
            }
            Mode::Partitioned(writer) => writer.close(&self.builder, &self.sink).await?,
        }
        Ok(())
    }

    /// Runs the partition clustering sort spilled to disk so far.
    pub fn spilled_runs(&self) -> usize {
        match &self.mode {
            Mode::Unpartitioned(_) => 0,
            Mode::Partitioned(writer) => writer.spilled_runs(),
        }
    }

    /// Stops a failed load's writer: open files are closed as they are (so storage holds whole
    /// objects, no lingering multipart uploads); the load's ledger deletes them.
    pub async fn abort(&mut self) {
        if let Err(e) = self.close().await {
            tracing::debug!(table = %self.table, error = %e, "closing the writer of a failed load");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_zstd_and_honour_table_properties() {
        let s = FileSettings::resolve(&HashMap::new(), &WriteOptions::default()).unwrap();
        assert_eq!(s.target_file_size, DEFAULT_TARGET_FILE_SIZE);
        assert!(matches!(
            s.writer_properties
                .compression(&parquet::schema::types::ColumnPath::from("x")),
            Compression::ZSTD(_)
        ));
        let mut props = HashMap::new();
        props.insert(PROP_COMPRESSION_CODEC.to_string(), "snappy".to_string());
        props.insert(PROP_TARGET_FILE_SIZE.to_string(), "1048576".to_string());
        let s = FileSettings::resolve(&props, &WriteOptions::default()).unwrap();
        assert_eq!(s.target_file_size, 1048576);
        assert_eq!(
            s.writer_properties
                .compression(&parquet::schema::types::ColumnPath::from("x")),
            Compression::SNAPPY
        );
        assert_eq!(
            s.writer_properties.dictionary_page_size_limit(),
            DEFAULT_DICT_BYTES
        );
        props.insert(PROP_DICT_BYTES.to_string(), "2097152".to_string());
        let s = FileSettings::resolve(&props, &WriteOptions::default()).unwrap();
        assert_eq!(s.writer_properties.dictionary_page_size_limit(), 2097152);
        props.insert(PROP_COMPRESSION_CODEC.to_string(), "lzma".to_string());
        assert!(FileSettings::resolve(&props, &WriteOptions::default()).is_err());
    }
}
