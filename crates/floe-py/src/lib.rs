//! floe-py: the native core of the `floe` Python package, a thin face over the floe library
//! like the CLI is. It parses Python arguments into the library's own types
//! ([`floe::ops::LoadKind`], [`floe::LoadOptions`]), turns a Python source into a
//! [`floe::Source`] (Parquet paths, or any object exporting the Arrow C stream interface,
//! read batch by batch), runs [`floe::ops::run`] with the GIL released, and maps
//! [`floe::FloeError`] onto a small exception hierarchy.
//!
//! While a load runs, the calling thread waits without the GIL and wakes every 100 ms to
//! report progress (the `progress` callable) and to check for Ctrl-C: a KeyboardInterrupt
//! cancels the load, which deletes its files, and is raised once the load has stopped.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_array::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
use arrow_schema::{ArrowError, SchemaRef};
use floe::ops::merge_spec::{DuplicateKeys, MergeMode, MergeSpec, MergeStrategy, OnDuplicateKeys};
use floe::ops::{LoadKind, LoadMode, SchemaEvolution};
use floe::source::{CsvOptions, InputFormat, InputOptions};
use floe::{
    BatchBudget, Catalog, CatalogConfig, FloeError, LoadOptions, Progress, Source, WriteOptions,
};
use futures::StreamExt;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict, PyList, PyString};

mod distributed;

create_exception!(
    _floe,
    FloeBaseError,
    PyException,
    "Every error floe raises."
);
create_exception!(
    _floe,
    InvalidOptionError,
    FloeBaseError,
    "An argument floe cannot honour (unknown mode, missing key column, bad table name)."
);
create_exception!(
    _floe,
    BadInputError,
    FloeBaseError,
    "An input that cannot be loaded: unreadable, damaged, a value the table cannot hold, a null key or a null in a required column. The message names the file (row group) and column."
);
create_exception!(
    _floe,
    SchemaMismatchError,
    FloeBaseError,
    "The input's columns or types do not fit the table (and schema evolution may not change it)."
);
create_exception!(
    _floe,
    CatalogError,
    FloeBaseError,
    "The catalog could not be configured, opened or reached."
);
create_exception!(
    _floe,
    CatalogRefusedError,
    CatalogError,
    "The catalog refused the request (or its type is not supported): retrying will not help."
);
create_exception!(
    _floe,
    ConflictError,
    FloeBaseError,
    "Another writer changed the table during the load; nothing was committed. Rerunning with the same load_id is safe."
);
create_exception!(
    _floe,
    CommitStateUnknownError,
    FloeBaseError,
    "The commit may or may not have landed; the load's files were kept. Rerun with the same load_id to settle it."
);
create_exception!(
    _floe,
    UnsupportedTableError,
    FloeBaseError,
    "The table uses a feature floe does not read or write yet (format v3, equality deletes, merge-on-read in a format v1 table); nothing was written."
);
create_exception!(
    _floe,
    NoSuchTableError,
    FloeBaseError,
    "The table does not exist in the catalog."
);
create_exception!(
    _floe,
    StagedFilesError,
    FloeBaseError,
    "A distributed load's worker handed back files its plan does not allow; nothing was committed."
);
create_exception!(
    _floe,
    CancelledError,
    FloeBaseError,
    "The load was cancelled before its commit; its files were deleted."
);
create_exception!(
    _floe,
    StorageError,
    FloeBaseError,
    "Writing or reading table files failed."
);

