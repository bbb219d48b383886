//! Matching: the live rows of a table whose key appears in a source, some of their columns
//! written to a local Parquet file. Reads only; commits nothing.
//!
//! It is the first half of a merge, run by the merge engine in the same bounded memory: the
//! source's keys sorted (spilling past the budget), the candidate files (pruned by key
//! bounds) scanned for their keys, one sort-merge join naming the matched (file, position)
//! pairs, sorted by file; then each matched file is read once for the wanted columns. What a
//! caller does with the rows is its own: e.g. the dlt destination finds the row ids of the
//! rows a delete-insert replaces, to delete their nested rows by them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use iceberg::TableIdent;
use parquet::arrow::ArrowWriter;
use roaring::RoaringTreemap;
use serde::Serialize;

use super::inspect::existing;
use crate::catalog::{Catalog, TableState};
use crate::conform::Conformer;
use crate::error::{FloeError, Result, ResultExt};
use crate::merge::candidates::CandidateFiles;
use crate::merge::table_files::{
    DataFileReader, LiveState, READ_BATCH_ROWS, live_state, project_schema,
};
use crate::merge::{
    ByFile, DeleteCollector, KeyColumns, KeyMarkers, LoadSide, MergeSpec, MergeStrategy, TableSide,
    join, scan_candidates,
};
use crate::progress::Progress;
use crate::source::Source;
use crate::spill::SortedStream;

/// What a match found.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MatchSummary {
    /// Keys read from the source.
    pub keys: u64,
    /// Live table rows whose key is among them (the rows written).
    pub rows: u64,
    /// Data files whose keys were compared (after pruning by key bounds).
    pub files_scanned: u64,
    /// Data files holding at least one matched row.
    pub files_matched: u64,
}

/// Builder for a match.
pub struct MatchBuilder<'a> {
    catalog: &'a Catalog,
    table: TableIdent,
    keys: Vec<String>,
    columns: Vec<String>,
    memory_limit: usize,
    spill_dir: Option<PathBuf>,
    progress: Arc<Progress>,
}

impl<'a> MatchBuilder<'a> {
    /// Matches by `keys` (top-level primitive columns, as a merge's); writes the key columns
    /// unless [`with_columns`](Self::with_columns) says otherwise.
    pub fn new(catalog: &'a Catalog, table: TableIdent, keys: Vec<String>) -> Self {
        Self {
            catalog,
            table,
            columns: keys.clone(),
            keys,
            memory_limit: super::merge::DEFAULT_MEMORY_LIMIT,
            spill_dir: None,
            progress: Arc::new(Progress::default()),
        }
    }

    /// The top-level columns of the matched rows to write, in this order.
    pub fn with_columns(mut self, columns: Vec<String>) -> Self {
        self.columns = columns;
        self
    }

    /// Memory the sorts may use together before spilling to disk.
    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Where sorts spill (default: the system's temporary directory).
    pub fn with_spill_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.spill_dir = dir;
        self
    }

