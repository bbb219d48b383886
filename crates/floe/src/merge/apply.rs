//! The join's decisions collected, and its deletes applied one data file at a time: the
//! (file, pos) pairs are sorted by file (spilling past the budget), so only one file's
//! positions are held at once.
//!
//! - copy-on-write: the file is rewritten without the deleted rows (old deletes applied too)
//!   and leaves the table;
//! - merge-on-read: one position-delete file per data file hides the rows.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::{Array, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef};
use iceberg::io::FileIO;
use iceberg::spec::Schema;
use roaring::RoaringTreemap;

use super::candidates::CandidateFiles;
use super::join::JoinSink;
use super::position_deletes::PositionDeleteWriter;
use super::spec::MergeCounts;
use super::table_files::{LiveFile, write_live_rows};
use crate::commit::AddedDelete;
use crate::error::{Result, ResultExt};
use crate::spill::{ExternalSorter, SortedStream};
use crate::write::ParallelWriter;

/// Deletes buffered before they go to the sorter.
const DELETE_BUFFER_ROWS: usize = 65536;

/// Collects the join's decisions: the input positions of the load rows to write (a bitmap)
/// and the table rows to delete (sorted by file, then position).
pub(crate) struct DeleteCollector {
    inserts: RoaringTreemap,
    deletes: ExternalSorter,
    schema: SchemaRef,
    buffer: (Vec<u32>, Vec<u64>),
}

impl DeleteCollector {
    pub fn new(budget: usize, spill_dir: Option<&std::path::Path>) -> Result<Self> {
        let schema: SchemaRef = Arc::new(ArrowSchema::new(vec![
            Field::new("file", DataType::UInt32, false),
            Field::new("pos", DataType::UInt64, false),
        ]));
        Ok(Self {
            inserts: RoaringTreemap::new(),
            deletes: ExternalSorter::new(schema.clone(), vec![0, 1], budget, spill_dir)?,
            schema,
            buffer: (Vec::new(), Vec::new()),
        })
    }

    fn flush(&mut self) -> Result<()> {
        if self.buffer.0.is_empty() {
            return Ok(());
        }
        let (files, positions) = std::mem::take(&mut self.buffer);
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(UInt32Array::from(files)),
                Arc::new(UInt64Array::from(positions)),
            ],
        )
        .context(|| "cannot collect deletes".into())?;
        self.deletes.push(batch)
    }

    /// The rows to write, the sorted deletes, and how many runs the deletes spilled.
    pub fn finish(mut self) -> Result<(RoaringTreemap, SortedStream, usize)> {
        self.flush()?;
        let spilled = self.deletes.spilled_runs();
        Ok((self.inserts, self.deletes.finish()?, spilled))
    }
}

impl JoinSink for DeleteCollector {
    fn insert(&mut self, seq: u64) -> Result<()> {
        self.inserts.insert(seq);
        Ok(())
    }

    fn delete(&mut self, file: u32, pos: u64) -> Result<()> {
        self.buffer.0.push(file);
        self.buffer.1.push(pos);
        if self.buffer.0.len() >= DELETE_BUFFER_ROWS {
            self.flush()?;
        }
        Ok(())
    }
}

/// Where deletes are applied: the candidate files the join numbered, and how.
pub(crate) struct DeleteTargets<'a> {
    /// Counts the files applied; cancels between files.
    pub progress: &'a crate::progress::Progress,
    pub candidates: &'a CandidateFiles,
    /// Positions already deleted in each file (by earlier delete files).
    pub already_deleted: &'a super::deleted::DeletedPositions,
    pub schema: &'a Schema,
    pub file_io: &'a FileIO,
    /// Merge-on-read; copy-on-write when `None`.
    pub delete_writer: Option<&'a PositionDeleteWriter>,
}

/// What applying the deletes changed.
#[derive(Default)]
pub(crate) struct Applied {
    /// Data files rewritten (copy-on-write): they leave the table.
    pub removed: HashSet<String>,
    /// Position-delete files written (merge-on-read).
    pub delete_files: Vec<AddedDelete>,
    /// The candidates rewritten so far, by number: their paths are looked up once every file
    /// is done, so that thousands of small path strings are not allocated between each file's
    /// large read buffers, where they would keep freed memory from being reused.
    rewritten: Vec<u32>,
}

