//! Splice: build data files out of the input's own Parquet column chunks.
//!
//! Most loads are Parquet written by another tool (dlt, pyarrow, Spark) with the same codec and
//! the same physical types the table wants. Decoding such a file only to encode the same values
//! again is most of a load's cost, so for an unpartitioned table floe copies every compatible
//! column chunk byte for byte into a new file whose footer carries the table's schema and field
//! ids, and re-encodes only the columns that differ (a decimal stored as fixed bytes, a
//! timestamp of another unit, another codec, a nullability change). Readers see an ordinary
//! Parquet file; Iceberg metrics come from the resulting footer ([`super::metrics`]).
//!
//! [`SplicePlanner::plan`] decides per input file, from its footer alone. A file qualifies when
//! it has exactly the table's columns (by name), its row groups are not small (copying keeps
//! them as they are), most of its bytes can be copied, and the columns to re-encode fit
//! [`ENCODE_BUDGET_BYTES`] per row group. Everything else goes through the normal
//! decode -> conform -> encode pipeline, so the choice never changes what a reader sees.
//!
//! Memory: copying streams through a small buffer; re-encoded columns hold one row group's
//! encoded chunk, bounded by the budget; decoding for them uses the load's batch budget.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::SchemaRef;
use iceberg::spec::Schema;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::arrow_writer::{ArrowColumnChunk, compute_leaves};
use parquet::arrow::{ArrowSchemaConverter, ProjectionMask};
use parquet::basic::{Compression, Encoding, Repetition};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{ColumnChunkMetaData, RowGroupMetaData};
use parquet::schema::types::{ColumnDescPtr, SchemaDescPtr, Type as SchemaType};

use super::FileSettings;
use super::output::{FileTarget, OpenFile};
use super::verify::FileChecks;
use crate::conform::Conformer;
use crate::error::{FloeError, Result, ResultExt};
use crate::progress::Progress;
use crate::source::{BatchBudget, SourceBatch};

/// Most decoded bytes of re-encoded columns per input row group (their encoded chunks are held
/// until the row group is assembled).
pub const ENCODE_BUDGET_BYTES: i64 = 64 * 1024 * 1024;

/// Threads that check copied pages (the machines floe targets have two cores).
const VERIFY_THREADS: usize = 2;
/// How many row groups the page checks may run ahead of the copy.
const CHECK_AHEAD: usize = 2;

/// How one table column (a top-level field, with all its leaves) is produced from a file.
#[derive(Debug, Clone)]
enum FieldPlan {
    /// Copy these (input leaf, table leaf) column chunks.
    Copy(Vec<(usize, usize)>),
    /// Decode the input column, conform it and encode these table leaves.
    Encode(Vec<usize>),
}

/// What to do with one input file.
#[derive(Debug, Clone)]
pub struct SplicePlan {
    path: PathBuf,
    /// The data file's schema: the table's, with some optional columns declared required.
    file_arrow: SchemaRef,
    file_parquet: SchemaDescPtr,
    input: ArrowReaderMetadata,
    fields: Vec<FieldPlan>,
    /// Input root columns to decode (the re-encoded fields), and the table fields they become.
    encode_roots: Vec<usize>,
    encode_fields: Vec<usize>,
}

impl SplicePlan {
    /// The input leaf columns whose chunks are copied.
    fn copied_leaves(&self) -> Vec<usize> {
        self.fields
            .iter()
            .flat_map(|field| match field {
                FieldPlan::Copy(pairs) => pairs.iter().map(|&(s, _)| s).collect(),
                FieldPlan::Encode(_) => Vec::new(),
            })
            .collect()
    }
}

/// Decides which input files can be spliced into a table's data files.
#[derive(Debug, Clone)]
pub struct SplicePlanner {
    table_arrow: SchemaRef,
    table_parquet: SchemaDescPtr,
    coerce_types: bool,
    compression: Compression,
    min_row_group_bytes: i64,
}

