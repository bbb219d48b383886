//! The native side of distributed loads (`floe.ray`): the driver plans and commits, workers
//! write their share of the rows; [`floe::ops::distributed`] does the work, this module only
//! parses arguments and moves JSON and Arrow streams across.

use std::path::PathBuf;
use std::sync::Arc;

use arrow_schema::{ArrowError, SchemaRef};
use floe::ops::distributed::{self, LoadPlan, Planned, StagedFiles};
use floe::ops::{LoadMode, LoadOperation, SchemaEvolution};
use floe::{Catalog, FloeError, LoadOptions, Progress, Source, WriteOptions};
use pyo3::prelude::*;
use pyo3::types::PyIterator;

use super::{
    InvalidOptionError, c_stream_reader, catalog_config, forward, run_json, schema_of, size_of,
    threaded_source, to_py_err,
};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(plan_load, m)?)?;
    m.add_function(wrap_pyfunction!(write_staged, m)?)?;
    m.add_function(wrap_pyfunction!(commit_staged, m)?)?;
    m.add_function(wrap_pyfunction!(discard_staged, m)?)?;
    Ok(())
}

fn encode<T: serde::Serialize>(value: &T) -> floe::Result<String> {
    serde_json::to_string(value).map_err(|e| FloeError::InvalidOption(e.to_string()))
}

fn plan_of(text: &str) -> PyResult<LoadPlan> {
    LoadPlan::from_json(text).map_err(to_py_err)
}

/// Plans a distributed load of data with `schema` into `table`. Answers `(plan, None)`, the
/// plan's JSON for the workers, or `(None, summary)` when the load id already landed.
#[pyfunction]
#[pyo3(signature = (
    table, schema, *, mode="append", replace_partitions=false, partition_by=None,
    schema_evolution="add-columns", load_id=None, catalog=None, warehouse=None, location=None,
    table_properties=None
))]
#[allow(clippy::too_many_arguments)]
fn plan_load(
    py: Python<'_>,
    table: &str,
    schema: &Bound<'_, PyAny>,
    mode: &str,
    replace_partitions: bool,
    partition_by: Option<String>,
    schema_evolution: &str,
    load_id: Option<String>,
    catalog: Option<&Bound<'_, PyAny>>,
    warehouse: Option<PathBuf>,
    location: Option<String>,
    table_properties: Option<std::collections::HashMap<String, String>>,
) -> PyResult<(Option<String>, Option<String>)> {
    let ident = floe::parse_table_ident(table).map_err(to_py_err)?;
    let operation = match (
        mode.parse::<LoadMode>().map_err(to_py_err)?,
        replace_partitions,
    ) {
        (LoadMode::Append, false) => LoadOperation::Append,
        (LoadMode::Replace, false) => LoadOperation::Replace,
        (LoadMode::Replace, true) => LoadOperation::ReplacePartitions,
        (LoadMode::Append, true) => {
            return Err(InvalidOptionError::new_err(
                "replace_partitions goes with mode replace",
            ));
        }
        (LoadMode::Merge, _) => {
            return Err(InvalidOptionError::new_err(
                "a merge is not planned for workers: its input is staged and merged on the driver",
            ));
        }
    };
    let schema = schema_of(schema)?;
    let mut options = LoadOptions::default().with_schema_evolution(
        schema_evolution
            .parse::<SchemaEvolution>()
            .map_err(to_py_err)?,
    );
    options.load_id = load_id;
    options.partition_by = partition_by;
    options.table_location = location;
    options.table_properties = table_properties.unwrap_or_default();
    let config = catalog_config(catalog, warehouse)?;
    let answer = run_json(py, Default::default(), async move {
        let catalog = Catalog::open(config).await?;
        let planned = distributed::plan_load(&catalog, &ident, operation, &options, schema).await?;
        encode(&match planned {
            Planned::Ready(plan) => (Some(plan.to_json()?), None),
            Planned::Skipped(summary) => (None, Some(encode(&summary)?)),
        })
    })?;
    serde_json::from_str(&answer).map_err(|e| InvalidOptionError::new_err(e.to_string()))
}

