//! Column-parallel encoding for unpartitioned tables: one data file at a time, the columns of
//! each row group encoded on a few threads.
//!
//! Parquet encoding (dictionaries, compression) is most of a re-encoding load's CPU. Rather
//! than several writers that each buffer a row group of a file of their own, one writer on a
//! blocking thread cuts row groups and hands each batch's leaf columns to `threads` encoder
//! threads, each owning a share of the row group's column writers: the costliest columns of
//! the last row group first, each to the encoder with the least work. Encoders report their
//! buffered bytes after every batch; the writer reads those reports a few batches late (so the
//! encoders never wait for it), closes the row group at the table's row-group size, and
//! appends its chunks in column order while the encoders work on the next batch, rolling the
//! file at the target size. Memory holds about two row groups' encoded pages, the output
//! buffer and a few batches per encoder; rows keep their input order, one file at a time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory,
    compute_leaves,
};
use parquet::errors::ParquetError;
use parquet::schema::types::SchemaDescPtr;
use tokio::sync::mpsc;

use super::output::{FileTarget, OpenFile};
use super::parallel::{Feeder, stopped};
use crate::error::{FloeError, Result};

/// The writer's face on the load's async side.
pub struct ColumnWriter {
    feeder: Feeder<Result<()>>,
    /// Set before the batches end when the open file is to be finished, not abandoned.
    finish: Arc<AtomicBool>,
}

impl ColumnWriter {
    /// Starts the writer's thread and `threads` encoders (inside the tokio runtime).
    pub fn start(
        target: FileTarget,
        arrow: SchemaRef,
        parquet: SchemaDescPtr,
        threads: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel(1);
        let finish = Arc::new(AtomicBool::new(false));
        let files = ColumnFiles::new(target, arrow, parquet, threads);
        let done = finish.clone();
        let task = tokio::task::spawn_blocking(move || files.run(rx, &done));
        Self {
            feeder: Feeder::new(tx, task),
            finish,
        }
    }

    /// Hands over one conformed batch (waits while the writer is busy).
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if self.feeder.send(batch).await {
            return Ok(());
        }
        // The writer stopped: its own error says why.
        self.join().await?;
        Err(stopped())
    }

    async fn join(&mut self) -> Result<()> {
        self.feeder.join().await.unwrap_or(Ok(Ok(())))?
    }

    /// Finishes the open file (its data file goes to the sink).
    pub async fn close(&mut self) -> Result<()> {
        self.finish.store(true, Ordering::SeqCst);
        self.join().await
    }

    /// Stops the writer; an open file is closed as it is and left to the load's ledger.
    pub async fn abort(&mut self) {
        if let Err(e) = self.join().await {
            tracing::debug!(error = %e, "stopping the data file writer of a failed load");
        }
    }
}

/// Replies the writer may leave unread (the encoders' slack).
const REPORT_LAG: usize = 2;

/// The writer's thread: row groups, files, encoders.
struct ColumnFiles {
    target: FileTarget,
    arrow: SchemaRef,
    parquet: SchemaDescPtr,
    encoders: Vec<Encoder>,
    /// Column writers for every row group (from the first file; any file of these columns
    /// takes their chunks).
    factory: Option<ArrowRowGroupWriterFactory>,
    /// Row groups started so far; the current one is `groups - 1`.
    groups: usize,
    current: Option<OpenFile>,
    group: Option<Group>,
    /// Replies the encoders owe, in order: each encoder answers every job in turn.
    owed: VecDeque<Owed>,
    /// Per leaf: the encoder that owns it in the current row group.
    owner: Vec<usize>,
    /// Per leaf: nanoseconds its encoding took in the last row group closed.
    costs: Vec<u64>,
    /// Encoded bytes of the row groups closed since the last one that ends a file.
    file_bytes: usize,
}

/// The row group being encoded.
#[derive(Default)]
struct Group {
    rows: usize,
    /// Encoded bytes as last reported.
    bytes: usize,
}