/// Applies the sorted deletes file by file; rewritten rows go to `writer`.
pub(crate) async fn apply_deletes(
    deletes: SortedStream,
    targets: &DeleteTargets<'_>,
    writer: &mut ParallelWriter,
    counts: &mut MergeCounts,
) -> Result<Applied> {
    let mut applied = Applied::default();
    for group in ByFile::new(deletes) {
        let (file, positions) = group?;
        targets
            .apply(file, &positions, writer, counts, &mut applied)
            .await?;
    }
    let rewritten = std::mem::take(&mut applied.rewritten);
    applied.removed.reserve(rewritten.len());
    for file in rewritten {
        applied
            .removed
            .insert(targets.candidates.get(file as usize)?.path);
    }
    Ok(applied)
}

/// Sorted (file, pos) pairs grouped by file: each file's positions as one bitmap, so only one
/// file's positions are held at once.
pub(crate) struct ByFile {
    pairs: SortedStream,
    /// The batch being read and the next row of it.
    batch: Option<(RecordBatch, usize)>,
}

impl ByFile {
    pub fn new(pairs: SortedStream) -> Self {
        Self { pairs, batch: None }
    }
}

impl Iterator for ByFile {
    type Item = Result<(u32, RoaringTreemap)>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut group: Option<(u32, RoaringTreemap)> = None;
        loop {
            if self.batch.as_ref().is_none_or(|(b, i)| *i >= b.num_rows()) {
                match self.pairs.next() {
                    None => return group.map(Ok),
                    Some(Err(e)) => return Some(Err(e)),
                    Some(Ok(b)) => {
                        self.batch = Some((b, 0));
                        continue;
                    }
                }
            }
            let (batch, row) = self.batch.as_mut().expect("a batch");
            let file = as_u32(batch.column(0).as_ref()).value(*row);
            let pos = as_u64(batch.column(1).as_ref()).value(*row);
            match group.as_mut() {
                Some((f, _)) if *f != file => return group.map(Ok),
                Some((_, positions)) => {
                    positions.insert(pos);
                }
                None => group = Some((file, RoaringTreemap::from_iter([pos]))),
            }
            *row += 1;
        }
    }
}

fn as_u32(array: &dyn Array) -> &UInt32Array {
    array
        .as_any()
        .downcast_ref()
        .expect("the deletes' file column is u32")
}

fn as_u64(array: &dyn Array) -> &UInt64Array {
    array
        .as_any()
        .downcast_ref()
        .expect("the deletes' pos column is u64")
}

impl DeleteTargets<'_> {
    /// Applies the deletes of one data file.
    async fn apply(
        &self,
        file: u32,
        positions: &RoaringTreemap,
        writer: &mut ParallelWriter,
        counts: &mut MergeCounts,
        applied: &mut Applied,
    ) -> Result<()> {
        self.progress.check_cancelled()?;
        self.progress.stage_step();
        let target = self.candidates.get(file as usize)?;
        if let Some(deletes) = self.delete_writer {
            let files = deletes.write(&target, positions).await?;
            counts.delete_files_added += files.len() as u64;
            applied
                .delete_files
                .extend(files.into_iter().map(|file| AddedDelete {
                    spec_id: target.spec_id,
                    file,
                }));
            return Ok(());
        }
        self.rewrite(&target, positions, writer).await?;
        applied.rewritten.push(file);
        counts.files_rewritten += 1;
        Ok(())
    }

    /// Copy-on-write: the file again, without the deleted rows (old and new).
    async fn rewrite(
        &self,
        target: &LiveFile,
        positions: &RoaringTreemap,
        writer: &mut ParallelWriter,
    ) -> Result<()> {
        let path = target.path.as_str();
        let old = self.already_deleted.get(path)?;
        let hidden = |p| positions.contains(p) || old.as_ref().is_some_and(|d| d.contains(p));
        write_live_rows(self.file_io, path, self.schema, hidden, writer).await?;
        Ok(())
    }
}
