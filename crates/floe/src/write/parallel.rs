//! The data file writers of one load, behind one face: an unpartitioned table's batches go to
//! the column-parallel writer ([`ColumnWriter`]: one file at a time, its columns encoded on
//! the cores); a partitioned table's to a [`TableWriter`] on a task of its own (fanning out by
//! partition).

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::TableWriter;
use super::columns::ColumnWriter;
use super::output::FileTarget;
use super::splice::parquet_schema;
use crate::error::{FloeError, Result};

type Outcome = (TableWriter, Result<()>);

/// Where a load's conformed batches are written.
pub enum ParallelWriter {
    Tables(TableTask),
    Columns(ColumnWriter),
}

impl ParallelWriter {
    /// A `TableWriter` (fanning out by partition) on its own task.
    pub fn table(writer: TableWriter) -> Self {
        Self::Tables(TableTask::new(writer))
    }

    /// One column-parallel writer for an unpartitioned table (spec without fields) whose
    /// conformed batches have the columns `arrow`, writing to `target` and encoding on
    /// `threads` threads.
    pub fn columns(target: FileTarget, arrow: SchemaRef, threads: usize) -> Result<Self> {
        let parquet = parquet_schema(&arrow, target.properties.coerce_types())?;
        Ok(Self::Columns(ColumnWriter::start(
            target, arrow, parquet, threads,
        )))
    }

    /// Hands a batch to the writers (waits while they are busy).
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        match self {
            Self::Tables(w) => w.write(batch).await,
            Self::Columns(w) => w.write(batch).await,
        }
    }

    /// Finishes every writer (their files go to the writers' sink).
    pub async fn close(&mut self) -> Result<()> {
        match self {
            Self::Tables(w) => w.close().await,
            Self::Columns(w) => w.close().await,
        }
    }

    /// Runs the partition clustering sort spilled to disk (known once closed).
    pub fn spilled_runs(&self) -> usize {
        match self {
            Self::Tables(w) => w.spilled_runs,
            Self::Columns(_) => 0,
        }
    }

    /// Stops every writer; their open files are closed and left to the load's ledger.
    pub async fn abort(&mut self) {
        match self {
            Self::Tables(w) => w.abort().await,
            Self::Columns(w) => w.abort().await,
        }
    }
}

/// A task fed batches through a channel of one, handing back what it ends with once the
/// channel is closed (both writers of a load run this way, beside the reader and conform).
pub(super) struct Feeder<T> {
    sender: Option<mpsc::Sender<RecordBatch>>,
    task: Option<JoinHandle<T>>,
}

impl<T> Feeder<T> {
    pub(super) fn new(sender: mpsc::Sender<RecordBatch>, task: JoinHandle<T>) -> Self {
        Self {
            sender: Some(sender),
            task: Some(task),
        }
    }

    /// Hands over a batch (waits while the task is busy); false once the task has stopped.
    pub(super) async fn send(&mut self, batch: RecordBatch) -> bool {
        match &self.sender {
            Some(tx) => tx.send(batch).await.is_ok(),
            None => false,
        }
    }

    /// Closes the channel and waits for the task (`None` once joined).
    pub(super) async fn join(&mut self) -> Option<Result<T>> {
        self.sender = None;
        let task = self.task.take()?;
        Some(task.await.map_err(|e| FloeError::TaskFailed {
            task: "a data file writer".into(),
            reason: e.to_string(),
        }))
    }
}

/// The error of a writer that stopped taking batches without saying why.
pub(super) fn stopped() -> FloeError {
    FloeError::TaskFailed {
        task: "a data file writer".into(),
        reason: "it stopped taking batches".into(),
    }
}

/// A `TableWriter` on a task of its own.
pub struct TableTask {
    feeder: Feeder<Outcome>,
    /// Runs its clustering sort spilled, once closed.
    spilled_runs: usize,
}

impl TableTask {
    pub fn new(mut writer: TableWriter) -> Self {
        let (tx, mut rx) = mpsc::channel::<RecordBatch>(1);
        let task = tokio::spawn(async move {
            let mut result = Ok(());
            while let Some(batch) = rx.recv().await {
                if result.is_ok() {
                    result = writer.write(batch).await;
                }
            }
            (writer, result)
        });
        Self {
            feeder: Feeder::new(tx, task),
            spilled_runs: 0,
        }
    }

    /// Hands a batch to the writer (waits while it is busy).
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        match self.feeder.send(batch).await {
            true => Ok(()),
            false => Err(stopped()),
        }
    }

    /// Finishes the writer (its files go to its sink); on failure its open files are closed
    /// and left to the load's ledger.
    pub async fn close(&mut self) -> Result<()> {
        let Some(joined) = self.feeder.join().await else {
            return Ok(());
        };
        let (mut writer, written) = joined?;
        let closed = match written {
            Ok(()) => writer.close().await,
            Err(e) => Err(e),
        };
        self.spilled_runs = writer.spilled_runs();
        if closed.is_err() {
            writer.abort().await;
        }
        closed
    }

    /// Stops the writer; its open files are closed and left to the load's ledger.
    pub async fn abort(&mut self) {
        if let Some(Ok((mut writer, _))) = self.feeder.join().await {
            writer.abort().await;
        }
    }
}