/// The Python exception for a library error (the message is the library's, which names the
/// table, file and column).
fn to_py_err(e: FloeError) -> PyErr {
    let message = e.to_string();
    match e {
        FloeError::InvalidTableName { .. } | FloeError::InvalidOption(_) => {
            InvalidOptionError::new_err(message)
        }
        FloeError::NoInput { .. }
        | FloeError::InputRead { .. }
        | FloeError::InputLine { .. }
        | FloeError::UnsupportedType { .. }
        | FloeError::ValueOutOfRange { .. }
        | FloeError::NullKey { .. }
        | FloeError::DuplicateKey { .. }
        | FloeError::InputChanged { .. }
        | FloeError::NullInRequiredColumn { .. } => BadInputError::new_err(message),
        FloeError::UnsupportedTable { .. } => UnsupportedTableError::new_err(message),
        FloeError::NoSuchTable { .. } => NoSuchTableError::new_err(message),
        FloeError::TaskFailed { .. } => FloeBaseError::new_err(message),
        FloeError::SchemaMismatch { .. } => SchemaMismatchError::new_err(message),
        FloeError::CatalogRefused { .. } | FloeError::CatalogNotSupported { .. } => {
            CatalogRefusedError::new_err(message)
        }
        FloeError::Catalog { .. } => CatalogError::new_err(message),
        FloeError::Conflict { .. } | FloeError::RetriesExhausted { .. } => {
            ConflictError::new_err(message)
        }
        FloeError::CommitStateUnknown { .. } => CommitStateUnknownError::new_err(message),
        FloeError::Cancelled => CancelledError::new_err(message),
        FloeError::StagedFiles { .. } => StagedFilesError::new_err(message),
        FloeError::Iceberg { .. }
        | FloeError::Arrow { .. }
        | FloeError::Io { .. }
        | FloeError::DataFileWrite { .. } => StorageError::new_err(message),
    }
}

/// Where the rows come from.
enum PySource {
    Paths(Vec<String>),
    Stream(ArrowArrayStreamReader),
}

impl PySource {
    fn from_object(source: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(path) = source.extract::<PathBuf>() {
            return Ok(Self::Paths(vec![path.to_string_lossy().into_owned()]));
        }
        if let Ok(list) = source.cast::<PyList>() {
            let paths = list
                .iter()
                .map(|p| {
                    p.extract::<PathBuf>()
                        .map(|p| p.to_string_lossy().into_owned())
                })
                .collect::<PyResult<Vec<_>>>()
                .map_err(|_| PyTypeError::new_err("a list source must hold paths"))?;
            return Ok(Self::Paths(paths));
        }
        if source.hasattr("__arrow_c_stream__")? {
            return Ok(Self::Stream(c_stream_reader(source)?));
        }
        Err(PyTypeError::new_err(
            "source must be a path, a list of paths, or an object with __arrow_c_stream__ (pyarrow Table or RecordBatchReader, polars DataFrame, DuckDB relation, ...)",
        ))
    }

    /// The library source; a stream is read on a thread of its own, batch by batch.
    fn into_source(self, read: &InputOptions, progress: &Arc<Progress>) -> floe::Result<Source> {
        match self {
            Self::Paths(paths) => Source::open(&paths, read, progress.clone()),
            Self::Stream(reader) => Ok(stream_source(reader, progress.clone())),
        }
    }
}

/// The Arrow C stream of an object with `__arrow_c_stream__`, as a reader of its batches.
fn c_stream_reader(source: &Bound<'_, PyAny>) -> PyResult<ArrowArrayStreamReader> {
    let capsule = source.call_method0("__arrow_c_stream__")?;
    let capsule = capsule
        .cast::<PyCapsule>()
        .map_err(|_| PyTypeError::new_err("__arrow_c_stream__ did not return a PyCapsule"))?;
    let pointer = capsule.pointer_checked(Some(c"arrow_array_stream"))?;
    // SAFETY: the capsule holds an ArrowArrayStream (its name says so); from_raw moves the
    // stream out and leaves a released one behind, as the C stream protocol expects of a
    // consumer.
    unsafe { ArrowArrayStreamReader::from_raw(pointer.as_ptr() as *mut FFI_ArrowArrayStream) }
        .map_err(|e| BadInputError::new_err(format!("cannot read the Arrow stream: {e}")))
}