/// A reply the encoders owe: the bytes of a row group after a batch, or its chunks (and
/// whether the file ends with them).
enum Owed {
    Bytes(usize),
    Chunks { ends_file: bool },
}

impl ColumnFiles {
    fn new(target: FileTarget, arrow: SchemaRef, parquet: SchemaDescPtr, threads: usize) -> Self {
        Self {
            encoders: (0..threads.max(1)).map(|_| Encoder::start()).collect(),
            target,
            arrow,
            parquet,
            factory: None,
            groups: 0,
            current: None,
            group: None,
            owed: VecDeque::new(),
            owner: Vec::new(),
            costs: Vec::new(),
            file_bytes: 0,
        }
    }

    fn run(mut self, mut batches: mpsc::Receiver<RecordBatch>, finish: &AtomicBool) -> Result<()> {
        while let Some(batch) = batches.blocking_recv() {
            if let Err(e) = self.write(&batch) {
                self.abandon();
                return Err(e);
            }
        }
        if !finish.load(Ordering::SeqCst) {
            self.abandon();
            return Ok(());
        }
        let finished = self.finish();
        self.abandon();
        finished
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.group.is_none() {
            self.start_group()?;
        }
        let mut shares: Vec<Vec<ArrowLeafColumn>> =
            self.encoders.iter().map(|_| Vec::new()).collect();
        let mut leaf = 0;
        for (field, column) in self.arrow.fields().iter().zip(batch.columns()) {
            for l in compute_leaves(field, column).map_err(|e| self.error(e))? {
                shares[self.owner[leaf]].push(l);
                leaf += 1;
            }
        }
        self.send_all(shares.into_iter().map(Job::Write))?;
        self.owed.push_back(Owed::Bytes(self.groups - 1));
        self.group.as_mut().expect("group started").rows += batch.num_rows();
        while self.owed.len() > REPORT_LAG {
            self.read_owed()?;
        }
        let group = self.group.as_ref().expect("group started");
        let props = &self.target.properties;
        let target = self.target.target_file_size.min(usize::MAX as u64) as usize;
        let ends_file = self.file_bytes.saturating_add(group.bytes) >= target;
        if ends_file
            || group.bytes >= props.max_row_group_bytes().unwrap_or(usize::MAX)
            || group.rows >= props.max_row_group_row_count().unwrap_or(usize::MAX)
        {
            self.close_group(ends_file)?;
        }
        Ok(())
    }

    /// Closes the current row group: its chunks come back (and go to the file) while the
    /// next group encodes.
    fn close_group(&mut self, ends_file: bool) -> Result<()> {
        let bytes = self.group.take().map_or(0, |g| g.bytes);
        self.file_bytes = if ends_file {
            0
        } else {
            self.file_bytes + bytes
        };
        self.send_all(self.encoders.iter().map(|_| Job::Close))?;
        self.owed.push_back(Owed::Chunks { ends_file });
        Ok(())
    }

    fn send_all(&self, jobs: impl Iterator<Item = Job>) -> Result<()> {
        self.encoders
            .iter()
            .zip(jobs)
            .try_for_each(|(e, job)| e.send(job))
    }

    /// Hands the encoders a new row group's writers, the columns spread by their last cost.
    fn start_group(&mut self) -> Result<()> {
        if self.factory.is_none() {
            let open = self.target.open(&self.arrow, &self.parquet)?;
            self.factory = Some(ArrowRowGroupWriterFactory::new(
                &open.writer,
                self.arrow.clone(),
            ));
            self.current = Some(open);
        }
        let factory = self.factory.as_ref().expect("factory");
        let writers = factory
            .create_column_writers(self.groups)
            .map_err(|e| self.error(e))?;
        self.groups += 1;
        self.owner = spread(&self.costs, writers.len(), self.encoders.len());
        let mut shares: Vec<Vec<(usize, ArrowColumnWriter)>> =
            self.encoders.iter().map(|_| Vec::new()).collect();
        for (i, w) in writers.into_iter().enumerate() {
            shares[self.owner[i]].push((i, w));
        }
        self.send_all(shares.into_iter().map(Job::Start))?;
        self.group = Some(Group::default());
        Ok(())
    }

