//! Parquet files: footers checked up front, then read row group by row group with a batch size
//! derived from the byte budget.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{Schema as ArrowSchema, SchemaRef};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};

use super::{BatchBudget, BatchSender, Body, InputFormat, Inputs, Source, read_error, send};
use crate::error::Result;
use crate::progress::Progress;

/// Parquet files to load, in order.
#[derive(Debug, Clone)]
pub struct ParquetSource {
    files: Vec<PathBuf>,
    budget: BatchBudget,
}

impl ParquetSource {
    /// Expands files, directories (every `*.parquet` inside, sorted) and glob patterns.
    pub fn from_inputs(inputs: &[impl AsRef<str>]) -> Result<Self> {
        let inputs = Inputs::expand(inputs, Some(InputFormat::Parquet))?;
        Ok(Self::from_files(inputs.files()))
    }

    /// Exactly these files, in this order.
    pub fn from_files(files: Vec<PathBuf>) -> Self {
        Self {
            files,
            budget: BatchBudget::default(),
        }
    }

    pub fn with_budget(mut self, budget: BatchBudget) -> Self {
        self.budget = budget;
        self
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Total size of the input files on disk.
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Opens every file's footer (cheap) so a corrupt file fails before anything is written,
    /// and returns the first file's schema and the distinct schemas of the others.
    pub fn check_and_schemas(&self) -> Result<(SchemaRef, Vec<(String, SchemaRef)>)> {
        let mut first: Option<SchemaRef> = None;
        let mut others: Vec<(String, SchemaRef)> = Vec::new();
        for path in &self.files {
            let meta = open_metadata(path)?;
            let schema = Arc::new(ArrowSchema::new(meta.schema().fields().clone()));
            match &first {
                None => first = Some(schema),
                Some(f) if f.fields() == schema.fields() => {}
                Some(_) if others.iter().any(|(_, s)| s.fields() == schema.fields()) => {}
                Some(_) => others.push((path.display().to_string(), schema)),
            }
        }
        Ok((first.expect("at least one file"), others))
    }

    /// Checks every footer and returns the source; reading starts when its stream is taken.
    pub fn into_source(self, progress: Arc<Progress>) -> Result<Source> {
        let (schema, other_schemas) = self.check_and_schemas()?;
        Ok(Source {
            name: self.files[0].display().to_string(),
            schema,
            other_schemas,
            body: Body::Parquet {
                files: self.files,
                budget: self.budget,
                progress,
                columns: None,
            },
        })
    }
}

fn open_metadata(path: &Path) -> Result<ArrowReaderMetadata> {
    let file = File::open(path).map_err(|e| read_error(path, None, e))?;
    ArrowReaderMetadata::load(
        &file,
        ArrowReaderOptions::new().with_skip_arrow_metadata(false),
    )
    .map_err(|e| read_error(path, None, format!("not a readable Parquet file: {e}")))
}

/// Sends one file, row group by row group. Returns early (Ok) if the receiver is gone.
pub(super) fn read_file(
    path: &Path,
    budget: BatchBudget,
    columns: Option<&[String]>,
    tx: &BatchSender,
    progress: &Progress,
) -> Result<()> {
    let file = File::open(path).map_err(|e| read_error(path, None, e))?;
    let meta = open_metadata(path)?;
    let row_groups = meta.metadata().num_row_groups();
    let projection = columns.map(|names| {
        let schema = meta.metadata().file_metadata().schema_descr();
        let roots = schema.root_schema().get_fields();
        ProjectionMask::roots(
            schema,
            (0..roots.len()).filter(|&i| names.iter().any(|n| n == roots[i].name())),
        )
    });
    for rg in 0..row_groups {
        let rg_meta = meta.metadata().row_group(rg);
        let rows = rg_meta.num_rows().max(1) as usize;
        let row_bytes = (rg_meta.total_byte_size().max(1) as usize)
            .div_ceil(rows)
            .max(1);
        let max_rows = budget.max_rows.max(1);
        let batch_rows = (budget.max_bytes / row_bytes).clamp(max_rows.min(1024), max_rows);
        let origin: Arc<str> = Arc::from(format!("{} (row group {rg})", path.display()));
        let handle = file
            .try_clone()
            .map_err(|e| read_error(path, Some(rg), e))?;
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(handle, meta.clone())
            .with_row_groups(vec![rg])
            .with_batch_size(batch_rows);
        if let Some(mask) = &projection {
            builder = builder.with_projection(mask.clone());
        }
        let reader = builder.build().map_err(|e| read_error(path, Some(rg), e))?;
        for batch in reader {
            progress.check_cancelled()?;
            let batch = batch.map_err(|e| read_error(path, Some(rg), e))?;
            progress.add_input_rows(batch.num_rows() as u64);
            if !send(tx, batch, &origin) {
                return Ok(());
            }
        }
        progress.add_input_bytes(rg_meta.compressed_size().max(0) as u64);
    }
    Ok(())
}