/// The schema of text inputs: a pyarrow schema (anything with `__arrow_c_schema__`), or an
/// Iceberg schema as a dict or a JSON string.
fn schema_of(schema: &Bound<'_, PyAny>) -> PyResult<arrow_schema::SchemaRef> {
    if schema.hasattr("__arrow_c_schema__")? {
        let capsule = schema.call_method0("__arrow_c_schema__")?;
        let capsule = capsule
            .cast::<PyCapsule>()
            .map_err(|_| PyTypeError::new_err("__arrow_c_schema__ did not return a PyCapsule"))?;
        let pointer = capsule.pointer_checked(Some(c"arrow_schema"))?;
        // SAFETY: the capsule holds an ArrowSchema (its name says so) that stays alive while
        // the capsule does; it is only read here, and the capsule still releases it.
        let ffi = unsafe { &*(pointer.as_ptr() as *const arrow_schema::ffi::FFI_ArrowSchema) };
        return arrow_schema::Schema::try_from(ffi)
            .map(Arc::new)
            .map_err(|e| PyTypeError::new_err(format!("schema: {e}")));
    }
    let text = if let Ok(text) = schema.extract::<String>() {
        text
    } else {
        let json = schema.py().import("json")?;
        json.call_method1("dumps", (schema,))?.extract::<String>()?
    };
    floe::source::schema_from_json(&text, "schema").map_err(to_py_err)
}

/// The CSV dialect from `csv={"delimiter": ",", "header": True, "quote": '"', "escape": None,
/// "nulls": ["NA"]}` (every key optional).
fn csv_options(csv: Option<&Bound<'_, PyDict>>) -> PyResult<CsvOptions> {
    let mut options = CsvOptions::default();
    let Some(csv) = csv else {
        return Ok(options);
    };
    let char_of = |value: Bound<'_, PyAny>, key: &str| -> PyResult<u8> {
        let text: String = value.extract()?;
        match text.as_bytes() {
            [c] if c.is_ascii() => Ok(*c),
            _ => Err(InvalidOptionError::new_err(format!(
                "csv {key}: one ASCII character, got {text:?}"
            ))),
        }
    };
    for (key, value) in csv.iter() {
        let key: String = key.extract()?;
        match key.as_str() {
            "delimiter" => options.delimiter = Some(char_of(value, &key)?),
            "header" => options.header = value.extract()?,
            "quote" => options.quote = char_of(value, &key)?,
            "escape" if value.is_none() => options.escape = None,
            "escape" => options.escape = Some(char_of(value, &key)?),
            "nulls" => options.nulls = value.extract()?,
            _ => {
                return Err(InvalidOptionError::new_err(format!(
                    "csv: unknown option {key:?} (delimiter, header, quote, escape, nulls)"
                )));
            }
        }
    }
    Ok(options)
}

/// Batches in flight between the stream's reader thread and the load.
const STREAM_BATCHES: usize = 2;

/// Hands a batch to the load; false once the load stopped listening.
type Deliver<'a> = &'a dyn Fn(Result<RecordBatch, ArrowError>) -> bool;

/// A source whose batches `pull` produces on a thread of its own (pulling may call back into
/// Python, which takes the GIL). `pull` answers whether it reached the end of its input; a
/// stream whose reader stops short (it failed, or the thread died) fails the load instead of
/// committing a prefix.
fn threaded_source<F>(schema: SchemaRef, name: &str, pull: F) -> Source
where
    F: FnOnce(Deliver<'_>) -> bool + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch, ArrowError>>(STREAM_BATCHES);
    let finished = Arc::new(AtomicBool::new(false));
    let finished_in_reader = finished.clone();
    std::thread::spawn(move || {
        if pull(&|batch| tx.blocking_send(batch).is_ok()) {
            finished_in_reader.store(true, Ordering::SeqCst);
        }
    });
    let stream = floe::source::guarded_channel(rx, finished, || {
        ArrowError::ExternalError("the stream's reader stopped before the end of the stream".into())
    });
    Source::from_stream(schema, name, stream.boxed())
}

