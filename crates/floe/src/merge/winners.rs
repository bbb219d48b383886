//! The winning load rows, written in input order: from the load's spill queue, or read again
//! from the input Parquet files (the first read decoded only the join's columns).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_select::filter::filter_record_batch;
use futures::StreamExt;
use roaring::RoaringTreemap;

use crate::conform::Conformer;
use crate::error::{FloeError, Result, ResultExt};
use crate::progress::Progress;
use crate::source::{BatchBudget, ParquetSource};
use crate::spill::QueueStream;
use crate::write::ParallelWriter;

/// Writes the queued load rows whose input position is in `winners`.
pub(crate) async fn write_winners(
    queue: QueueStream,
    winners: &RoaringTreemap,
    writer: &mut ParallelWriter,
) -> Result<()> {
    let mut seq = 0u64;
    for batch in queue {
        write_selected(batch?, &mut seq, Some(winners), writer).await?;
    }
    Ok(())
}

/// Reads the input files again and writes the rows whose position is in `winners` (every row
/// when `None`).
pub(crate) async fn read_winners(
    files: &[PathBuf],
    budget: BatchBudget,
    conformer: &Conformer,
    winners: Option<&RoaringTreemap>,
    writer: &mut ParallelWriter,
) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    // The first pass counted the input; this one reports nothing.
    let mut stream = ParquetSource::from_files(files.to_vec())
        .with_budget(budget)
        .into_source(Arc::new(Progress::default()))?
        .into_stream();
    let mut seq = 0u64;
    while let Some(item) = stream.next().await {
        let batch = conformer.conform(&item?)?;
        write_selected(batch, &mut seq, winners, writer).await?;
    }
    Ok(())
}

/// Writes the rows of `batch` (input positions from `*seq` on) that are in `winners`.
async fn write_selected(
    batch: RecordBatch,
    seq: &mut u64,
    winners: Option<&RoaringTreemap>,
    writer: &mut ParallelWriter,
) -> Result<()> {
    let n = batch.num_rows() as u64;
    let range = *seq..*seq + n;
    *seq += n;
    let Some(winners) = winners else {
        return writer.write(batch).await;
    };
    match winners.range_cardinality(range.clone()) {
        0 => Ok(()),
        c if c == n => writer.write(batch).await,
        _ => {
            let keep = BooleanArray::from_iter(range.map(|s| Some(winners.contains(s))));
            let kept = filter_record_batch(&batch, &keep)
                .context(|| "cannot select the rows to write".into())?;
            writer.write(kept).await
        }
    }
}

/// Size and modification time of each input, to notice a file changing between two reads.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fingerprints(Vec<(u64, Option<SystemTime>)>);

impl Fingerprints {
    pub fn take(files: &[PathBuf]) -> Result<Self> {
        files
            .iter()
            .map(fingerprint)
            .collect::<Result<_>>()
            .map(Self)
    }

    /// An error naming the first of `files` that no longer matches its fingerprint.
    pub fn check(&self, files: &[PathBuf]) -> Result<()> {
        for (file, before) in files.iter().zip(&self.0) {
            if fingerprint(file)? != *before {
                return Err(FloeError::InputChanged { path: file.clone() });
            }
        }
        Ok(())
    }
}

fn fingerprint(file: &PathBuf) -> Result<(u64, Option<SystemTime>)> {
    let meta = std::fs::metadata(file).map_err(|e| FloeError::InputRead {
        path: file.clone(),
        row_group: None,
        reason: e.to_string(),
    })?;
    Ok((meta.len(), meta.modified().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_changes_between_reads_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = ["a.parquet", "b.parquet"]
            .iter()
            .map(|n| {
                let p = dir.path().join(n);
                std::fs::write(&p, b"1234").unwrap();
                p
            })
            .collect();
        let before = Fingerprints::take(&files).unwrap();
        before.check(&files).unwrap();
        std::fs::write(&files[1], b"123456").unwrap();
        let err = before.check(&files).unwrap_err();
        assert!(
            matches!(&err, FloeError::InputChanged { path } if path == &files[1]),
            "{err}"
        );
    }
}