impl SplicePlanner {
    /// For a table schema's Arrow form (with field ids, as conform produces it).
    pub fn new(table_arrow: SchemaRef, settings: &FileSettings) -> Result<Self> {
        let coerce_types = settings.writer_properties.coerce_types();
        let table_parquet = parquet_schema(&table_arrow, coerce_types)?;
        Ok(Self {
            table_arrow,
            table_parquet,
            coerce_types,
            compression: settings.compression,
            // Copying keeps the input's row groups: only worth it when they are not tiny.
            min_row_group_bytes: (settings.row_group_bytes / 2) as i64,
        })
    }

    /// The files that can be spliced. Only their paths are kept (a footer per input file would
    /// grow with the number of inputs); the splicer plans each again when it gets to it.
    pub fn select(&self, files: &[PathBuf]) -> Result<Vec<PathBuf>> {
        let mut chosen = Vec::new();
        for file in files {
            if self.plan(file)?.is_some() {
                chosen.push(file.clone());
            }
        }
        tracing::info!(
            copied = chosen.len(),
            decoded = files.len() - chosen.len(),
            "input files: column chunks copied vs decoded"
        );
        Ok(chosen)
    }

    /// A plan for the file, or `None` when it must be decoded and re-encoded.
    pub fn plan(&self, path: &Path) -> Result<Option<SplicePlan>> {
        let read_error = |reason: String| FloeError::InputRead {
            path: path.to_path_buf(),
            row_group: None,
            reason,
        };
        let file = File::open(path).map_err(|e| read_error(e.to_string()))?;
        let file_len = file
            .metadata()
            .map_err(|e| read_error(e.to_string()))?
            .len() as i64;
        let input = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
            .map_err(|e| read_error(format!("not a readable Parquet file: {e}")))?;
        let meta = input.metadata().clone();
        let row_groups = meta.row_groups();
        if row_groups.is_empty() {
            return Ok(None);
        }
        let avg_rg = row_groups
            .iter()
            .map(|rg| rg.total_byte_size())
            .sum::<i64>()
            / row_groups.len() as i64;
        if avg_rg < self.min_row_group_bytes {
            return Ok(None);
        }
        let src_schema = meta.file_metadata().schema_descr();
        let src_roots = src_schema.root_schema().get_fields();
        let table_roots = self.table_parquet.root_schema().get_fields();
        // Arrow's view of the table fields lines up with the Parquet roots.
        debug_assert_eq!(self.table_arrow.fields().len(), table_roots.len());
        if src_roots.len() != table_roots.len() {
            return Ok(None);
        }
        let leaves_of = |descr: &parquet::schema::types::SchemaDescriptor, root: usize| {
            (0..descr.num_columns())
                .filter(|&leaf| descr.get_column_root_idx(leaf) == root)
                .collect::<Vec<_>>()
        };

        // A top-level column the input declares required may stay required in the data file
        // although the table's is optional (as in files written before a column was relaxed,
        // which every Iceberg reader handles): its chunks then copy as they are.
        let matches: Vec<Option<usize>> = table_roots
            .iter()
            .map(|t| src_roots.iter().position(|f| f.name() == t.name()))
            .collect();
        if matches.iter().any(Option::is_none) {
            return Ok(None);
        }
        let relaxable: Vec<bool> = table_roots
            .iter()
            .zip(&matches)
            .map(|(t, s)| {
                let s = &src_roots[s.expect("matched")];
                t.is_primitive()
                    && s.is_primitive()
                    && t.get_basic_info().repetition() == Repetition::OPTIONAL
                    && s.get_basic_info().repetition() == Repetition::REQUIRED
            })
            .collect();
        let candidate = self.file_schema(&relaxable)?;

        let mut copy = Vec::new();
        for (t_root, s_root) in matches.iter().map(|s| s.expect("matched")).enumerate() {
            let t_leaves = leaves_of(&candidate.1, t_root);
            let s_leaves = leaves_of(src_schema, s_root);
            let copyable = t_leaves.len() == s_leaves.len()
                && same_tree(
                    &src_roots[s_root],
                    &candidate.1.root_schema().get_fields()[t_root],
                )
                && s_leaves.iter().all(|&s| {
                    row_groups
                        .iter()
                        .all(|rg| chunk_copyable(rg.column(s), &self.compression, file_len))
                });
            copy.push((s_root, s_leaves, t_leaves, copyable));
        }
        let required: Vec<bool> = relaxable
            .iter()
            .zip(&copy)
            .map(|(r, c)| *r && c.3)
            .collect();
        let (file_arrow, file_parquet) = if required == relaxable {
            candidate
        } else {
            self.file_schema(&required)?
        };

        let mut fields = Vec::new();
        let mut encode_roots = Vec::new();
        let mut encode_fields = Vec::new();
        let mut copied_bytes = 0u64;
        let mut encoded_bytes = 0u64;
        let mut encoded_per_rg = vec![0i64; row_groups.len()];
        for (t_root, (s_root, s_leaves, t_leaves, copyable)) in copy.into_iter().enumerate() {
            let bytes: u64 = row_groups
                .iter()
                .flat_map(|rg| {
                    s_leaves
                        .iter()
                        .map(move |&s| rg.column(s).compressed_size())
                })
                .sum::<i64>()
                .max(0) as u64;
            if copyable {
                copied_bytes += bytes;
                fields.push(FieldPlan::Copy(
                    s_leaves
                        .iter()
                        .copied()
                        .zip(t_leaves.iter().copied())
                        .collect(),
                ));
            } else {
                encoded_bytes += bytes;
                for (k, rg) in row_groups.iter().enumerate() {
                    encoded_per_rg[k] += s_leaves
                        .iter()
                        .map(|&s| rg.column(s).uncompressed_size())
                        .sum::<i64>();
                }
                encode_roots.push(s_root);
                encode_fields.push(t_root);
                fields.push(FieldPlan::Encode(t_leaves));
            }
        }
        tracing::debug!(file = %path.display(), ?fields, copied_bytes, encoded_bytes, "splice plan");
        if copied_bytes == 0
            || encoded_bytes > copied_bytes
            || encoded_per_rg.iter().any(|&b| b > ENCODE_BUDGET_BYTES)
        {
            return Ok(None);
        }
        Ok(Some(SplicePlan {
            path: path.to_path_buf(),
            file_arrow,
            file_parquet,
            input,
            fields,
            encode_roots,
            encode_fields,
        }))
    }
}