/// Sends every batch of `reader`; false if it failed or the load stopped listening.
fn forward(reader: ArrowArrayStreamReader, send: Deliver<'_>, progress: Option<&Progress>) -> bool {
    for batch in reader {
        if let (Ok(b), Some(p)) = (&batch, progress) {
            p.add_input_rows(b.num_rows() as u64);
        }
        let failed = batch.is_err();
        if !send(batch) || failed {
            return false;
        }
    }
    true
}

/// A source over an Arrow C stream, read batch by batch.
fn stream_source(reader: ArrowArrayStreamReader, progress: Arc<Progress>) -> Source {
    use arrow_array::RecordBatchReader;
    let schema = reader.schema();
    threaded_source(schema, "<arrow stream>", move |send| {
        forward(reader, send, Some(&progress))
    })
}

/// Keys given to a merge (delete keys, only keys): read by their names, not counted as input.
fn keys_source(keys: PySource) -> floe::Result<Source> {
    keys.into_source(&InputOptions::default(), &Arc::new(Progress::default()))
}

/// A key argument: `"id"`, `"tenant,id"` or `["tenant", "id"]`.
fn keys_of(key: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let Some(key) = key else {
        return Ok(Vec::new());
    };
    if key.cast::<PyString>().is_ok() {
        let text: String = key.extract()?;
        return Ok(text
            .split(',')
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect());
    }
    key.extract::<Vec<String>>()
        .map_err(|_| PyTypeError::new_err("key must be a column name or a list of them"))
}

/// A size argument: bytes as an int, or text such as `"256MiB"`.
fn size_of(value: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<u64>> {
    let Some(value) = value else { return Ok(None) };
    if let Ok(n) = value.extract::<u64>() {
        return Ok(Some(n));
    }
    let text: String = value.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be bytes (int) or a size like '256MiB'"
        ))
    })?;
    floe::parse_size(&text)
        .map(Some)
        .map_err(|e| InvalidOptionError::new_err(format!("{what}: {e}")))
}

/// The catalog: `None` (pyiceberg's configuration, else the embedded SQLite catalog), a name
/// from `.pyiceberg.yaml` / `PYICEBERG_CATALOG__*`, or a dict of pyiceberg-style properties.
fn catalog_config(
    catalog: Option<&Bound<'_, PyAny>>,
    warehouse: Option<PathBuf>,
) -> PyResult<CatalogConfig> {
    match catalog {
        Some(c) if c.cast::<PyDict>().is_ok() => {
            let props: std::collections::BTreeMap<String, String> = c
                .extract::<std::collections::HashMap<String, Bound<'_, PyAny>>>()?
                .into_iter()
                .map(|(k, v)| Ok((k, v.str()?.to_string())))
                .collect::<PyResult<_>>()?;
            let name = props
                .get("name")
                .cloned()
                .unwrap_or_else(|| "default".into());
            Ok(CatalogConfig { name, props })
        }
        Some(c) => {
            let name: String = c.extract().map_err(|_| {
                PyTypeError::new_err("catalog must be None, a catalog name or a dict of properties")
            })?;
            CatalogConfig::resolve(Some(&name), warehouse.as_deref()).map_err(to_py_err)
        }
        None => CatalogConfig::resolve(None, warehouse.as_deref()).map_err(to_py_err),
    }
}

