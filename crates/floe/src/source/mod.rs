//! Sources: turn files (or any Arrow stream) into a bounded stream of record batches.
//!
//! Parquet inputs are read row group by row group on a blocking thread, with a batch size derived
//! from a byte budget, and handed over through a channel of a few batches. Memory therefore
//! depends on the batch budget, never on file or dataset size, and decoding overlaps with the
//! conform/encode work downstream.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_array::RecordBatch;
use arrow_schema::{Schema as ArrowSchema, SchemaRef};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::{FloeError, Result};
use crate::progress::Progress;

mod csv;
mod infer;
mod inputs;
mod ipc;
mod json;
mod parquet;
mod records;

pub use self::csv::CsvOptions;
pub use inputs::{Input, InputFormat, Inputs};
pub use parquet::ParquetSource;
use records::Records;

/// One batch and where it came from, for error messages.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    pub batch: RecordBatch,
    /// For example `data/a.parquet (row group 3)`.
    pub origin: Arc<str>,
}

/// A stream of batches with the schemas of its inputs.
pub struct Source {
    /// Name of the first input (a file path, or the stream's name), for messages.
    pub name: String,
    /// Schema of the first input: creates a missing table. Batches may differ in column order.
    pub schema: SchemaRef,
    /// Distinct schemas of the other inputs (files whose columns differ from the first), with
    /// the input they came from, so schema evolution can be decided before writing.
    pub other_schemas: Vec<(String, SchemaRef)>,
    body: Body,
}

/// Where the batches come from. Parquet files are read only when the stream is taken, so a
/// load can first take the files it copies instead of decoding ([`crate::write::splice`]).
enum Body {
    Stream(BoxStream<'static, Result<SourceBatch>>),
    Parquet {
        files: Vec<PathBuf>,
        budget: BatchBudget,
        progress: Arc<Progress>,
        /// Read only these top-level columns (all when `None`).
        columns: Option<Vec<String>>,
    },
    /// JSON lines, CSV or Arrow IPC inputs.
    Records(Records),
}

/// The batches of a source, each with where it came from.
pub type BatchStream = BoxStream<'static, Result<SourceBatch>>;

impl Source {
    /// Wraps any Arrow record-batch stream (the library entry point for non-file sources).
    pub fn from_stream<S, E>(schema: SchemaRef, name: &str, stream: S) -> Self
    where
        S: futures::Stream<Item = std::result::Result<RecordBatch, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let origin: Arc<str> = Arc::from(name);
        let stream = stream
            .map(move |item| match item {
                Ok(batch) => Ok(SourceBatch {
                    batch,
                    origin: origin.clone(),
                }),
                Err(e) => Err(FloeError::InputRead {
                    path: PathBuf::from(&*origin),
                    row_group: None,
                    reason: e.to_string(),
                }),
            })
            .boxed();
        Self {
            name: name.to_string(),
            schema,
            other_schemas: Vec::new(),
            body: Body::Stream(stream),
        }
    }

    /// The input files, when the source is a list of Parquet files not yet read.
    pub fn parquet_files(&self) -> Option<&[PathBuf]> {
        match &self.body {
            Body::Parquet { files, .. } => Some(files),
            Body::Stream(_) | Body::Records(_) => None,
        }
    }

    /// The batch budget of a Parquet source (the default for other sources).
    pub fn batch_budget(&self) -> BatchBudget {
        match &self.body {
            Body::Parquet { budget, .. } => *budget,
            Body::Records(records) => records.budget(),
            Body::Stream(_) => BatchBudget::default(),
        }
    }

    /// Keeps only the Parquet files `keep` accepts (the others are loaded another way).
    pub(crate) fn retain_files(&mut self, keep: impl Fn(&Path) -> bool) {
        if let Body::Parquet { files, .. } = &mut self.body {
            files.retain(|f| keep(f));
        }
    }

    /// Parquet files: read only these top-level columns (the others are not decoded at all).
    /// Returns false, changing nothing, for other sources.
    pub(crate) fn project(&mut self, names: Vec<String>) -> bool {
        match &mut self.body {
            Body::Parquet { columns, .. } => {
                *columns = Some(names);
                true
            }
            Body::Stream(_) | Body::Records(_) => false,
        }
    }

    /// The batches; for files this starts the reader thread.
    pub fn into_stream(self) -> BatchStream {
        self.into_table_stream(None)
    }

    /// The batches of a load into a table of `table`'s Arrow schema: text inputs whose schema
    /// was inferred are parsed straight into the table's types.
    pub fn into_table_stream(self, table: Option<SchemaRef>) -> BatchStream {
        match self.body {
            Body::Stream(stream) => stream,
            Body::Records(records) => records.into_stream(table),
            Body::Parquet {
                files,
                budget,
                progress,
                columns,
            } => spawn_reader(budget, move |tx| {
                for path in &files {
                    parquet::read_file(path, budget, columns.as_deref(), tx, &progress)?;
                    progress.add_input_file();
                }
                Ok(())
            }),
        }
    }