impl SplicePlanner {
    /// The table's schema with the given top-level columns required, in Arrow and Parquet.
    fn file_schema(&self, required: &[bool]) -> Result<(SchemaRef, SchemaDescPtr)> {
        if !required.contains(&true) {
            return Ok((self.table_arrow.clone(), self.table_parquet.clone()));
        }
        let fields: Vec<_> = self
            .table_arrow
            .fields()
            .iter()
            .zip(required)
            .map(|(f, &r)| {
                if r {
                    Arc::new(f.as_ref().clone().with_nullable(false))
                } else {
                    f.clone()
                }
            })
            .collect();
        let arrow = Arc::new(arrow_schema::Schema::new_with_metadata(
            fields,
            self.table_arrow.metadata().clone(),
        ));
        let parquet = parquet_schema(&arrow, self.coerce_types)?;
        Ok((arrow, parquet))
    }
}

pub(super) fn parquet_schema(
    arrow: &arrow_schema::Schema,
    coerce_types: bool,
) -> Result<SchemaDescPtr> {
    ArrowSchemaConverter::new()
        .with_coerce_types(coerce_types)
        .convert(arrow)
        .map(Arc::new)
        .map_err(|e| FloeError::InvalidOption(format!("table schema for Parquet: {e}")))
}

/// Two columns (a whole top-level field, nested levels included) store values identically:
/// names, repetition, annotations and physical types at every level; field ids aside.
fn same_tree(src: &SchemaType, table: &SchemaType) -> bool {
    let (s, t) = (src.get_basic_info(), table.get_basic_info());
    let info = s.name() == t.name()
        && s.repetition() == t.repetition()
        && s.converted_type() == t.converted_type()
        && s.logical_type_ref() == t.logical_type_ref();
    info && match (src, table) {
        (
            SchemaType::PrimitiveType {
                physical_type: sp,
                type_length: sl,
                scale: ss,
                precision: sx,
                ..
            },
            SchemaType::PrimitiveType {
                physical_type: tp,
                type_length: tl,
                scale: ts,
                precision: tx,
                ..
            },
        ) => sp == tp && sl == tl && ss == ts && sx == tx,
        (SchemaType::GroupType { fields: sf, .. }, SchemaType::GroupType { fields: tf, .. }) => {
            sf.len() == tf.len() && sf.iter().zip(tf).all(|(a, b)| same_tree(a, b))
        }
        _ => false,
    }
}

