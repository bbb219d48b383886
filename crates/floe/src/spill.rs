//! Spill: sort a stream of batches by key columns in bounded memory.
//!
//! Batches are buffered up to a byte budget; a full buffer is sorted (by Arrow's row format,
//! so any key types compare correctly) and written to a local Arrow IPC run file. `finish`
//! streams everything back in key order, merging the runs k-way with one batch per run in
//! memory. Runs are written in batches sized from the budget (wide rows get fewer rows per
//! batch), so a merge of up to [`MAX_FAN_IN`] runs stays within half the budget whatever the
//! rows hold. Used wherever a load must bring rows with equal keys together without holding them
//! all: clustering partitions, and matching merge keys against the table.
//!
//! [`SpillQueue`] is the unsorted sibling: batches kept in arrival order, in memory up to a
//! budget and then in one LZ4 Arrow IPC file (a merge keeps its load rows there while only the
//! keys are sorted).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow_array::{ArrayRef, RecordBatch};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_row::{OwnedRow, RowConverter, Rows, SortField};
use arrow_schema::SchemaRef;
use arrow_select::interleave::interleave_record_batch;

use crate::error::{FloeError, Result, ResultExt};

/// Most rows per batch the sorter produces (fewer for wide rows, see [`MERGE_SHARES`]).
const OUTPUT_ROWS: usize = 8192;
/// Fewest rows per batch, however wide the rows.
const MIN_BATCH_ROWS: usize = 16;
/// A merge holds each run's current batch, the batches its output still refers to (about one
/// more per run, since runs are written in batches of the output's size) and the output:
/// batches of a `1 / MERGE_SHARES` share of the budget keep it near half the budget.
const MERGE_SHARES: usize = 4 * MAX_FAN_IN;

fn spill_error(context: String, e: impl std::fmt::Display) -> FloeError {
    FloeError::Io {
        context,
        source: std::io::Error::other(e.to_string()),
    }
}

/// Buffered batches and the (batch, row) order that sorts them.
type SortedBuffer = (Vec<RecordBatch>, Vec<(usize, usize)>);

/// Sorts batches of one schema by some of their columns, spilling to disk past a budget.
pub struct ExternalSorter {
    schema: SchemaRef,
    key_columns: Vec<usize>,
    converter: RowConverter,
    budget: usize,
    buffered: Vec<RecordBatch>,
    /// Bytes of `buffered` and `small` together.
    buffered_bytes: usize,
    /// Small batches in arrival order, gathered into one buffered batch of at least
    /// [`GATHER_ROWS`] rows: thousands of few-row batches (one per small table file, one per
    /// partition) would otherwise cost far more than their rows in per-batch overhead.
    small: Vec<RecordBatch>,
    small_rows: usize,
    small_bytes: usize,
    runs: Vec<PathBuf>,
    dir: tempfile::TempDir,
    rows: u64,
    /// Sorting bytes of every batch pushed, for the rows per batch of runs and merges.
    bytes: u64,
    next_run: usize,
    spilled: usize,
}

/// Most runs merged at once (each holds one batch in memory while merging).
const MAX_FAN_IN: usize = 16;
/// Batches below this many rows are gathered before they are buffered.
const GATHER_ROWS: usize = 8 * 1024;

impl std::fmt::Debug for ExternalSorter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalSorter")
            .field("budget", &self.budget)
            .field("runs", &self.runs.len())
            .finish()
    }
}

impl ExternalSorter {
    /// `key_columns` index into `schema`; rows are ordered by them, ascending, nulls first.
    /// Spill files go to a fresh directory under `spill_dir` (default: the system temp dir).
    pub fn new(
        schema: SchemaRef,
        key_columns: Vec<usize>,
        budget: usize,
        spill_dir: Option<&Path>,
    ) -> Result<Self> {
        let fields = key_columns
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect();
        let converter =
            RowConverter::new(fields).context(|| "cannot compare the sort key columns".into())?;
        let dir = spill_directory(spill_dir)?;
        Ok(Self {
            schema,
            key_columns,
            converter,
            budget: budget.max(1 << 20),
            buffered: Vec::new(),
            buffered_bytes: 0,
            small: Vec::new(),
            small_rows: 0,
            small_bytes: 0,
            runs: Vec::new(),
            dir,
            rows: 0,
            bytes: 0,
            next_run: 0,
            spilled: 0,
        })
    }

