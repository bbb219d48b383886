//! The data file writers of one load, behind one face: an unpartitioned table's batches go to
//! the column-parallel writer ([`ColumnWriter`]: one file at a time, its columns encoded on
//! the cores); a partitioned table's to a [`TableWriter`] on a task of its own (fanning out by
//! partition). A few `TableWriter`s can also share the batches, each encoding on its own task
//! into its own files.

use arrow_array::RecordBatch;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use arrow_schema::SchemaRef;

use super::TableWriter;
use super::columns::ColumnWriter;
use super::output::FileTarget;
use super::splice::parquet_schema;
use crate::error::{FloeError, Result};

type Outcome = (TableWriter, Result<()>);

/// Where a load's conformed batches are written.
pub enum ParallelWriter {
    Tables(TableWriters),
    Columns(ColumnWriter),
}

impl ParallelWriter {
    /// `TableWriter`s taking the batches in turn, each on its own task.
    pub fn new(writers: Vec<TableWriter>) -> Self {
        Self::Tables(TableWriters::new(writers))
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

    /// Stops every writer; their open files are closed and left to the load's ledger.
    pub async fn abort(&mut self) {
        match self {
            Self::Tables(w) => w.abort().await,
            Self::Columns(w) => w.abort().await,
        }
    }
}

/// Several `TableWriter`s, each on its own task, taking batches in turn.
pub struct TableWriters {
    senders: Vec<mpsc::Sender<RecordBatch>>,
    tasks: Vec<JoinHandle<Outcome>>,
    next: usize,
}

impl TableWriters {
    /// Starts one task per writer.
    pub fn new(writers: Vec<TableWriter>) -> Self {
        let mut senders = Vec::new();
        let mut tasks = Vec::new();
        for mut writer in writers {
            let (tx, mut rx) = mpsc::channel::<RecordBatch>(1);
            senders.push(tx);
            tasks.push(tokio::spawn(async move {
                let mut result = Ok(());
                while let Some(batch) = rx.recv().await {
                    if result.is_ok() {
                        result = writer.write(batch).await;
                    }
                }
                (writer, result)
            }));
        }
        Self {
            senders,
            tasks,
            next: 0,
        }
    }

    /// Hands a batch to the next writer (waits while that writer is busy).
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let k = self.next;
        self.next = (self.next + 1) % self.senders.len();
        if self.senders[k].send(batch).await.is_err() {
            return Err(FloeError::TaskFailed {
                task: "a data file writer".into(),
                reason: "it stopped taking batches".into(),
            });
        }
        Ok(())
    }

    async fn join(&mut self) -> Vec<std::result::Result<Outcome, tokio::task::JoinError>> {
        self.senders.clear();
        let mut out = Vec::new();
        for task in self.tasks.drain(..) {
            out.push(task.await);
        }
        out
    }

    /// Finishes every writer (their files go to the writers' sink); on any failure every file
    /// of the load is deleted.
    pub async fn close(&mut self) -> Result<()> {
        let outcomes = self.join().await;
        let mut writers = Vec::new();
        let mut error = None;
        for outcome in outcomes {
            match outcome {
                Ok((writer, result)) => {
                    if let Err(e) = result {
                        error.get_or_insert(e);
                    }
                    writers.push(writer);
                }
                Err(e) => {
                    error.get_or_insert(FloeError::TaskFailed {
                        task: "a data file writer".into(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        if error.is_none() {
            for writer in writers.iter_mut() {
                if let Err(e) = writer.close().await {
                    error = Some(e);
                    break;
                }
            }
        }
        match error {
            None => Ok(()),
            Some(e) => {
                for writer in writers.iter_mut() {
                    writer.abort().await;
                }
                Err(e)
            }
        }
    }

    /// Stops every writer and deletes every file they started (nothing once closed).
    pub async fn abort(&mut self) {
        for (mut writer, _) in self.join().await.into_iter().flatten() {
            writer.abort().await;
        }
    }
}