/// A worker's share: writes every block of `blocks` (an iterable of objects with
/// `__arrow_c_stream__`) as the plan says; answers the StagedFiles JSON. `record(path)` is
/// called before each file is written.
#[pyfunction]
#[pyo3(signature = (plan, blocks, *, name="<blocks>", target_file_size=None, record=None))]
fn write_staged(
    py: Python<'_>,
    plan: &str,
    blocks: &Bound<'_, PyAny>,
    name: &str,
    target_file_size: Option<&Bound<'_, PyAny>>,
    record: Option<Py<PyAny>>,
) -> PyResult<String> {
    let plan = plan_of(plan)?;
    let schema = plan.arrow_schema().map_err(to_py_err)?;
    let source = blocks_source(blocks.try_iter()?.unbind(), schema, name);
    // One encoding thread per worker: the cluster is the parallelism.
    let progress = Arc::new(Progress::default());
    let options = LoadOptions::default()
        .with_progress(progress.clone())
        .with_write_options(WriteOptions {
            target_file_size: size_of(target_file_size, "target_file_size")?,
            writers: Some(1),
            ..WriteOptions::default()
        });
    let observer = record.map(|callback| {
        Arc::new(move |path: &str| {
            Python::attach(|py| {
                callback
                    .call1(py, (path,))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        }) as distributed::FileObserver
    });
    run_json(py, progress, async move {
        let staged = distributed::write_staged(&plan, &options, source, observer).await?;
        encode(&staged)
    })
}

/// Commits the workers' StagedFiles (JSON each) as one snapshot; answers the LoadSummary JSON.
#[pyfunction]
#[pyo3(signature = (plan, staged, *, catalog=None, warehouse=None))]
fn commit_staged(
    py: Python<'_>,
    plan: &str,
    staged: Vec<String>,
    catalog: Option<&Bound<'_, PyAny>>,
    warehouse: Option<PathBuf>,
) -> PyResult<String> {
    let plan = plan_of(plan)?;
    let staged = staged
        .iter()
        .map(|s| serde_json::from_str::<StagedFiles>(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| InvalidOptionError::new_err(format!("not a worker's result: {e}")))?;
    let config = catalog_config(catalog, warehouse)?;
    run_json(py, Default::default(), async move {
        let catalog = Catalog::open(config).await?;
        let options = LoadOptions::default();
        let summary = distributed::commit_staged(&catalog, &plan, &options, &staged).await?;
        encode(&summary)
    })
}

/// Deletes files the load's workers wrote that no commit takes; answers how many went.
#[pyfunction]
fn discard_staged(py: Python<'_>, plan: &str, paths: Vec<String>) -> PyResult<usize> {
    let plan = plan_of(plan)?;
    let answer = run_json(py, Default::default(), async move {
        encode(&distributed::discard_staged(&plan, &paths).await?)
    })?;
    serde_json::from_str(&answer).map_err(|e| InvalidOptionError::new_err(e.to_string()))
}

/// A source over the Arrow C streams of `blocks`' items, read one after another (taking the
/// GIL only to get the next item). Batches keep their blocks' schemas: conform matches
/// columns by name.
fn blocks_source(blocks: Py<PyIterator>, schema: SchemaRef, name: &str) -> Source {
    threaded_source(schema, name, move |send| {
        loop {
            let next = Python::attach(|py| match blocks.bind(py).clone().next() {
                None => Ok(None),
                Some(item) => c_stream_reader(&item?).map(Some),
            });
            match next {
                Ok(Some(reader)) => {
                    if !forward(reader, send, None) {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(e) => {
                    send(Err(ArrowError::ExternalError(e.to_string().into())));
                    return false;
                }
            }
        }
    })
}