/// A chunk can be copied when it uses the table's codec and its byte range is plausible.
fn chunk_copyable(chunk: &ColumnChunkMetaData, codec: &Compression, file_len: i64) -> bool {
    let data = chunk.data_page_offset();
    let start = match chunk.dictionary_page_offset() {
        // Some writers put 0 here for "no dictionary".
        Some(dict) if dict > 0 => {
            if dict >= data {
                return false;
            }
            dict
        }
        _ => data,
    };
    // Only the encodings floe's own writer uses: some Iceberg readers (vectorized Java ones)
    // do not read DELTA_* or BYTE_STREAM_SPLIT pages.
    let encodings_ok = chunk.encodings().all(|e| {
        matches!(
            e,
            Encoding::PLAIN | Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY | Encoding::RLE
        )
    });
    std::mem::discriminant(&chunk.compression()) == std::mem::discriminant(codec)
        && encodings_ok
        && chunk.file_path().is_none()
        && start >= 4
        && chunk.compressed_size() > 0
        && start + chunk.compressed_size() <= file_len
}

/// Writes spliced data files on a blocking thread; finished files go to the load's sink.
pub struct SplicingWriter {
    target: FileTarget,
    progress: Arc<Progress>,
    budget: BatchBudget,
    current: Option<OpenFile>,
    pub rows: u64,
}