    /// Number of runs spilled to disk so far.
    pub fn spilled_runs(&self) -> usize {
        self.spilled
    }

    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let (rows, bytes) = (batch.num_rows(), self.sorting_bytes(&batch));
        self.rows += rows as u64;
        self.bytes += bytes as u64;
        self.buffered_bytes += bytes;
        if rows < GATHER_ROWS {
            self.small.push(batch);
            self.small_rows += rows;
            self.small_bytes += bytes;
            if self.small_rows >= GATHER_ROWS {
                self.gather()?;
            }
        } else {
            // Pending small batches first: rows keep their arrival order (ties sort stably).
            self.gather()?;
            self.buffered.push(batch);
        }
        if self.buffered_bytes >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Buffers the pending small batches as one.
    fn gather(&mut self) -> Result<()> {
        if self.small.is_empty() {
            return Ok(());
        }
        let batch = arrow_select::concat::concat_batches(&self.schema, &self.small)
            .context(|| "cannot gather small batches for the sort".into())?;
        self.small.clear();
        self.buffered_bytes = self.buffered_bytes - self.small_bytes + self.sorting_bytes(&batch);
        (self.small_rows, self.small_bytes) = (0, 0);
        self.buffered.push(batch);
        Ok(())
    }

    /// What `batch` costs once sorted, so the budget covers the sort too: its columns, its key
    /// columns again in row format (with a row offset each) and an order entry per row.
    fn sorting_bytes(&self, batch: &RecordBatch) -> usize {
        let keys: usize = self
            .key_columns
            .iter()
            .map(|&i| batch.column(i).get_array_memory_size())
            .sum();
        let per_row = size_of::<usize>() + size_of::<(usize, usize)>();
        batch.get_array_memory_size() + keys + batch.num_rows() * per_row
    }

    /// Rows per batch of runs and merges: a [`MERGE_SHARES`] share of the budget at the
    /// average row size so far, between [`MIN_BATCH_ROWS`] and [`OUTPUT_ROWS`].
    fn batch_rows(&self) -> usize {
        let row_bytes = (self.bytes / self.rows.max(1)).max(1);
        let share = (self.budget / MERGE_SHARES) as u64;
        (share / row_bytes).clamp(MIN_BATCH_ROWS as u64, OUTPUT_ROWS as u64) as usize
    }

    fn keys(&self, batch: &RecordBatch) -> Result<Rows> {
        let columns: Vec<ArrayRef> = self
            .key_columns
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        self.converter
            .convert_columns(&columns)
            .context(|| "cannot encode sort keys".into())
    }

    /// Sorts the buffer: returns the buffered batches and the sorted (batch, row) order.
    fn sort_buffered(&mut self) -> Result<SortedBuffer> {
        self.gather()?;
        let batches = std::mem::take(&mut self.buffered);
        self.buffered_bytes = 0;
        let keys: Vec<Rows> = batches
            .iter()
            .map(|b| self.keys(b))
            .collect::<Result<_>>()?;
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        let mut order: Vec<(usize, usize)> = Vec::with_capacity(rows);
        for (b, batch) in batches.iter().enumerate() {
            order.extend((0..batch.num_rows()).map(|r| (b, r)));
        }
        order.sort_by(|a, b| keys[a.0].row(a.1).cmp(&keys[b.0].row(b.1)));
        Ok((batches, order))
    }

    /// Writes the buffer out as a sorted run, then hands the pages it held back to the OS.
    fn spill(&mut self) -> Result<()> {
        self.write_run()?;
        release_freed_memory();
        Ok(())
    }

    fn write_run(&mut self) -> Result<()> {
        let (batches, order) = self.sort_buffered()?;
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let path = self.next_path();
        let ctx = || format!("cannot write spill file {}", path.display());
        let mut writer = self.run_writer(&path)?;
        // One output chunk at a time: the sorted copy never exists whole next to the buffer.
        for chunk in order.chunks(self.batch_rows()) {
            let batch = interleave_record_batch(&refs, chunk)
                .context(|| "cannot assemble sorted rows".into())?;
            writer.write(&batch).map_err(|e| spill_error(ctx(), e))?;
        }
        writer.finish().map_err(|e| spill_error(ctx(), e))?;
        tracing::debug!(run = self.runs.len(), file = %path.display(), "spilled a sorted run");
        self.runs.push(path);
        self.spilled += 1;
        Ok(())
    }