    /// Reads the oldest reply owed, from every encoder.
    fn read_owed(&mut self) -> Result<()> {
        let Some(owed) = self.owed.pop_front() else {
            return Ok(());
        };
        let mut bytes = 0;
        let mut chunks = Vec::new();
        for encoder in &self.encoders {
            match (&owed, encoder.reply()?) {
                (Owed::Bytes(_), Reply::Bytes(b)) => bytes += b,
                (Owed::Chunks { .. }, Reply::Chunks(c)) => chunks.extend(c),
                _ => return Err(out_of_turn()),
            }
        }
        match owed {
            Owed::Bytes(group) if group + 1 == self.groups => {
                if let Some(g) = self.group.as_mut() {
                    g.bytes = bytes;
                }
                Ok(())
            }
            Owed::Bytes(_) => Ok(()),
            Owed::Chunks { ends_file } => self.append(chunks, ends_file),
        }
    }

    /// Appends a closed row group to the open file (opening one if needed); finishes the file
    /// when the group ends it or the file reached the target size.
    fn append(
        &mut self,
        mut chunks: Vec<(usize, ArrowColumnChunk, u64)>,
        ends_file: bool,
    ) -> Result<()> {
        chunks.sort_by_key(|(i, _, _)| *i);
        self.costs = chunks.iter().map(|(_, _, nanos)| *nanos).collect();
        if self.current.is_none() {
            self.current = Some(self.target.open(&self.arrow, &self.parquet)?);
        }
        let open = self.current.as_mut().expect("open file");
        let path = open.path.clone();
        let error = |e: ParquetError| FloeError::DataFileWrite {
            path: path.clone(),
            reason: e.to_string(),
        };
        let mut row_group = open.writer.next_row_group().map_err(error)?;
        for (_, chunk, _) in chunks {
            chunk.append_to_row_group(&mut row_group).map_err(error)?;
        }
        row_group.close().map_err(error)?;
        if ends_file || open.writer.bytes_written() as u64 >= self.target.target_file_size {
            let open = self.current.take().expect("open file");
            self.target.finish(open)?;
        }
        Ok(())
    }

    /// Writes out the last row groups and finishes the open file.
    fn finish(&mut self) -> Result<()> {
        if self.group.as_ref().is_some_and(|g| g.rows > 0) {
            self.close_group(false)?;
        }
        while !self.owed.is_empty() {
            self.read_owed()?;
        }
        match self.current.take() {
            Some(open) if open.writer.flushed_row_groups().is_empty() => {
                // Opened for the factory, never written: not a data file.
                open.abandon();
                Ok(())
            }
            Some(open) => self.target.finish(open),
            None => Ok(()),
        }
    }

    /// Closes the open file of a failed load as it is (the ledger deletes it).
    fn abandon(&mut self) {
        if let Some(open) = self.current.take() {
            open.abandon();
        }
    }

    fn error(&self, e: ParquetError) -> FloeError {
        FloeError::DataFileWrite {
            path: self
                .current
                .as_ref()
                .map(|o| o.path.clone())
                .unwrap_or_default(),
            reason: e.to_string(),
        }
    }
}

/// Which encoder owns each of `leaves` columns: the costliest first, each to the encoder with
/// the least work so far; round robin while no costs are known.
fn spread(costs: &[u64], leaves: usize, encoders: usize) -> Vec<usize> {
    if costs.len() != leaves {
        return (0..leaves).map(|i| i % encoders).collect();
    }
    let mut order: Vec<usize> = (0..leaves).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(costs[i]));
    let mut load = vec![0u64; encoders];
    let mut owner = vec![0; leaves];
    for i in order {
        let e = (0..encoders).min_by_key(|&e| load[e]).unwrap_or(0);
        load[e] += costs[i];
        owner[i] = e;
    }
    owner
}