/// The native `load`; `floe.load` (Python) documents it and wraps the summary.
#[pyfunction]
#[pyo3(signature = (
    table, source, *, mode="append", key=None, strategy="upsert", merge_mode="copy-on-write",
    hard_delete_column=None, dedup_sort=None, on_duplicate_keys="last", replace_partitions=false,
    partition_by=None, schema_evolution="add-columns", load_id=None, catalog=None,
    warehouse=None, memory_limit=None, target_file_size=None, progress=None, location=None,
    table_properties=None, format=None, schema=None, infer_rows=10_000, csv=None,
    delete_keys=None, only_keys=None
))]
#[allow(clippy::too_many_arguments)]
fn load(
    py: Python<'_>,
    table: &str,
    source: &Bound<'_, PyAny>,
    mode: &str,
    key: Option<&Bound<'_, PyAny>>,
    strategy: &str,
    merge_mode: &str,
    hard_delete_column: Option<String>,
    dedup_sort: Option<String>,
    on_duplicate_keys: &str,
    replace_partitions: bool,
    partition_by: Option<String>,
    schema_evolution: &str,
    load_id: Option<String>,
    catalog: Option<&Bound<'_, PyAny>>,
    warehouse: Option<PathBuf>,
    memory_limit: Option<&Bound<'_, PyAny>>,
    target_file_size: Option<&Bound<'_, PyAny>>,
    progress: Option<Py<PyAny>>,
    location: Option<String>,
    table_properties: Option<std::collections::HashMap<String, String>>,
    format: Option<&str>,
    schema: Option<&Bound<'_, PyAny>>,
    infer_rows: usize,
    csv: Option<&Bound<'_, PyDict>>,
    delete_keys: Option<&Bound<'_, PyAny>>,
    only_keys: Option<&Bound<'_, PyAny>>,
) -> PyResult<String> {
    let ident = floe::parse_table_ident(table).map_err(to_py_err)?;
    let merge = MergeSpec {
        keys: keys_of(key)?,
        strategy: strategy.parse::<MergeStrategy>().map_err(to_py_err)?,
        mode: merge_mode.parse::<MergeMode>().map_err(to_py_err)?,
        hard_delete_column,
        duplicates: DuplicateKeys::from_settings(
            dedup_sort.as_deref(),
            on_duplicate_keys
                .parse::<OnDuplicateKeys>()
                .map_err(to_py_err)?,
        )
        .map_err(to_py_err)?,
        memory_limit: size_of(memory_limit, "memory_limit")?
            .map_or(floe::ops::merge::DEFAULT_MEMORY_LIMIT, |n| n as usize),
    };
    let mode = mode.parse::<LoadMode>().map_err(to_py_err)?;
    let kind = LoadKind::from_mode(mode, replace_partitions, merge).map_err(to_py_err)?;
    let config = catalog_config(catalog, warehouse)?;
    let shared = Arc::new(Progress::default());
    let mut options = LoadOptions::default()
        .with_progress(shared.clone())
        .with_schema_evolution(
            schema_evolution
                .parse::<SchemaEvolution>()
                .map_err(to_py_err)?,
        )
        .with_write_options(WriteOptions {
            target_file_size: size_of(target_file_size, "target_file_size")?,
            ..WriteOptions::default()
        });
    if let Some(id) = load_id {
        options = options.with_load_id(id);
    }
    if let Some(spec) = partition_by {
        options = options.with_partition_by(spec);
    }
    if let Some(location) = location {
        options = options.with_table_location(location);
    }
    if let Some(properties) = table_properties {
        options = options.with_table_properties(properties);
    }
    let source = PySource::from_object(source)?;
    let delete_keys = delete_keys.map(PySource::from_object).transpose()?;
    let only_keys = only_keys.map(PySource::from_object).transpose()?;
    let read = InputOptions {
        format: format_of(format)?,
        schema: schema.map(schema_of).transpose()?,
        infer_rows: infer_rows.max(1),
        csv: csv_options(csv)?,
        budget: BatchBudget::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| StorageError::new_err(format!("cannot start the async runtime: {e}")))?;
    let task_progress = shared.clone();
    let handle = runtime.spawn(async move {
        let catalog = Catalog::open(config).await?;
        let input = floe::ops::LoadInput {
            rows: source.into_source(&read, &task_progress)?,
            delete_keys: delete_keys.map(keys_source).transpose()?,
            only_keys: only_keys.map(keys_source).transpose()?,
        };
        let summary = floe::ops::run(&catalog, ident, kind, options, input).await?;
        serde_json::to_string(&summary).map_err(|e| FloeError::InvalidOption(e.to_string()))
    });
    let outcome = wait(py, &runtime, handle, &shared, progress.as_ref());
    // Dropping the runtime waits for its tasks: never with the GIL held.
    py.detach(move || drop(runtime));
    outcome
}