    /// The switch that cancels the match ([`Progress::cancel`], e.g. on Ctrl-C): the table
    /// scan and the output stop with [`FloeError::Cancelled`]. Give the source the same one
    /// to stop its reading too.
    pub fn with_progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Writes the matched rows' columns to `output` (a local Parquet file, replaced; empty
    /// when nothing matched). `source` must hold the key columns; its other columns are not
    /// read. A missing table is [`FloeError::NoSuchTable`]. The rows go to a file beside
    /// `output` that is renamed to it once complete: a match that fails (or is cancelled)
    /// leaves `output` as it was.
    pub async fn write_parquet(self, source: Source, output: &Path) -> Result<MatchSummary> {
        let mut partial = output.as_os_str().to_owned();
        partial.push(format!(".partial-{}", std::process::id()));
        let partial = PathBuf::from(partial);
        let result = self.match_into(source, &partial).await;
        let result = result.and_then(|summary| {
            std::fs::rename(&partial, output)
                .context(|| {
                    format!(
                        "cannot rename {} to {}",
                        partial.display(),
                        output.display()
                    )
                })
                .map(|_| summary)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result
    }

    async fn match_into(self, source: Source, output: &Path) -> Result<MatchSummary> {
        let state = existing(self.catalog, &self.table).await?;
        let name = state.name();
        let schema = state.metadata.current_schema().clone();
        let spec = MergeSpec {
            keys: self.keys.clone(),
            strategy: MergeStrategy::DeleteInsert,
            mode: Default::default(),
            hard_delete_column: None,
            duplicates: Default::default(),
            memory_limit: self.memory_limit,
        };
        let keys = KeyColumns::resolve(&spec, &schema, &name)?;
        let out_ids = self.output_ids(&schema, &name)?;
        // Three sorts may be full at once: the source's keys, the table's keys, the matches.
        let budget = self.memory_limit / 3;
        let spill = self.spill_dir.as_deref();
        let progress = &self.progress;
        let load = sort_source_keys(&name, &schema, &keys, source, budget, spill, progress).await?;
        let mut summary = MatchSummary {
            keys: load.rows(),
            ..Default::default()
        };
        let ranges = load.ranges();
        let live = live_state(
            &state,
            |f, _| load.rows() > 0 && ranges.may_match(&keys, f),
            CandidateFiles::new(spill),
            spill,
        )
        .await?;
        summary.files_scanned = live.files.len() as u64;
        let matches =
            match_keys(&state, &keys, load, &live, budget, spill, &spec, progress).await?;
        let mut out = MatchOutput::create(&schema, &out_ids, &name, output)?;
        for group in ByFile::new(matches) {
            progress.check_cancelled()?;
            let (file, rows) = group?;
            out.write_rows(&state, &live, file, &rows).await?;
        }
        (summary.rows, summary.files_matched) = out.finish()?;
        Ok(summary)
    }

    /// Field ids of the columns to write; each must be a top-level column of the table.
    fn output_ids(&self, schema: &iceberg::spec::Schema, name: &str) -> Result<Vec<i32>> {
        self.columns
            .iter()
            .map(|c| {
                schema
                    .as_struct()
                    .field_by_name(c)
                    .map(|f| f.id)
                    .ok_or_else(|| {
                        FloeError::InvalidOption(format!(
                            "table {name}: column '{c}' is not a top-level column of the table"
                        ))
                    })
            })
            .collect()
    }
}

/// The source's keys, conformed to the key columns' types and sorted.
async fn sort_source_keys(
    name: &str,
    schema: &iceberg::spec::Schema,
    keys: &KeyColumns,
    mut source: Source,
    budget: usize,
    spill: Option<&Path>,
    progress: &Progress,
) -> Result<LoadSide> {
    use futures::StreamExt;
    let key_ids: Vec<i32> = keys.field_ids.clone();
    let projected = project_schema(schema, &key_ids)?;
    let mut key_only = keys.clone();
    key_only.indices = (0..key_ids.len()).collect();
    let conformer = Conformer::new(name, Arc::new(projected))?.lenient();
    source.project(keys.names.clone());
    let arrow = conformer.arrow_schema().clone();
    let mut load = LoadSide::new(
        &arrow,
        key_only,
        budget,
        spill,
        false,
        KeyMarkers::default(),
    )?;
    let mut stream = source.into_table_stream(Some(arrow));
    while let Some(item) = stream.next().await {
        progress.check_cancelled()?;
        let input = item?;
        load.push(conformer.conform(&input)?, &input.origin)?;
    }
    Ok(load)
}

/// The join: (file, pos) of every live row whose key the source has, sorted by file.
#[allow(clippy::too_many_arguments)]
async fn match_keys(
    state: &TableState,
    keys: &KeyColumns,
    load: LoadSide,
    live: &LiveState<CandidateFiles>,
    budget: usize,
    spill: Option<&Path>,
    spec: &MergeSpec,
    progress: &Progress,
) -> Result<SortedStream> {
    let (load_keys, load_schema) = (load.sorted_keys().clone(), load.schema().clone());
    let (sorted_load, _) = load.finish()?;
    let sorted_table = if live.files.is_empty() {
        None
    } else {
        let table_arrow = Conformer::new(&state.name(), state.metadata.current_schema().clone())?
            .arrow_schema()
            .clone();
        let side = TableSide::new(&table_arrow, keys, budget, spill)?;
        let schema = state.metadata.current_schema();
        let (sorted, _) =
            scan_candidates(&state.file_io, live, schema, side, keys, progress).await?;
        Some(sorted)
    };
    let mut matches = DeleteCollector::new(budget, spill)?;
    join(
        spec,
        &load_keys,
        &load_schema,
        sorted_load,
        sorted_table,
        &mut matches,
    )?;
    Ok(matches.finish()?.1)
}

/// The output file and what went into it.
struct MatchOutput {
    writer: ArrowWriter<std::fs::File>,
    ids: Vec<i32>,
    schema: iceberg::spec::Schema,
    path: PathBuf,
    rows: u64,
    files: u64,
}

impl MatchOutput {
    fn create(
        schema: &iceberg::spec::Schema,
        ids: &[i32],
        table: &str,
        path: &Path,
    ) -> Result<Self> {
        let out_schema = project_schema(schema, ids)?;
        let arrow = Conformer::new(table, Arc::new(out_schema))?
            .arrow_schema()
            .clone();
        let file =
            std::fs::File::create(path).context(|| format!("cannot create {}", path.display()))?;
        let writer = ArrowWriter::try_new(file, arrow, None).map_err(|e| write_error(path, e))?;
        Ok(Self {
            writer,
            ids: ids.to_vec(),
            schema: schema.clone(),
            path: path.to_path_buf(),
            rows: 0,
            files: 0,
        })
    }

    /// Reads candidate `file` once and writes its rows at `positions`.
    async fn write_rows(
        &mut self,
        state: &TableState,
        live: &LiveState<CandidateFiles>,
        file: u32,
        positions: &RoaringTreemap,
    ) -> Result<()> {
        let target = live.files.get(file as usize)?;
        let mut reader = DataFileReader::open(
            &state.file_io,
            &target.path,
            &self.schema,
            Some(&self.ids),
            READ_BATCH_ROWS,
        )
        .await?;
        while let Some(item) = reader.next().await {
            let (first, batch) = item?;
            let keep = arrow_array::BooleanArray::from_iter(
                (first..first + batch.num_rows() as u64).map(|p| Some(positions.contains(p))),
            );
            let kept = arrow_select::filter::filter_record_batch(&batch, &keep)
                .context(|| format!("cannot read {}", target.path))?;
            if kept.num_rows() > 0 {
                self.rows += kept.num_rows() as u64;
                self.writer
                    .write(&kept)
                    .map_err(|e| write_error(&self.path, e))?;
            }
        }
        self.files += 1;
        Ok(())
    }

    /// Finishes the file; returns the rows and the table files they came from.
    fn finish(self) -> Result<(u64, u64)> {
        self.writer
            .close()
            .map_err(|e| write_error(&self.path, e))?;
        Ok((self.rows, self.files))
    }
}

fn write_error(path: &Path, e: parquet::errors::ParquetError) -> FloeError {
    FloeError::DataFileWrite {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}