    /// Everything pushed, in key order.
    pub fn finish(mut self) -> Result<SortedStream> {
        self.gather()?;
        if self.runs.is_empty() {
            let (batches, order) = self.sort_buffered()?;
            return Ok(SortedStream {
                inner: Inner::Memory {
                    batches,
                    order,
                    next: 0,
                    batch_rows: self.batch_rows(),
                },
                _dir: self.dir,
            });
        }
        if !self.buffered.is_empty() {
            self.spill()?;
        }
        // A merge holds one batch per run: past MAX_FAN_IN runs, merge them in groups into
        // longer runs first, so memory does not grow with the number of runs.
        while self.runs.len() > MAX_FAN_IN {
            let group: Vec<PathBuf> = self.runs.drain(..MAX_FAN_IN).collect();
            let mut merger = self.merger(&group)?;
            let path = self.next_path();
            let ctx = || format!("cannot write spill file {}", path.display());
            let mut writer = self.run_writer(&path)?;
            while let Some(batch) = merger.next_batch()? {
                writer.write(&batch).map_err(|e| spill_error(ctx(), e))?;
            }
            writer.finish().map_err(|e| spill_error(ctx(), e))?;
            drop(merger);
            release_freed_memory();
            for done in group {
                let _ = std::fs::remove_file(done);
            }
            self.runs.push(path);
        }
        let runs = std::mem::take(&mut self.runs);
        let merger = self.merger(&runs)?;
        Ok(SortedStream {
            inner: Inner::Merge(Box::new(merger)),
            _dir: self.dir,
        })
    }

    fn next_path(&mut self) -> PathBuf {
        self.next_run += 1;
        self.dir
            .path()
            .join(format!("run-{:05}.arrow", self.next_run))
    }

    fn run_writer(&self, path: &Path) -> Result<FileWriter<BufWriter<File>>> {
        ipc_writer(path, &self.schema)
    }

    fn merger(&self, paths: &[PathBuf]) -> Result<Merger> {
        let mut runs = Vec::with_capacity(paths.len());
        for path in paths {
            let file = File::open(path)
                .context(|| format!("cannot open spill file {}", path.display()))?;
            let reader = FileReader::try_new(BufReader::new(file), None).map_err(|e| {
                spill_error(format!("cannot read spill file {}", path.display()), e)
            })?;
            runs.push(Run {
                reader,
                batch: None,
                keys: None,
                pos: 0,
            });
        }
        let fields = self
            .key_columns
            .iter()
            .map(|&i| SortField::new(self.schema.field(i).data_type().clone()))
            .collect();
        let mut merger = Merger {
            converter: RowConverter::new(fields)
                .context(|| "cannot compare the sort key columns".into())?,
            key_columns: self.key_columns.clone(),
            batch_rows: self.batch_rows(),
            runs,
            heap: BinaryHeap::new(),
            sources: Vec::new(),
            run_source: Vec::new(),
        };
        merger.start()?;
        Ok(merger)
    }
}

/// Hands the pages of freed memory back to the OS. glibc keeps what a process frees in its
/// arenas, where the next allocations of other sizes fragment it, so RSS would keep the high
/// mark of every phase: a spill frees a whole budget of batches at once and the rows that
/// follow (the next buffer, the merge, the writers after it) land all over it. Called after
/// each spill and merge pass, which cost far more than the trim.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only returns free pages to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A fresh directory for spill files under `spill_dir` (default: the system temp dir), removed
/// with its files when dropped. Its name carries this process's id (and PID namespace), so
/// directories that killed floe processes left behind are found and removed first.
fn spill_directory(spill_dir: Option<&Path>) -> Result<tempfile::TempDir> {
    let parent = spill_dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let owner = Owner::current();
    if let Some(owner) = &owner {
        remove_stale_spill_dirs(&parent, owner);
    }
    let prefix = match &owner {
        Some(o) => format!("{SPILL_PREFIX}{}-{}-", o.namespace, o.pid),
        None => SPILL_PREFIX.to_string(),
    };
    tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in(&parent)
        .context(|| format!("cannot create a spill directory in {}", parent.display()))
}

