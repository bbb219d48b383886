//! Arrow IPC: the file format (`ARROW1` magic, read with its footer) and the stream format
//! (from files, compressed files or stdin). Batches keep the writer's types; ones larger than
//! the row budget are sliced (without copying) before they go downstream.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_ipc::reader::{FileReader, StreamReader};
use arrow_schema::SchemaRef;

use super::inputs::{self, Bytes, Input};
use super::{BatchBudget, BatchSender, send};
use crate::error::{FloeError, Result};
use crate::progress::Progress;

/// An opened IPC input: its schema is known once the header is read.
pub(super) enum IpcReader {
    File(FileReader<BufReader<File>>),
    Stream(StreamReader<Bytes>),
}

impl IpcReader {
    pub fn open(input: &Input, progress: &Arc<Progress>) -> Result<Self> {
        let path = input.path();
        let error = |e: arrow_schema::ArrowError| FloeError::InputRead {
            path: path.clone(),
            row_group: None,
            reason: format!("not a readable Arrow IPC file or stream: {e}"),
        };
        if let Input::File(file) = input
            && is_ipc_file(file)
        {
            let handle = File::open(file).map_err(|e| FloeError::InputRead {
                path: path.clone(),
                row_group: None,
                reason: e.to_string(),
            })?;
            progress.add_input_bytes(handle.metadata().map(|m| m.len()).unwrap_or(0));
            return FileReader::try_new_buffered(handle, None)
                .map(Self::File)
                .map_err(error);
        }
        StreamReader::try_new(inputs::open(input, progress)?, None)
            .map(Self::Stream)
            .map_err(error)
    }

    pub fn schema(&self) -> SchemaRef {
        match self {
            Self::File(r) => r.schema(),
            Self::Stream(r) => r.schema(),
        }
    }

    /// Sends every batch, sliced to at most the budget's rows.
    pub fn read(
        self,
        path: &Path,
        budget: BatchBudget,
        tx: &BatchSender,
        progress: &Progress,
    ) -> Result<()> {
        let batches: Box<dyn Iterator<Item = std::result::Result<RecordBatch, _>>> = match self {
            Self::File(r) => Box::new(r),
            Self::Stream(r) => Box::new(r),
        };
        let max_rows = budget.max_rows.max(1);
        for (index, batch) in batches.enumerate() {
            progress.check_cancelled()?;
            let origin: Arc<str> = Arc::from(format!("{} (batch {index})", path.display()));
            let batch = batch.map_err(|e| FloeError::InputRead {
                path: path.to_path_buf(),
                row_group: None,
                reason: format!("batch {index}: {e}"),
            })?;
            let mut offset = 0;
            while offset < batch.num_rows() {
                let part = batch.slice(offset, max_rows.min(batch.num_rows() - offset));
                offset += part.num_rows();
                progress.add_input_rows(part.num_rows() as u64);
                if !send(tx, part, &origin) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

fn is_ipc_file(path: &Path) -> bool {
    let mut head = [0u8; 6];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == b"ARROW1"
}