    /// Every distinct input schema with where it came from, the first input's first.
    pub fn schemas(&self) -> Vec<(String, SchemaRef)> {
        let mut all = vec![(self.name.clone(), self.schema.clone())];
        all.extend(self.other_schemas.iter().cloned());
        all
    }

    /// What planning needs to know about the inputs, without the stream.
    pub fn info(&self) -> SourceInfo {
        SourceInfo {
            name: self.name.clone(),
            schema: self.schema.clone(),
            schemas: self.schemas(),
            typed_by_table: matches!(&self.body, Body::Records(r) if r.inferred()),
        }
    }

    /// For text inputs whose schema was inferred: the first input's, as an Iceberg schema in
    /// JSON (what `--json` prints).
    pub fn inferred_schema(&self) -> Result<Option<serde_json::Value>> {
        if !matches!(&self.body, Body::Records(r) if r.inferred()) {
            return Ok(None);
        }
        self.schema_json().map(Some)
    }

    /// The first input's schema as an Iceberg schema in JSON (what `--dry-run` prints).
    pub fn schema_json(&self) -> Result<serde_json::Value> {
        let schema = crate::conform::iceberg_schema_from_arrow(&self.schema, &self.name)?;
        serde_json::to_value(&schema)
            .map_err(|e| FloeError::InvalidOption(format!("cannot print the input schema: {e}")))
    }

    /// Opens a load's inputs (file names, directories, globs, `-` for stdin) of one format:
    /// Parquet footers are checked, IPC headers read, text inputs sampled for their schema.
    pub fn open(
        names: &[impl AsRef<str>],
        options: &InputOptions,
        progress: Arc<Progress>,
    ) -> Result<Self> {
        let inputs = Inputs::expand(names, options.format)?;
        if inputs.format == InputFormat::Parquet {
            if options.schema.is_some() {
                return Err(FloeError::InvalidOption(
                    "--schema applies to JSON lines and CSV inputs (Parquet files carry theirs)"
                        .into(),
                ));
            }
            let parquet = ParquetSource::from_files(inputs.files()).with_budget(options.budget);
            progress.set_input_bytes_total(parquet.total_bytes());
            return parquet.into_source(progress);
        }
        let total: u64 = inputs
            .files()
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        progress.set_input_bytes_total(total);
        let records = Records::plan(inputs, options, progress)?;
        let mut schemas = records.schemas().collect::<Vec<_>>().into_iter();
        let (name, schema) = schemas.next().expect("at least one input");
        let mut other_schemas: Vec<(String, SchemaRef)> = Vec::new();
        for (origin, s) in schemas {
            let seen = s.fields() == schema.fields()
                || other_schemas.iter().any(|(_, o)| o.fields() == s.fields());
            if !seen {
                other_schemas.push((origin, s));
            }
        }
        Ok(Self {
            name,
            schema,
            other_schemas,
            body: Body::Records(records),
        })
    }
}

/// How a load reads its inputs.
#[derive(Debug, Clone)]
pub struct InputOptions {
    /// The inputs' format (default: from their names).
    pub format: Option<InputFormat>,
    /// The schema of JSON lines or CSV inputs (default: inferred from a sample).
    pub schema: Option<SchemaRef>,
    /// Records sampled from each JSON lines or CSV input to infer its schema.
    pub infer_rows: usize,
    pub csv: CsvOptions,
    pub budget: BatchBudget,
}

impl Default for InputOptions {
    fn default() -> Self {
        Self {
            format: None,
            schema: None,
            infer_rows: 10_000,
            csv: CsvOptions::default(),
            budget: BatchBudget::default(),
        }
    }
}

/// A source's name and schemas (everything but the stream).
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub name: String,
    /// Schema of the first input.
    pub schema: SchemaRef,
    /// Every distinct input schema with where it came from, the first input's first.
    pub schemas: Vec<(String, SchemaRef)>,
    /// The schemas were inferred from text: the columns the table has are read as its types,
    /// so only new columns are planned from these.
    pub typed_by_table: bool,
}

impl SourceInfo {
    /// What schema evolution plans with for `input` against a table of Arrow schema `table`:
    /// inferred text schemas take the table's types for the columns it has.
    pub(crate) fn planned_against(&self, table: &ArrowSchema, input: &SchemaRef) -> SchemaRef {
        if self.typed_by_table {
            infer::bind(input, table, infer::Binding::Planning)
        } else {
            input.clone()
        }
    }
}

/// How big the batches handed downstream may get.
#[derive(Debug, Clone, Copy)]
pub struct BatchBudget {
    /// Upper bound on rows per batch.
    pub max_rows: usize,
    /// Target decoded bytes per batch; rows per batch shrink for wide rows.
    pub max_bytes: usize,
    /// Batches in flight between the reader thread and the writer.
    pub channel_batches: usize,
}

impl Default for BatchBudget {
    fn default() -> Self {
        Self {
            max_rows: 64 * 1024,
            max_bytes: 2 * 1024 * 1024,
            channel_batches: 2,
        }
    }
}