const SPILL_PREFIX: &str = "floe-spill-";

/// The process a spill directory belongs to: its PID namespace (an inode number, so processes
/// of other containers sharing the folder are never taken for dead) and its id.
struct Owner {
    namespace: u64,
    pid: u32,
}

impl Owner {
    /// This process, where /proc tells its PID namespace (Linux); `None` elsewhere.
    fn current() -> Option<Self> {
        let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
        let namespace = link
            .to_str()?
            .strip_prefix("pid:[")?
            .strip_suffix(']')?
            .parse()
            .ok()?;
        Some(Self {
            namespace,
            pid: std::process::id(),
        })
    }
}

/// Removes `floe-spill-<namespace>-<pid>-*` directories of this PID namespace whose process is
/// gone: what a floe killed with SIGKILL (which no handler can catch) leaves behind.
fn remove_stale_spill_dirs(parent: &Path, me: &Owner) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SPILL_PREFIX)) else {
            continue;
        };
        let mut parts = rest.splitn(3, '-');
        let (Some(ns), Some(pid), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(ns), Ok(pid)) = (ns.parse::<u64>(), pid.parse::<u32>()) else {
            continue;
        };
        if ns != me.namespace || pid == me.pid || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!(dir = %path.display(), "removed the spill directory of a floe process that is gone")
            }
            Err(e) => {
                tracing::debug!(dir = %path.display(), error = %e, "could not remove a stale spill directory")
            }
        }
    }
}

/// An LZ4-compressed Arrow IPC file writer for spilled batches.
fn ipc_writer(path: &Path, schema: &SchemaRef) -> Result<FileWriter<BufWriter<File>>> {
    let ctx = || format!("cannot write spill file {}", path.display());
    let file = File::create(path).context(ctx)?;
    let options = IpcWriteOptions::default()
        .try_with_compression(Some(arrow_ipc::CompressionType::LZ4_FRAME))
        .map_err(|e| spill_error(ctx(), e))?;
    FileWriter::try_new_with_options(BufWriter::new(file), schema, options)
        .map_err(|e| spill_error(ctx(), e))
}

/// Batches in arrival order: in memory up to a budget, past it all in one spill file.
pub struct SpillQueue {
    schema: SchemaRef,
    budget: usize,
    memory: Vec<RecordBatch>,
    bytes: usize,
    file: Option<(PathBuf, FileWriter<BufWriter<File>>)>,
    dir: tempfile::TempDir,
}

impl SpillQueue {
    pub fn new(schema: SchemaRef, budget: usize, spill_dir: Option<&Path>) -> Result<Self> {
        Ok(Self {
            schema,
            budget,
            memory: Vec::new(),
            bytes: 0,
            file: None,
            dir: spill_directory(spill_dir)?,
        })
    }

    /// Whether the queue went to disk.
    pub fn spilled(&self) -> bool {
        self.file.is_some()
    }

    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.file.is_none() {
            let size = batch.get_array_memory_size();
            if self.bytes + size <= self.budget {
                self.bytes += size;
                self.memory.push(batch);
                return Ok(());
            }
            let path = self.dir.path().join("queue.arrow");
            let writer = ipc_writer(&path, &self.schema)?;
            self.file = Some((path, writer));
            for earlier in std::mem::take(&mut self.memory) {
                self.write(&earlier)?;
            }
            self.bytes = 0;
        }
        self.write(&batch)
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let (path, writer) = self.file.as_mut().expect("spill file");
        writer
            .write(batch)
            .map_err(|e| spill_error(format!("cannot write spill file {}", path.display()), e))
    }

    /// Everything pushed, in order.
    pub fn finish(self) -> Result<QueueStream> {
        let inner = match self.file {
            None => QueueInner::Memory(self.memory.into_iter()),
            Some((path, mut writer)) => {
                let ctx = || format!("cannot write spill file {}", path.display());
                writer.finish().map_err(|e| spill_error(ctx(), e))?;
                drop(writer);
                let file = File::open(&path)
                    .context(|| format!("cannot open spill file {}", path.display()))?;
                let reader = FileReader::try_new(BufReader::new(file), None).map_err(|e| {
                    spill_error(format!("cannot read spill file {}", path.display()), e)
                })?;
                QueueInner::File(Box::new(reader))
            }
        };
        Ok(QueueStream {
            inner,
            _dir: self.dir,
        })
    }
}