/// The native `expire`; `floe.expire` (Python) documents it. Returns the summary as JSON.
#[pyfunction]
#[pyo3(signature = (table, *, older_than="5d", retain_last=1, dry_run=false, catalog=None, warehouse=None))]
fn expire(
    py: Python<'_>,
    table: &str,
    older_than: &str,
    retain_last: usize,
    dry_run: bool,
    catalog: Option<&Bound<'_, PyAny>>,
    warehouse: Option<PathBuf>,
) -> PyResult<String> {
    let older_than = floe::ops::expire::older_than_now(older_than).map_err(to_py_err)?;
    on_table(
        py,
        table,
        catalog,
        warehouse,
        move |catalog, ident, _| async move {
            floe::ops::expire::ExpireBuilder::new(&catalog, ident)
                .older_than_ms(older_than)
                .retain_last(retain_last)
                .dry_run(dry_run)
                .execute()
                .await
        },
    )
}

/// The native `compact`; `floe.compact` (Python) documents it. Returns the summary as JSON.
#[pyfunction]
#[pyo3(signature = (table, *, min_input_files=5, only=None, target_file_size=None, load_id=None, catalog=None, warehouse=None))]
#[allow(clippy::too_many_arguments)]
fn compact(
    py: Python<'_>,
    table: &str,
    min_input_files: usize,
    only: Option<&str>,
    target_file_size: Option<&Bound<'_, PyAny>>,
    load_id: Option<String>,
    catalog: Option<&Bound<'_, PyAny>>,
    warehouse: Option<PathBuf>,
) -> PyResult<String> {
    let mut options = LoadOptions::default().with_write_options(WriteOptions {
        target_file_size: size_of(target_file_size, "target_file_size")?,
        ..WriteOptions::default()
    });
    if let Some(id) = load_id {
        options = options.with_load_id(id);
    }
    let only = only
        .map(str::parse::<floe::ops::compact::PartitionMatch>)
        .transpose()
        .map_err(to_py_err)?;
    on_table(
        py,
        table,
        catalog,
        warehouse,
        move |catalog, ident, progress| async move {
            let mut builder = floe::ops::compact::CompactBuilder::new(&catalog, ident)
                .with_options(options.with_progress(progress))
                .min_input_files(min_input_files);
            if let Some(only) = only {
                builder = builder.only_partitions(only);
            }
            builder.execute().await
        },
    )
}

/// The native `remove_orphans`; `floe.remove_orphans` (Python) documents it.
#[pyfunction]
#[pyo3(signature = (table, *, older_than="3d", dry_run=false, catalog=None, warehouse=None))]
fn remove_orphans(
    py: Python<'_>,
    table: &str,
    older_than: &str,
    dry_run: bool,
    catalog: Option<&Bound<'_, PyAny>>,
    warehouse: Option<PathBuf>,
) -> PyResult<String> {
    let older_than = floe::ops::expire::older_than_now(older_than).map_err(to_py_err)?;
    on_table(
        py,
        table,
        catalog,
        warehouse,
        move |catalog, ident, _| async move {
            floe::ops::orphans::RemoveOrphansBuilder::new(&catalog, ident)
                .older_than_ms(older_than)
                .dry_run(dry_run)
                .execute()
                .await
        },
    )
}

/// The native `inspect`; `floe.inspect` (Python) documents it. Returns the report as JSON.
#[pyfunction]
#[pyo3(signature = (table, *, catalog=None, warehouse=None))]
fn inspect(
    py: Python<'_>,
    table: &str,
    catalog: Option<&Bound<'_, PyAny>>,
    warehouse: Option<PathBuf>,
) -> PyResult<String> {
    on_table(
        py,
        table,
        catalog,
        warehouse,
        |catalog, ident, _| async move { floe::ops::inspect::inspect(&catalog, &ident).await },
    )
}

