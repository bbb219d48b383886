//! Encoding on several cores: an unpartitioned load spreads its batches over a few
//! [`TableWriter`]s, each encoding and compressing on its own task into its own files.
//!
//! Parquet encoding (dictionary building, zstd) is the most expensive stage of a load and runs
//! on one thread per writer; with the reader on its own thread this keeps both cores busy.
//! Each writer buffers its own row group, so memory grows by one row group per writer.

use arrow_array::RecordBatch;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::TableWriter;
use crate::error::{FloeError, Result};

type Outcome = (TableWriter, Result<()>);

pub struct ParallelWriter {
    senders: Vec<mpsc::Sender<RecordBatch>>,
    tasks: Vec<JoinHandle<Outcome>>,
    next: usize,
}

impl ParallelWriter {
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
