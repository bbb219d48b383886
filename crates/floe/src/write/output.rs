//! Data files floe writes with parquet's own file writer, from a blocking thread: where they
//! go (a new location each, recorded in the load's ledger before the first byte), how their
//! bytes reach storage (buffered, in large writes to iceberg's async file writer), and how a
//! finished file becomes a data file entry (metrics from its footer) in the load's sink.
//!
//! Used by the copy path ([`super::splice`]) and the column-parallel encoder
//! ([`super::columns`]), both for unpartitioned tables.

use std::io::Write;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use iceberg::io::{FileIO, FileWrite};
use iceberg::spec::{DataFileFormat, Schema, TableMetadata};
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator, FileNameGenerator, LocationGenerator,
};
use parquet::arrow::add_encoded_arrow_schema_to_metadata;
use parquet::arrow::arrow_writer::ArrowRowGroupWriterFactory;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::SchemaDescPtr;

use super::FileSettings;
use super::metrics::data_file_from_footer;
use crate::commit::AddedFilesSink;
use crate::error::{FloeError, Result, ResultExt};
use crate::ledger::FileLedger;

/// Bytes gathered before they are handed to storage in one write.
const OUTPUT_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Where a load's data files go and where finished ones are reported.
pub struct FileTarget {
    pub table: String,
    /// The table schema the files are written with (for their metrics).
    pub schema: Arc<Schema>,
    pub properties: WriterProperties,
    pub target_file_size: u64,
    spec_id: i32,
    file_io: FileIO,
    locations: DefaultLocationGenerator,
    names: DefaultFileNameGenerator,
    sink: AddedFilesSink,
    runtime: tokio::runtime::Handle,
    /// Where every file started is recorded (the load deletes them if it fails).
    ledger: FileLedger,
}

/// A data file being written.
pub struct OpenFile {
    pub writer: SerializedFileWriter<BlockingOutput>,
    pub factory: ArrowRowGroupWriterFactory,
    pub path: String,
    /// The Arrow schema of the file's columns.
    pub schema: SchemaRef,
}

impl FileTarget {
    /// Must be called inside the tokio runtime (it keeps a handle to it).
    pub fn new(
        table: &str,
        metadata: &TableMetadata,
        settings: &FileSettings,
        file_io: FileIO,
        file_prefix: &str,
        sink: AddedFilesSink,
        ledger: FileLedger,
    ) -> Result<Self> {
        Ok(Self {
            table: table.to_string(),
            schema: metadata.current_schema().clone(),
            properties: settings.writer_properties.clone(),
            target_file_size: settings.target_file_size,
            spec_id: metadata.default_partition_spec_id(),
            file_io,
            locations: DefaultLocationGenerator::new(metadata)
                .context(|| format!("table {table}: no location for data files"))?,
            names: DefaultFileNameGenerator::new(
                file_prefix.to_string(),
                None,
                DataFileFormat::Parquet,
            ),
            sink,
            runtime: tokio::runtime::Handle::current(),
            ledger,
        })
    }

    /// Starts a new data file with these columns (`parquet`: the same columns with the
    /// table's field ids).
    pub fn open(&self, arrow: &SchemaRef, parquet: &SchemaDescPtr) -> Result<OpenFile> {
        let location = self
            .locations
            .generate_location(None, &self.names.generate_file_name());
        self.ledger.record(&location);
        let output = self
            .file_io
            .new_output(&location)
            .context(|| format!("table {}: cannot create {location}", self.table))?;
        let inner = self
            .runtime
            .block_on(output.writer())
            .context(|| format!("table {}: cannot create {location}", self.table))?;
        let out = BlockingOutput::new(inner, self.runtime.clone());
        let mut properties = self.properties.clone();
        add_encoded_arrow_schema_to_metadata(arrow, &mut properties);
        let writer =
            SerializedFileWriter::new(out, parquet.root_schema_ptr(), Arc::new(properties))
                .map_err(|e| FloeError::DataFileWrite {
                    path: location.clone(),
                    reason: e.to_string(),
                })?;
        let factory = ArrowRowGroupWriterFactory::new(&writer, arrow.clone());
        Ok(OpenFile {
            writer,
            factory,
            path: location,
            schema: arrow.clone(),
        })
    }