/// A [`SpillQueue`]'s batches, in the order they were pushed; deletes its file when dropped.
pub struct QueueStream {
    inner: QueueInner,
    _dir: tempfile::TempDir,
}

enum QueueInner {
    Memory(std::vec::IntoIter<RecordBatch>),
    File(Box<FileReader<BufReader<File>>>),
}

impl Iterator for QueueStream {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            QueueInner::Memory(batches) => batches.next().map(Ok),
            QueueInner::File(reader) => reader
                .next()
                .map(|b| b.map_err(|e| spill_error("cannot read a spilled batch".into(), e))),
        }
    }
}

/// Sorted output; deletes the spill files when dropped.
pub struct SortedStream {
    inner: Inner,
    _dir: tempfile::TempDir,
}

enum Inner {
    Memory {
        batches: Vec<RecordBatch>,
        order: Vec<(usize, usize)>,
        next: usize,
        batch_rows: usize,
    },
    Merge(Box<Merger>),
}

impl Iterator for SortedStream {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Memory {
                batches,
                order,
                next,
                batch_rows,
            } => {
                if *next >= order.len() {
                    return None;
                }
                let end = (*next + *batch_rows).min(order.len());
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                let out = interleave_record_batch(&refs, &order[*next..end])
                    .context(|| "cannot assemble sorted rows".into());
                *next = end;
                Some(out)
            }
            Inner::Merge(m) => m.next_batch().transpose(),
        }
    }
}

struct Run {
    reader: FileReader<BufReader<File>>,
    batch: Option<RecordBatch>,
    keys: Option<Rows>,
    pos: usize,
}

struct Merger {
    converter: RowConverter,
    key_columns: Vec<usize>,
    /// Rows per output batch.
    batch_rows: usize,
    runs: Vec<Run>,
    /// Smallest head key first: (key, run).
    heap: BinaryHeap<Reverse<(OwnedRow, usize)>>,
    /// Batches referenced by the output being assembled.
    sources: Vec<RecordBatch>,
    /// Index in `sources` of each run's current batch.
    run_source: Vec<usize>,
}

impl Merger {
    fn load_next(&mut self, run: usize) -> Result<bool> {
        loop {
            match self.runs[run].reader.next() {
                None => {
                    self.runs[run].batch = None;
                    self.runs[run].keys = None;
                    return Ok(false);
                }
                Some(batch) => {
                    let batch =
                        batch.map_err(|e| spill_error("cannot read a spill file".into(), e))?;
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    let columns: Vec<ArrayRef> = self
                        .key_columns
                        .iter()
                        .map(|&i| batch.column(i).clone())
                        .collect();
                    let keys = self
                        .converter
                        .convert_columns(&columns)
                        .context(|| "cannot encode sort keys".into())?;
                    self.sources.push(batch.clone());
                    self.run_source[run] = self.sources.len() - 1;
                    let r = &mut self.runs[run];
                    r.batch = Some(batch);
                    r.keys = Some(keys);
                    r.pos = 0;
                    return Ok(true);
                }
            }
        }
    }

    fn push_head(&mut self, run: usize) {
        let r = &self.runs[run];
        if let Some(keys) = &r.keys {
            self.heap.push(Reverse((keys.row(r.pos).owned(), run)));
        }
    }

