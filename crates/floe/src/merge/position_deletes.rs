//! Position-delete files (merge-on-read): `(file_path, pos)` rows that hide rows of a data file.
//!
//! iceberg-rust 0.10.1 has no position-delete writer, so floe writes them with its Parquet
//! writer and the spec's reserved field ids, one delete file per data file it deletes from
//! (with `referenced_data_file` set, so readers can skip it for every other file).

use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::io::FileIO;
use iceberg::spec::{
    DataContentType, DataFile, DataFileFormat, NestedField, PrimitiveType, Schema, TableMetadata,
    Type,
};
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use parquet::file::properties::WriterProperties;
use roaring::RoaringTreemap;
use uuid::Uuid;

use super::table_files::LiveFile;
use crate::error::{FloeError, Result, ResultExt};
use crate::ledger::{FileLedger, LedgerLocations};

/// Reserved field id of `file_path` in position-delete files.
pub const FILE_PATH_FIELD_ID: i32 = 2147483546;
/// Reserved field id of `pos` in position-delete files.
pub const POS_FIELD_ID: i32 = 2147483545;

const ROWS_PER_BATCH: u64 = 65536;

pub struct PositionDeleteWriter {
    builder: RollingFileWriterBuilder<
        ParquetWriterBuilder,
        LedgerLocations<DefaultLocationGenerator>,
        DefaultFileNameGenerator,
    >,
    arrow: Arc<arrow_schema::Schema>,
    table: String,
}

impl PositionDeleteWriter {
    pub fn new(
        table: &str,
        metadata: &TableMetadata,
        file_io: FileIO,
        load_uuid: Uuid,
        properties: WriterProperties,
        ledger: FileLedger,
    ) -> Result<Self> {
        let ctx = || format!("table {table}: cannot set up position-delete writers");
        let schema = Schema::builder()
            .with_fields(vec![
                Arc::new(NestedField::required(
                    FILE_PATH_FIELD_ID,
                    "file_path",
                    Type::Primitive(PrimitiveType::String),
                )),
                Arc::new(NestedField::required(
                    POS_FIELD_ID,
                    "pos",
                    Type::Primitive(PrimitiveType::Long),
                )),
            ])
            .build()
            .context(ctx)?;
        let arrow = Arc::new(schema_to_arrow_schema(&schema).context(ctx)?);
        let parquet = ParquetWriterBuilder::new(properties, Arc::new(schema));
        let builder = RollingFileWriterBuilder::new(
            parquet,
            usize::MAX,
            file_io,
            LedgerLocations::new(
                DefaultLocationGenerator::new(metadata).context(ctx)?,
                ledger,
            ),
            DefaultFileNameGenerator::new(
                format!("{load_uuid}-deletes"),
                None,
                DataFileFormat::Parquet,
            ),
        );
        Ok(Self {
            builder,
            arrow,
            table: table.to_string(),
        })
    }

    /// Writes the delete file that hides `positions` of `target`.
    pub async fn write(
        &self,
        target: &LiveFile,
        positions: &RoaringTreemap,
    ) -> Result<Vec<DataFile>> {
        let table = &self.table;
        let ctx = || {
            format!(
                "table {table}: cannot write a position-delete file for {}",
                target.path.as_str()
            )
        };
        let mut writer = self.builder.build();
        let path = target.path.as_str();
        let mut iter = positions.iter().peekable();
        while iter.peek().is_some() {
            let chunk: Vec<i64> = iter
                .by_ref()
                .take(ROWS_PER_BATCH as usize)
                .map(|p| p as i64)
                .collect();
            let paths = StringArray::from_iter_values(std::iter::repeat_n(path, chunk.len()));
            let batch = RecordBatch::try_new(
                self.arrow.clone(),
                vec![Arc::new(paths), Arc::new(Int64Array::from(chunk))],
            )
            .context(ctx)?;
            writer.write(&None, &batch).await.context(ctx)?;
        }
        let builders = writer.close().await.context(ctx)?;
        builders
            .into_iter()
            .map(|mut b| {
                b.content(DataContentType::PositionDeletes)
                    .partition(target.partition.clone())
                    .partition_spec_id(target.spec_id)
                    .referenced_data_file(Some(path.to_string()));
                b.build().map_err(|e| FloeError::DataFileWrite {
                    path: path.to_string(),
                    reason: format!("cannot describe its position-delete file: {e}"),
                })
            })
            .collect()
    }
}