impl SplicingWriter {
    /// Batches for decoding re-encoded columns.
    pub fn with_budget(mut self, budget: BatchBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Writes its files to `target`.
    pub fn new(target: FileTarget, progress: Arc<Progress>) -> Self {
        Self {
            target,
            progress,
            budget: BatchBudget::default(),
            current: None,
            rows: 0,
        }
    }

    /// Splices every row group of one planned file.
    pub fn write_file(&mut self, plan: &SplicePlan) -> Result<()> {
        let read_error = |rg: Option<usize>, reason: String| FloeError::InputRead {
            path: plan.path.clone(),
            row_group: rg,
            reason,
        };
        let file = File::open(&plan.path).map_err(|e| read_error(None, e.to_string()))?;
        let conformer = if plan.encode_fields.is_empty() {
            None
        } else {
            let fields = plan
                .encode_fields
                .iter()
                .map(|&k| self.target.schema.as_struct().fields()[k].clone())
                .collect::<Vec<_>>();
            let sub = Schema::builder()
                .with_schema_id(self.target.schema.schema_id())
                .with_fields(fields)
                .build()
                .context(|| format!("table {}: cannot project its schema", self.target.table))?;
            Some(Conformer::new(&self.target.table, Arc::new(sub))?)
        };
        let pages_file = Arc::new(
            file.try_clone()
                .map_err(|e| read_error(None, e.to_string()))?,
        );
        let reader = LargeReads(file);
        let file = &reader.0;
        let table_descr = plan.file_parquet.clone();
        if self
            .current
            .as_ref()
            .is_some_and(|open| open.schema != plan.file_arrow)
        {
            self.finish_file()?;
        }
        // Pages are checked ahead of the copy, on threads of their own (checking is CPU,
        // copying is I/O), at most CHECK_AHEAD row groups ahead.
        let leaves = plan.copied_leaves();
        let metadata = plan.input.metadata();
        std::thread::scope(|scope| -> Result<()> {
            let checks = FileChecks::start(
                scope,
                &pages_file,
                metadata,
                &leaves,
                VERIFY_THREADS,
                CHECK_AHEAD,
            );
            for rg in 0..plan.input.metadata().num_row_groups() {
                self.progress.check_cancelled()?;
                let rg_meta = plan.input.metadata().row_group(rg);
                let rows = rg_meta.num_rows().max(0) as u64;
                self.open_file(plan)?;
                let mut encoded = match &conformer {
                    Some(conformer) => self.encode_row_group(plan, file, rg, conformer)?,
                    None => VecDeque::new(),
                };
                let open = self.current.as_mut().expect("open file");
                let write_error = |e: parquet::errors::ParquetError| FloeError::DataFileWrite {
                    path: open.path.clone(),
                    reason: format!("{e} (splicing {} row group {rg})", plan.path.display()),
                };
                // Nothing is copied before every chunk of the row group is proven readable.
                checks.row_group(rg).map_err(|(leaf, e)| {
                    let column = match leaf {
                        usize::MAX => String::new(),
                        leaf => rg_meta.column(leaf).column_path().string(),
                    };
                    read_error(Some(rg), format!("column '{column}': {e}"))
                })?;
                let mut group = open.writer.next_row_group().map_err(write_error)?;
                for field in &plan.fields {
                    match field {
                        FieldPlan::Copy(pairs) => {
                            for &(s, t) in pairs {
                                let close = copied_chunk(rg_meta, s, table_descr.column(t), rows)
                                    .map_err(write_error)?;
                                group.append_column(&reader, close).map_err(|e| {
                                    read_error(Some(rg), format!("copying column chunk {s}: {e}"))
                                })?;
                            }
                        }
                        FieldPlan::Encode(leaves) => {
                            for _ in leaves {
                                let mut chunk =
                                    encoded.pop_front().expect("one chunk per encoded leaf");
                                // Copied chunks come without page indexes, and a file has them
                                // for every chunk or for none.
                                chunk.close_mut().offset_index = None;
                                chunk.close_mut().column_index = None;
                                chunk.append_to_row_group(&mut group).map_err(write_error)?;
                            }
                        }
                    }
                }
                group.close().map_err(write_error)?;
                self.rows += rows;
                self.progress.add_input_rows(rows);
                self.progress
                    .add_input_bytes(rg_meta.compressed_size().max(0) as u64);
                let full = open.writer.bytes_written() as u64 >= self.target.target_file_size;
                if full {
                    self.finish_file()?;
                }
            }
            Ok(())
        })?;
        self.progress.add_input_file();
        Ok(())
    }

    /// Decodes the row group's re-encoded columns in batches and encodes them, in table order.
    fn encode_row_group(
        &mut self,
        plan: &SplicePlan,
        file: &File,
        rg: usize,
        conformer: &Conformer,
    ) -> Result<VecDeque<ArrowColumnChunk>> {
        let read_error = |reason: String| FloeError::InputRead {
            path: plan.path.clone(),
            row_group: Some(rg),
            reason,
        };
        let open = self.current.as_mut().expect("open file");
        let write_error = |e: parquet::errors::ParquetError| FloeError::DataFileWrite {
            path: open.path.clone(),
            reason: e.to_string(),
        };
        let mut all = open
            .factory
            .create_column_writers(open.writer.flushed_row_groups().len())
            .map_err(write_error)?
            .into_iter()
            .map(Some)
            .collect::<Vec<_>>();
        let mut writers = Vec::new();
        for field in &plan.fields {
            if let FieldPlan::Encode(leaves) = field {
                writers.push(
                    leaves
                        .iter()
                        .map(|&leaf| all[leaf].take().expect("leaf writer"))
                        .collect::<Vec<_>>(),
                );
            }
        }
        drop(all);

        let rg_meta = plan.input.metadata().row_group(rg);
        let rows = rg_meta.num_rows().max(1) as usize;
        let row_bytes = (rg_meta.total_byte_size().max(1) as usize).div_ceil(rows);
        // At least 1,024 rows a batch, unless the user's budget asks for fewer.
        let batch_rows = (self.budget.max_bytes / row_bytes.max(1))
            .max(1024)
            .min(self.budget.max_rows.max(1));
        let mask = ProjectionMask::roots(
            plan.input.metadata().file_metadata().schema_descr(),
            plan.encode_roots.iter().copied(),
        );
        let handle = file.try_clone().map_err(|e| read_error(e.to_string()))?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(handle, plan.input.clone())
            .with_row_groups(vec![rg])
            .with_projection(mask)
            .with_batch_size(batch_rows)
            .build()
            .map_err(|e| read_error(e.to_string()))?;
        let origin: Arc<str> = Arc::from(format!("{} (row group {rg})", plan.path.display()));
        let sub_arrow = conformer.arrow_schema().clone();
        for batch in reader {
            let batch = batch.map_err(|e| read_error(e.to_string()))?;
            let conformed = conformer.conform(&SourceBatch {
                batch,
                origin: origin.clone(),
            })?;
            for ((field, column), field_writers) in sub_arrow
                .fields()
                .iter()
                .zip(conformed.columns())
                .zip(writers.iter_mut())
            {
                let leaves = compute_leaves(field, column).map_err(write_error)?;
                for (leaf, writer) in leaves.into_iter().zip(field_writers.iter_mut()) {
                    writer.write(&leaf).map_err(write_error)?;
                }
            }
        }
        writers
            .into_iter()
            .flatten()
            .map(|w| w.close().map_err(write_error))
            .collect()
    }

    fn open_file(&mut self, plan: &SplicePlan) -> Result<()> {
        if self.current.is_none() {
            self.current = Some(self.target.open(&plan.file_arrow, &plan.file_parquet)?);
        }
        Ok(())
    }

    fn abandon_file(&mut self) {
        if let Some(open) = self.current.take() {
            open.abandon();
        }
    }

    /// Writes the footer of the open file and hands the data file to the sink.
    pub fn finish_file(&mut self) -> Result<()> {
        match self.current.take() {
            Some(open) => self.target.finish(open),
            None => Ok(()),
        }
    }
}

/// The input chunk's metadata, described with the table's column (name, field id).
fn copied_chunk(
    rg: &RowGroupMetaData,
    leaf: usize,
    table_column: ColumnDescPtr,
    rows: u64,
) -> parquet::errors::Result<ColumnCloseResult> {
    let src = rg.column(leaf);
    let mut builder = ColumnChunkMetaData::builder(table_column)
        .set_compression(src.compression())
        .set_encodings_mask(*src.encodings_mask())
        .set_total_compressed_size(src.compressed_size())
        .set_total_uncompressed_size(src.uncompressed_size())
        .set_num_values(src.num_values())
        .set_data_page_offset(src.data_page_offset())
        .set_dictionary_page_offset(src.dictionary_page_offset().filter(|&o| o > 0))
        .set_unencoded_byte_array_data_bytes(src.unencoded_byte_array_data_bytes());
    if let Some(stats) = src.statistics() {
        builder = builder.set_statistics(stats.clone());
    }
    if let Some(stats) = src.page_encoding_stats() {
        builder = builder.set_page_encoding_stats(stats.clone());
    }
    if let Some(h) = src.repetition_level_histogram() {
        builder = builder.set_repetition_level_histogram(Some(h.clone()));
    }
    if let Some(h) = src.definition_level_histogram() {
        builder = builder.set_definition_level_histogram(Some(h.clone()));
    }
    Ok(ColumnCloseResult {
        bytes_written: src.compressed_size().max(0) as u64,
        rows_written: rows,
        metadata: builder.build()?,
        bloom_filter: None,
        column_index: None,
        offset_index: None,
    })
}

/// Splicing running on a blocking thread.
pub struct SpliceTask {
    handle: tokio::task::JoinHandle<(u64, Result<()>)>,
    cancel: Arc<std::sync::atomic::AtomicBool>,
}

/// What a splice task did: rows spliced and how it ended (its files are in the load's ledger).
pub struct SpliceOutcome {
    pub rows: u64,
    pub result: Result<()>,
}

impl SplicingWriter {
    /// Splices `files` (chosen by [`SplicePlanner::select`]) in order on a blocking thread; the
    /// last file is finished at the end.
    pub fn spawn(mut self, planner: SplicePlanner, files: Vec<PathBuf>) -> SpliceTask {
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = cancel.clone();
        let handle = tokio::task::spawn_blocking(move || {
            let mut result = Ok(());
            for path in &files {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                result = match planner.plan(path) {
                    Ok(Some(plan)) => self.write_file(&plan),
                    Ok(None) => Err(FloeError::InputChanged { path: path.clone() }),
                    Err(e) => Err(e),
                };
                if result.is_err() {
                    break;
                }
            }
            if result.is_ok() {
                result = self.finish_file();
            } else {
                self.abandon_file();
            }
            (self.rows, result)
        });
        SpliceTask { handle, cancel }
    }
}

impl SpliceTask {
    /// Asks the task to stop after the file it is splicing.
    pub fn cancel(&self) {
        self.cancel
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub async fn join(self) -> SpliceOutcome {
        let (rows, result) = match self.handle.await {
            Ok(done) => done,
            Err(e) => (
                0,
                Err(FloeError::TaskFailed {
                    task: "copying Parquet column chunks".into(),
                    reason: e.to_string(),
                }),
            ),
        };
        SpliceOutcome { rows, result }
    }
}

/// Reads input column chunks in large pieces (the default is 8 KiB per read call).
struct LargeReads(File);

impl parquet::file::reader::Length for LargeReads {
    fn len(&self) -> u64 {
        self.0.len()
    }
}

impl parquet::file::reader::ChunkReader for LargeReads {
    type T = std::io::BufReader<File>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use std::io::{Seek, SeekFrom};
        let mut file = self.0.try_clone()?;
        file.seek(SeekFrom::Start(start))?;
        Ok(std::io::BufReader::with_capacity(1 << 20, file))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        self.0.get_bytes(start, length)
    }
}

#[cfg(test)]
mod tests {
    use parquet::schema::parser::parse_message_type;

    use super::*;

    fn root(message: &str) -> SchemaType {
        let parsed = parse_message_type(message).unwrap();
        parsed.get_fields()[0].as_ref().clone()
    }

    #[test]
    fn nesting_must_match_at_every_level() {
        let table = root(
            "message t { optional group s { required group l (LIST) { repeated group list { optional int32 element; } } } }",
        );
        let same = root(
            "message t { optional group s { required group l (LIST) { repeated group list { optional int32 element; } } } }",
        );
        // Same leaf path and levels, but the optional level moved from `s` to `l`.
        let moved = root(
            "message t { required group s { optional group l (LIST) { repeated group list { optional int32 element; } } } }",
        );
        assert!(same_tree(&same, &table));
        assert!(!same_tree(&moved, &table));
        let other_type = root(
            "message t { optional group s { required group l (LIST) { repeated group list { optional int64 element; } } } }",
        );
        assert!(!same_tree(&other_type, &table));
    }
}