    fn start(&mut self) -> Result<()> {
        self.run_source = vec![0; self.runs.len()];
        for run in 0..self.runs.len() {
            if self.load_next(run)? {
                self.push_head(run);
            }
        }
        Ok(())
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(self.batch_rows);
        while picks.len() < self.batch_rows {
            let Some(Reverse((_, run))) = self.heap.pop() else {
                break;
            };
            picks.push((self.run_source[run], self.runs[run].pos));
            let r = &mut self.runs[run];
            r.pos += 1;
            let exhausted = r.batch.as_ref().is_none_or(|b| r.pos >= b.num_rows());
            if !exhausted || self.load_next(run)? {
                self.push_head(run);
            }
        }
        if picks.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&RecordBatch> = self.sources.iter().collect();
        let out = interleave_record_batch(&refs, &picks)
            .context(|| "cannot assemble merged rows".into())?;
        // Keep only the runs' current batches as sources.
        let mut kept = Vec::new();
        for run in 0..self.runs.len() {
            if let Some(batch) = &self.runs[run].batch {
                kept.push(batch.clone());
                self.run_source[run] = kept.len() - 1;
            }
        }
        self.sources = kept;
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;

    /// Rows `(key % 97, arrival number)` for arrival numbers `from..to`.
    fn arrivals(from: i64, to: i64) -> RecordBatch {
        let keys: Vec<i64> = (from..to).map(|i| i % 97).collect();
        let seqs: Vec<String> = (from..to).map(|i| format!("{i:06}")).collect();
        RecordBatch::try_new(
            batch(vec![0]).schema(),
            vec![
                Arc::new(Int64Array::from(keys)),
                Arc::new(StringArray::from(seqs)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn small_batches_are_gathered_and_keep_their_order_in_memory_and_spilled() {
        let schema = batch(vec![0]).schema();
        // 0: the smallest budget (1 MiB), so the rows spill runs; usize::MAX: none.
        for budget in [0, usize::MAX] {
            let mut sorter = ExternalSorter::new(schema.clone(), vec![0], budget, None).unwrap();
            let mut next = 0;
            for i in 0..40_000 {
                // One-row batches, and a large one in the middle.
                let rows = if i == 12_345 { 9_000 } else { 1 };
                sorter.push(arrivals(next, next + rows)).unwrap();
                next += rows;
                assert!(sorter.small.len() < GATHER_ROWS);
            }
            assert!(sorter.buffered.len() < 12, "{}", sorter.buffered.len());
            let spilled = sorter.spilled_runs();
            assert_eq!(spilled > 0, budget == 0);
            let mut got: Vec<(i64, String)> = Vec::new();
            for b in sorter.finish().unwrap() {
                let b = b.unwrap();
                let k = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                let v = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
                got.extend((0..b.num_rows()).map(|r| (k.value(r), v.value(r).to_string())));
            }
            assert_eq!(got.len() as i64, next);
            if spilled == 0 {
                // In memory the sort is stable: equal keys keep their arrival order.
                assert!(got.windows(2).all(|w| w[0] < w[1]));
            } else {
                assert!(got.windows(2).all(|w| w[0].0 <= w[1].0));
            }
        }
    }

    #[test]
    fn spill_dirs_of_dead_floe_processes_of_this_namespace_are_removed() {
        let Some(me) = Owner::current() else {
            return; // no /proc: nothing is swept
        };
        let parent = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let ns = me.namespace;
        let names = [
            (format!("floe-spill-{ns}-{dead}-gone"), false),
            (format!("floe-spill-{ns}-{}-mine", me.pid), true),
            (
                format!("floe-spill-{}-{dead}-other-namespace", ns + 1),
                true,
            ),
            ("floe-spill-old-style".to_string(), true),
            (format!("other-{ns}-{dead}-x"), true),
        ];
        for (name, _) in &names {
            std::fs::create_dir(parent.path().join(name)).unwrap();
            std::fs::write(parent.path().join(name).join("run-0"), b"x").unwrap();
        }
        let fresh = spill_directory(Some(parent.path())).unwrap();
        let fresh_name = fresh.path().file_name().unwrap().to_str().unwrap();
        assert!(fresh_name.starts_with(&format!("floe-spill-{ns}-{}-", me.pid)));
        for (name, kept) in &names {
            assert_eq!(parent.path().join(name).exists(), *kept, "{name}");
        }
    }

    fn batch(keys: Vec<i64>) -> RecordBatch {
        let names: Vec<String> = keys.iter().map(|k| format!("v{k}")).collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("k", DataType::Int64, true),
                Field::new("v", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Array::from(keys)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    fn sorted_keys(budget: usize, batches: Vec<RecordBatch>) -> (Vec<i64>, usize) {
        let mut sorter = ExternalSorter::new(batches[0].schema(), vec![0], budget, None).unwrap();
        for b in batches {
            sorter.push(b).unwrap();
        }
        let runs = sorter.spilled_runs();
        let out: Vec<i64> = sorter
            .finish()
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                let k = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .clone();
                let v = b
                    .column(1)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .clone();
                (0..b.num_rows())
                    .map(|i| {
                        assert_eq!(v.value(i), format!("v{}", k.value(i)), "rows stay whole");
                        k.value(i)
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        (out, runs)
    }

    #[test]
    fn sorts_in_memory_and_with_spills_alike() {
        let mut state = 17u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as i64 % 100_000
        };
        let batches: Vec<RecordBatch> = (0..40)
            .map(|_| batch((0..5000).map(|_| next()).collect()))
            .collect();
        let mut expected: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        expected.sort();
        let (in_memory, runs) = sorted_keys(1 << 30, batches.clone());
        assert_eq!(runs, 0);
        assert_eq!(in_memory, expected);
        let (spilled, runs) = sorted_keys(1 << 20, batches.clone());
        assert!(runs >= 2, "expected several runs, got {runs}");
        assert_eq!(spilled, expected);
        // More runs than one merge takes: merged in groups first.
        let many: Vec<RecordBatch> = batches
            .iter()
            .flat_map(|b| {
                [
                    b.clone(),
                    b.clone(),
                    b.clone(),
                    b.clone(),
                    b.clone(),
                    b.clone(),
                    b.clone(),
                ]
            })
            .collect();
        let mut expected_many: Vec<i64> = expected
            .iter()
            .flat_map(|k| std::iter::repeat_n(*k, 7))
            .collect();
        expected_many.sort();
        let (merged, runs) = sorted_keys(1 << 20, many);
        assert!(
            runs > MAX_FAN_IN,
            "expected more than {MAX_FAN_IN} runs, got {runs}"
        );
        assert_eq!(merged, expected_many);
    }

    /// Rows of key `k` and a 1 KiB payload that names its key.
    fn wide(keys: &[i64]) -> RecordBatch {
        let payloads: Vec<String> = keys.iter().map(|k| format!("{k:>1024}")).collect();
        RecordBatch::try_new(
            batch(vec![0]).schema(),
            vec![
                Arc::new(Int64Array::from(keys.to_vec())),
                Arc::new(StringArray::from(payloads)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_merge_of_wide_rows_stays_within_half_the_budget() {
        let budget = 1 << 20;
        let mut sorter = ExternalSorter::new(wide(&[0]).schema(), vec![0], budget, None).unwrap();
        let mut expected: Vec<i64> = Vec::new();
        // 40,000 rows of ~1 KiB through a 1 MiB budget: ~40 runs, merged in groups first.
        for b in 0..80 {
            let keys: Vec<i64> = (0..500)
                .map(|i| (i * 7919 + b * 104_729) % 50_000)
                .collect();
            expected.extend(&keys);
            sorter.push(wide(&keys)).unwrap();
        }
        expected.sort();
        assert!(
            sorter.spilled_runs() > MAX_FAN_IN,
            "{}",
            sorter.spilled_runs()
        );
        let mut stream = sorter.finish().unwrap();
        let mut got = Vec::new();
        loop {
            let Inner::Merge(merger) = &stream.inner else {
                panic!("expected a merge of spilled runs");
            };
            let held: usize = merger
                .sources
                .iter()
                .map(RecordBatch::get_array_memory_size)
                .sum();
            assert!(held <= budget / 2, "the merge holds {held} bytes");
            let Some(b) = stream.next() else { break };
            let b = b.unwrap();
            let k = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let v = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
            for r in 0..b.num_rows() {
                assert_eq!(v.value(r).trim_start(), k.value(r).to_string());
                got.push(k.value(r));
            }
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn queue_keeps_arrival_order_in_memory_and_spilled() {
        let batches: Vec<RecordBatch> = (0..30)
            .map(|i| batch((i * 1000..(i + 1) * 1000).rev().collect()))
            .collect();
        let expected: Vec<i64> = (0..30)
            .flat_map(|i| (i * 1000..(i + 1) * 1000).rev())
            .collect();
        for (budget, spills) in [(1 << 30, false), (64 << 10, true)] {
            let mut queue = SpillQueue::new(batches[0].schema(), budget, None).unwrap();
            for b in &batches {
                queue.push(b.clone()).unwrap();
            }
            assert_eq!(queue.spilled(), spills);
            let got: Vec<i64> = queue
                .finish()
                .unwrap()
                .flat_map(|b| {
                    b.unwrap()
                        .column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .values()
                        .to_vec()
                })
                .collect();
            assert_eq!(got, expected);
        }
    }
}