/// The native `register_table`; `floe.register_table` (Python) documents it. Returns the
/// registered table's name and metadata location as JSON.
#[pyfunction]
#[pyo3(signature = (table, metadata_location, *, catalog=None, warehouse=None))]
fn register_table(
    py: Python<'_>,
    table: &str,
    metadata_location: String,
    catalog: Option<&Bound<'_, PyAny>>,
    warehouse: Option<PathBuf>,
) -> PyResult<String> {
    on_table(
        py,
        table,
        catalog,
        warehouse,
        move |catalog, ident, _| async move {
            let state = catalog.register_table(&ident, &metadata_location).await?;
            Ok(serde_json::json!({
                "table": state.name(),
                "metadata_location": state.metadata_location,
            }))
        },
    )
}

/// The native `match_rows`; `floe.match_rows` (Python) documents it. Returns the summary as
/// JSON.
#[pyfunction]
#[pyo3(signature = (table, source, *, key, output, columns=None, format=None, memory_limit=None, catalog=None, warehouse=None))]
#[allow(clippy::too_many_arguments)]
fn match_rows(
    py: Python<'_>,
    table: &str,
    source: &Bound<'_, PyAny>,
    key: &Bound<'_, PyAny>,
    output: PathBuf,
    columns: Option<Vec<String>>,
    format: Option<&str>,
    memory_limit: Option<&Bound<'_, PyAny>>,
    catalog: Option<&Bound<'_, PyAny>>,
    warehouse: Option<PathBuf>,
) -> PyResult<String> {
    let keys = keys_of(Some(key))?;
    let memory_limit = size_of(memory_limit, "memory_limit")?
        .map_or(floe::ops::merge::DEFAULT_MEMORY_LIMIT, |n| n as usize);
    let source = PySource::from_object(source)?;
    let read = InputOptions {
        format: format_of(format)?,
        ..InputOptions::default()
    };
    on_table(
        py,
        table,
        catalog,
        warehouse,
        move |catalog, ident, progress| async move {
            let source = source.into_source(&read, &progress)?;
            let mut builder = floe::ops::MatchBuilder::new(&catalog, ident, keys)
                .with_memory_limit(memory_limit)
                .with_progress(progress);
            if let Some(columns) = columns {
                builder = builder.with_columns(columns);
            }
            builder.write_parquet(source, &output).await
        },
    )
}

/// An input format by name (`parquet`, `jsonl`, `csv`, `ipc`).
fn format_of(format: Option<&str>) -> PyResult<Option<InputFormat>> {
    format
        .map(str::parse::<InputFormat>)
        .transpose()
        .map_err(to_py_err)
}

/// Runs a call on `table` of the catalog the arguments name; answers its result as JSON. The
/// call gets the switch Ctrl-C turns off ([`Progress::cancel`]).
fn on_table<T, Fut>(
    py: Python<'_>,
    table: &str,
    catalog: Option<&Bound<'_, PyAny>>,
    warehouse: Option<PathBuf>,
    call: impl FnOnce(Catalog, floe::TableIdent, Arc<Progress>) -> Fut + Send + 'static,
) -> PyResult<String>
where
    T: serde::Serialize,
    Fut: std::future::Future<Output = floe::Result<T>> + Send + 'static,
{
    let ident = floe::parse_table_ident(table).map_err(to_py_err)?;
    let config = catalog_config(catalog, warehouse)?;
    let progress = Arc::new(Progress::default());
    let shared = progress.clone();
    run_json(py, progress, async move {
        let catalog = Catalog::open(config).await?;
        let out = call(catalog, ident, shared).await?;
        serde_json::to_string(&out).map_err(|e| FloeError::InvalidOption(e.to_string()))
    })
}