/// Runs `produce` on a blocking thread, handing its batches over through a small channel. The
/// stream fails if `produce` fails, panics or stops before it returns `Ok` (so a load never
/// commits a prefix of its input).
pub(crate) fn spawn_reader<F>(budget: BatchBudget, produce: F) -> BatchStream
where
    F: FnOnce(&BatchSender) -> Result<()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(budget.channel_batches.max(1));
    // Set only when every input was read to the end: a channel that closes without it means
    // the reader died, and the load must fail rather than commit a prefix of the input.
    let finished = Arc::new(AtomicBool::new(false));
    let finished_in_reader = finished.clone();
    tokio::task::spawn_blocking(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| produce(&tx)));
        let error = match outcome {
            Ok(Ok(())) => {
                finished_in_reader.store(true, Ordering::SeqCst);
                return;
            }
            Ok(Err(e)) => e,
            Err(panic) => FloeError::InputRead {
                path: PathBuf::from("<input>"),
                row_group: None,
                reason: format!("the reader failed unexpectedly: {}", panic_message(&panic)),
            },
        };
        let _ = tx.blocking_send(Err(error));
    });
    guarded_channel(rx, finished, || FloeError::InputRead {
        path: PathBuf::from("<input>"),
        row_group: None,
        reason: "the reader stopped before the end of the input".into(),
    })
    .boxed()
}

/// Where a reader thread sends its batches.
pub(crate) type BatchSender = tokio::sync::mpsc::Sender<Result<SourceBatch>>;

/// Sends one batch; false if the receiver is gone (the load stopped: the reader just returns).
pub(crate) fn send(tx: &BatchSender, batch: RecordBatch, origin: &Arc<str>) -> bool {
    let item = SourceBatch {
        batch,
        origin: origin.clone(),
    };
    tx.blocking_send(Ok(item)).is_ok()
}

/// The items of `rx` until its senders are gone. If they go before the producer set
/// `finished` (it died: a panic, a dropped thread), the stream ends with one `died()` error,
/// so a load fails instead of committing a prefix of its input.
pub fn guarded_channel<T, E>(
    mut rx: tokio::sync::mpsc::Receiver<std::result::Result<T, E>>,
    finished: Arc<AtomicBool>,
    died: impl Fn() -> E + Send + 'static,
) -> impl futures::Stream<Item = std::result::Result<T, E>> + Send + 'static
where
    T: Send + 'static,
    E: Send + 'static,
{
    let mut ended = false;
    futures::stream::poll_fn(move |cx| {
        if ended {
            return std::task::Poll::Ready(None);
        }
        match rx.poll_recv(cx) {
            std::task::Poll::Ready(None) => {
                ended = true;
                if finished.load(Ordering::SeqCst) {
                    std::task::Poll::Ready(None)
                } else {
                    std::task::Poll::Ready(Some(Err(died())))
                }
            }
            other => other,
        }
    })
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

pub(crate) fn read_error(
    path: &Path,
    row_group: Option<usize>,
    reason: impl ToString,
) -> FloeError {
    FloeError::InputRead {
        path: path.to_path_buf(),
        row_group,
        reason: reason.to_string(),
    }
}

/// An Arrow schema from JSON: an Iceberg schema (`{"type": "struct", "fields": [...]}`, as
/// table metadata holds it) or an Arrow schema as arrow-rs serialises one
/// (`{"fields": [{"name": ..., "data_type": ..., "nullable": ...}], "metadata": {}}`): the
/// `--schema` of text inputs.
pub fn schema_from_json(text: &str, origin: &str) -> Result<SchemaRef> {
    let iceberg = match serde_json::from_str::<iceberg::spec::Schema>(text) {
        Ok(schema) => schema,
        Err(iceberg_error) => {
            return serde_json::from_str::<ArrowSchema>(text)
                .map(Arc::new)
                .map_err(|arrow_error| {
                    FloeError::InvalidOption(format!(
                        "{origin}: neither an Iceberg schema ({iceberg_error}) nor an Arrow schema ({arrow_error}) in JSON"
                    ))
                });
        }
    };
    iceberg::arrow::schema_to_arrow_schema(&iceberg)
        .map(Arc::new)
        .map_err(|e| FloeError::InvalidOption(format!("{origin}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, Field};

    #[test]
    fn schema_files_hold_an_iceberg_or_an_arrow_schema() {
        let iceberg = r#"{"type": "struct", "schema-id": 0, "fields": [
            {"id": 1, "name": "id", "required": true, "type": "long"},
            {"id": 2, "name": "at", "required": false, "type": "timestamptz"}]}"#;
        let from_iceberg = schema_from_json(iceberg, "s.json").unwrap();
        assert_eq!(from_iceberg.field(0).data_type(), &DataType::Int64);
        assert!(!from_iceberg.field(0).is_nullable());
        let arrow = ArrowSchema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("price", DataType::Decimal128(12, 2), true),
        ]);
        let text = serde_json::to_string(&arrow).unwrap();
        assert_eq!(*schema_from_json(&text, "s.json").unwrap(), arrow);
        let e = schema_from_json(r#"{"columns": []}"#, "s.json").unwrap_err();
        assert!(e.to_string().contains("neither an Iceberg schema"), "{e}");
    }
}