fn out_of_turn() -> FloeError {
    FloeError::TaskFailed {
        task: "a column encoder".into(),
        reason: "it answered out of turn".into(),
    }
}

enum Job {
    /// The column writers of a new row group, with their leaf indices.
    Start(Vec<(usize, ArrowColumnWriter)>),
    /// This encoder's leaves of one batch, in the order of its writers.
    Write(Vec<ArrowLeafColumn>),
    /// Close the row group's writers and send back their chunks.
    Close,
}

enum Reply {
    Bytes(usize),
    /// Each column's chunk with its leaf index and the nanoseconds its encoding took.
    Chunks(Vec<(usize, ArrowColumnChunk, u64)>),
}

/// One encoder thread; it stops when its job channel is dropped.
struct Encoder {
    jobs: Sender<Job>,
    replies: Receiver<std::result::Result<Reply, ParquetError>>,
}

impl Encoder {
    fn start() -> Self {
        let (jobs, job_rx) = channel::<Job>();
        let (reply_tx, replies) = channel();
        std::thread::spawn(move || encode(job_rx, reply_tx));
        Self { jobs, replies }
    }

    fn send(&self, job: Job) -> Result<()> {
        self.jobs.send(job).map_err(|_| encoder_gone())
    }

    fn reply(&self) -> Result<Reply> {
        self.replies
            .recv()
            .map_err(|_| encoder_gone())?
            .map_err(|e| FloeError::DataFileWrite {
                path: String::new(),
                reason: format!("encoding a column: {e}"),
            })
    }
}

fn encoder_gone() -> FloeError {
    FloeError::TaskFailed {
        task: "a column encoder".into(),
        reason: "it stopped".into(),
    }
}

fn encode(jobs: Receiver<Job>, replies: Sender<std::result::Result<Reply, ParquetError>>) {
    // (leaf, writer, nanoseconds spent encoding it)
    let mut writers: Vec<(usize, ArrowColumnWriter, u64)> = Vec::new();
    for job in jobs {
        let reply = match job {
            Job::Start(w) => {
                writers = w.into_iter().map(|(i, w)| (i, w, 0)).collect();
                continue;
            }
            Job::Write(leaves) => write_leaves(&mut writers, &leaves),
            Job::Close => std::mem::take(&mut writers)
                .into_iter()
                .map(|(i, w, nanos)| Ok((i, w.close()?, nanos)))
                .collect::<std::result::Result<Vec<_>, ParquetError>>()
                .map(Reply::Chunks),
        };
        if replies.send(reply).is_err() {
            return;
        }
    }
}

fn write_leaves(
    writers: &mut [(usize, ArrowColumnWriter, u64)],
    leaves: &[ArrowLeafColumn],
) -> std::result::Result<Reply, ParquetError> {
    let mut bytes = 0;
    for ((_, writer, nanos), leaf) in writers.iter_mut().zip(leaves) {
        let started = Instant::now();
        writer.write(leaf)?;
        *nanos += started.elapsed().as_nanos() as u64;
        bytes += writer.get_estimated_total_bytes();
    }
    Ok(Reply::Bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn costly_columns_are_spread_over_the_encoders() {
        assert_eq!(spread(&[], 5, 2), vec![0, 1, 0, 1, 0]);
        // 9 | 5 + 3 + 1: the two biggest apart, the rest filling the lighter encoder.
        assert_eq!(spread(&[1, 9, 3, 5], 4, 2), vec![1, 0, 1, 1]);
        let owner = spread(&[4, 4, 4, 4, 4, 4], 6, 3);
        for e in 0..3 {
            assert_eq!(owner.iter().filter(|&&o| o == e).count(), 2);
        }
    }
}