    /// Writes the footer of `open` and hands the data file to the sink.
    pub fn finish(&self, open: OpenFile) -> Result<()> {
        let path = open.path;
        let write_error = |reason: String| FloeError::DataFileWrite {
            path: path.clone(),
            reason,
        };
        let mut writer = open.writer;
        let footer = writer.finish().map_err(|e| write_error(e.to_string()))?;
        let size = writer
            .inner_mut()
            .close()
            .map_err(|e| write_error(e.to_string()))?;
        let data_file =
            data_file_from_footer(&self.schema, self.spec_id, path.clone(), size, &footer)
                .map_err(write_error)?;
        let sink = self.sink.clone();
        self.runtime
            .block_on(async move { sink.lock().await.add(data_file).await })?;
        Ok(())
    }
}

impl OpenFile {
    /// Closes the file of a failed load as it is, so that storage holds a whole object (an S3
    /// multipart upload left open would linger, unseen, until a bucket rule removes it); the
    /// load's ledger then deletes it with every other file of the load.
    pub fn abandon(mut self) {
        if let Err(e) = self.writer.inner_mut().close() {
            tracing::warn!(file = %self.path, error = %e, "could not close a file of the failed load");
        }
    }
}

/// A synchronous `Write` over iceberg's async file writer, for the Parquet file writer running
/// on a blocking thread: bytes are buffered and handed over in large writes.
pub struct BlockingOutput {
    inner: Box<dyn FileWrite>,
    buffer: Vec<u8>,
    written: u64,
    runtime: tokio::runtime::Handle,
}

impl BlockingOutput {
    fn new(inner: Box<dyn FileWrite>, runtime: tokio::runtime::Handle) -> Self {
        Self {
            inner,
            buffer: Vec::with_capacity(OUTPUT_BUFFER_BYTES),
            written: 0,
            runtime,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let bytes = bytes::Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(OUTPUT_BUFFER_BYTES),
        ));
        self.runtime
            .block_on(self.inner.write(bytes))
            .map_err(std::io::Error::other)
    }

    /// Flushes and closes the file; returns its size.
    fn close(&mut self) -> std::io::Result<u64> {
        self.send()?;
        self.runtime
            .block_on(self.inner.close())
            .map_err(std::io::Error::other)?;
        Ok(self.written)
    }
}

impl Write for BlockingOutput {
    /// Fills the buffer to exactly its capacity before sending it, so it never grows (grown
    /// past its capacity, it would be copied into a new 8 MiB allocation every 4 MiB written).
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = OUTPUT_BUFFER_BYTES - self.buffer.len();
        let taken = buf.len().min(room);
        self.buffer.extend_from_slice(&buf[..taken]);
        self.written += taken as u64;
        if self.buffer.len() >= OUTPUT_BUFFER_BYTES {
            self.send()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Parquet flushes after every page; sending then would defeat the buffer. Bytes go out
        // when the buffer fills and on close.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::{BlockingOutput, OUTPUT_BUFFER_BYTES};

    #[test]
    fn large_writes_arrive_whole_through_a_buffer_that_never_grows() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        let factory = std::sync::Arc::new(iceberg::io::LocalFsStorageFactory);
        let file_io = iceberg::io::FileIOBuilder::new(factory).build();
        let output = file_io.new_output(path.to_str().unwrap()).unwrap();
        let inner = runtime.block_on(output.writer()).unwrap();
        let mut out = BlockingOutput::new(inner, runtime.handle().clone());
        let mut expected = Vec::new();
        for (i, len) in [3 << 20, 3 << 20, 5 << 20, 10].into_iter().enumerate() {
            let chunk = vec![i as u8 + 1; len];
            out.write_all(&chunk).unwrap();
            expected.extend_from_slice(&chunk);
            assert_eq!(out.buffer.capacity(), OUTPUT_BUFFER_BYTES);
        }
        assert_eq!(out.close().unwrap(), expected.len() as u64);
        assert!(std::fs::read(&path).unwrap() == expected);
    }
}
