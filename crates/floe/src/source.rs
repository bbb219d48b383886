//! Sources: turn files (or any Arrow stream) into a bounded stream of record batches.
//!
//! Parquet inputs are read row group by row group on a blocking thread, with a batch size derived
//! from a byte budget, and handed over through a channel of a few batches. Memory therefore
//! depends on the batch budget, never on file or dataset size, and decoding overlaps with the
//! conform/encode work downstream.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_array::RecordBatch;
use arrow_schema::{Schema as ArrowSchema, SchemaRef};
use futures::StreamExt;
use futures::stream::BoxStream;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};

use crate::error::{FloeError, Result};
use crate::progress::Progress;

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
            Body::Stream(_) => None,
        }
    }

    /// The batch budget of a Parquet source (the default for other sources).
    pub fn batch_budget(&self) -> BatchBudget {
        match &self.body {
            Body::Parquet { budget, .. } => *budget,
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
            Body::Stream(_) => false,
        }
    }

    /// The batches; for Parquet files this starts the reader thread.
    pub fn into_stream(self) -> BatchStream {
        match self.body {
            Body::Stream(stream) => stream,
            Body::Parquet {
                files,
                budget,
                progress,
                columns,
            } => read_files(files, budget, progress, columns),
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

/// Parquet files to load, in order.
#[derive(Debug, Clone)]
pub struct ParquetSource {
    files: Vec<PathBuf>,
    budget: BatchBudget,
}

impl ParquetSource {
    /// Expands files, directories (every `*.parquet` inside, sorted) and glob patterns.
    pub fn from_inputs(inputs: &[impl AsRef<str>]) -> Result<Self> {
        let mut files = Vec::new();
        for input in inputs {
            let input = input.as_ref();
            let path = Path::new(input);
            if path.is_dir() {
                let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| FloeError::NoInput {
                        pattern: input.to_string(),
                        reason: e.to_string(),
                    })?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "parquet"))
                    .collect();
                if found.is_empty() {
                    return Err(FloeError::NoInput {
                        pattern: input.to_string(),
                        reason: "directory holds no *.parquet files".into(),
                    });
                }
                found.sort();
                files.extend(found);
            } else if path.is_file() {
                files.push(path.to_path_buf());
            } else if input.contains(['*', '?', '[']) {
                let mut found: Vec<PathBuf> = glob::glob(input)
                    .map_err(|e| FloeError::NoInput {
                        pattern: input.to_string(),
                        reason: e.to_string(),
                    })?
                    .filter_map(|p| p.ok())
                    .filter(|p| p.is_file())
                    .collect();
                if found.is_empty() {
                    return Err(FloeError::NoInput {
                        pattern: input.to_string(),
                        reason: "the pattern matches no file".into(),
                    });
                }
                found.sort();
                files.extend(found);
            } else {
                return Err(FloeError::NoInput {
                    pattern: input.to_string(),
                    reason: "no such file or directory".into(),
                });
            }
        }
        if files.is_empty() {
            return Err(FloeError::NoInput {
                pattern: String::new(),
                reason: "no input files given".into(),
            });
        }
        Ok(Self {
            files,
            budget: BatchBudget::default(),
        })
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

/// Reads `files` in order on a blocking thread, handing batches over through a small channel.
fn read_files(
    files: Vec<PathBuf>,
    budget: BatchBudget,
    progress: Arc<Progress>,
    columns: Option<Vec<String>>,
) -> BatchStream {
    let (tx, rx) = tokio::sync::mpsc::channel(budget.channel_batches.max(1));
    // Set only when every file was read to the end: a channel that closes without it means
    // the reader died, and the load must fail rather than commit a prefix of the input.
    let finished = Arc::new(AtomicBool::new(false));
    let finished_in_reader = finished.clone();
    tokio::task::spawn_blocking(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for path in &files {
                read_file(path, budget, columns.as_deref(), &tx, &progress)?;
                progress.add_input_file();
            }
            Ok(())
        }));
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

fn read_error(path: &Path, row_group: Option<usize>, reason: impl ToString) -> FloeError {
    FloeError::InputRead {
        path: path.to_path_buf(),
        row_group,
        reason: reason.to_string(),
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
fn read_file(
    path: &Path,
    budget: BatchBudget,
    columns: Option<&[String]>,
    tx: &tokio::sync::mpsc::Sender<Result<SourceBatch>>,
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
            let item = SourceBatch {
                batch,
                origin: origin.clone(),
            };
            if tx.blocking_send(Ok(item)).is_err() {
                return Ok(());
            }
        }
        progress.add_input_bytes(rg_meta.compressed_size().max(0) as u64);
    }
    Ok(())
}