/// Runs a library call that answers JSON on its own runtime, without the GIL; Ctrl-C cancels
/// `progress` and waits for the call to stop.
fn run_json(
    py: Python<'_>,
    progress: Arc<Progress>,
    call: impl std::future::Future<Output = floe::Result<String>> + Send + 'static,
) -> PyResult<String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| StorageError::new_err(format!("cannot start the async runtime: {e}")))?;
    let handle = runtime.spawn(call);
    let outcome = wait(py, &runtime, handle, &progress, None);
    py.detach(move || drop(runtime));
    outcome
}

/// Waits for the load without the GIL, waking to report progress and to catch Ctrl-C.
fn wait(
    py: Python<'_>,
    runtime: &tokio::runtime::Runtime,
    mut handle: tokio::task::JoinHandle<floe::Result<String>>,
    progress: &Arc<Progress>,
    callback: Option<&Py<PyAny>>,
) -> PyResult<String> {
    let mut interrupted: Option<PyErr> = None;
    loop {
        let done = py.detach(|| {
            runtime.block_on(async {
                tokio::time::timeout(Duration::from_millis(100), &mut handle)
                    .await
                    .ok()
            })
        });
        if let Some(joined) = done {
            if let Some(e) = interrupted {
                return Err(e);
            }
            return match joined {
                Ok(result) => result.map_err(to_py_err),
                Err(e) => Err(StorageError::new_err(format!(
                    "the load failed unexpectedly: {e}"
                ))),
            };
        }
        if interrupted.is_some() {
            continue;
        }
        if let Err(e) = py.check_signals() {
            // Ctrl-C (or another signal handler raising): stop the load, then raise.
            progress.cancel();
            interrupted = Some(e);
            continue;
        }
        if let Some(callback) = callback
            && let Err(e) = report(py, callback, progress)
        {
            progress.cancel();
            interrupted = Some(e);
        }
    }
}

fn report(py: Python<'_>, callback: &Py<PyAny>, progress: &Progress) -> PyResult<()> {
    let p = progress.snapshot();
    let info = PyDict::new(py);
    info.set_item("input_rows", p.input_rows)?;
    info.set_item("input_bytes", p.input_bytes)?;
    info.set_item("input_bytes_total", p.input_bytes_total)?;
    info.set_item("input_files", p.input_files)?;
    info.set_item("files_written", p.files_written)?;
    info.set_item("stage", p.stage.describe())?;
    info.set_item("stage_done", p.stage_done)?;
    info.set_item("stage_total", p.stage_total)?;
    callback.call1(py, (info,))?;
    Ok(())
}

#[pymodule]
fn _floe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(expire, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(match_rows, m)?)?;
    m.add_function(wrap_pyfunction!(register_table, m)?)?;
    m.add_function(wrap_pyfunction!(compact, m)?)?;
    m.add_function(wrap_pyfunction!(remove_orphans, m)?)?;
    m.add("NoSuchTableError", py.get_type::<NoSuchTableError>())?;
    m.add("FloeError", py.get_type::<FloeBaseError>())?;
    m.add("InvalidOptionError", py.get_type::<InvalidOptionError>())?;
    m.add("BadInputError", py.get_type::<BadInputError>())?;
    m.add("SchemaMismatchError", py.get_type::<SchemaMismatchError>())?;
    m.add("CatalogError", py.get_type::<CatalogError>())?;
    m.add("CatalogRefusedError", py.get_type::<CatalogRefusedError>())?;
    m.add("ConflictError", py.get_type::<ConflictError>())?;
    m.add(
        "CommitStateUnknownError",
        py.get_type::<CommitStateUnknownError>(),
    )?;
    m.add("CancelledError", py.get_type::<CancelledError>())?;
    m.add("StagedFilesError", py.get_type::<StagedFilesError>())?;
    distributed::register(m)?;
    m.add(
        "UnsupportedTableError",
        py.get_type::<UnsupportedTableError>(),
    )?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    Ok(())
}
