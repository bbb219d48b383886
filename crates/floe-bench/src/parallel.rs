//! The 2-core floor for a re-encoding loader: a plain arrow-rs Parquet-to-Parquet rewrite that
//! decodes on one thread while the columns of the previous row group are encoded on `threads`
//! others.
//!
//! A reader thread decodes every input in order (8,192-row batches across row groups) into a
//! channel of two batches. The main thread gathers them into row groups and hands each whole
//! group to the encoding thread (a channel of one group), which encodes the group's columns on
//! `threads` scoped threads, each taking the next unencoded column as it finishes one, and
//! appends the chunks in column order to one output file. Row groups aim at floe's byte limit
//! (8 MiB encoded): the first holds 32,768 rows, later ones as many as the previous group's
//! bytes per row allow. Same codec and dictionary limit as `floe-bench rewrite`.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory,
    compute_leaves,
};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

const READ_BATCH_ROWS: usize = 8192;
const FIRST_GROUP_ROWS: usize = 32_768;

fn read_inputs(inputs: Vec<PathBuf>, tx: SyncSender<Result<RecordBatch>>) -> Result<()> {
    for input in inputs {
        let file = File::open(&input).with_context(|| format!("opening {}", input.display()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
            .with_batch_size(READ_BATCH_ROWS)
            .build()?;
        for batch in reader {
            if tx.send(batch.map_err(Into::into)).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// One column of a row group: its writer and its leaves, batch by batch.
type ColumnTask = Mutex<Option<(ArrowColumnWriter, Vec<ArrowLeafColumn>)>>;

/// Encodes one row group's columns on `threads` threads; chunks in column order.
fn encode_group(
    schema: &SchemaRef,
    writers: Vec<ArrowColumnWriter>,
    group: &[RecordBatch],
    threads: usize,
) -> Result<Vec<ArrowColumnChunk>> {
    let mut leaves: Vec<Vec<ArrowLeafColumn>> = writers.iter().map(|_| Vec::new()).collect();
    for batch in group {
        let mut leaf = 0;
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            for l in compute_leaves(field, column)? {
                leaves[leaf].push(l);
                leaf += 1;
            }
        }
    }
    let tasks: Vec<ColumnTask> = writers
        .into_iter()
        .zip(leaves)
        .map(|task| Mutex::new(Some(task)))
        .collect();
    let chunks: Vec<Mutex<Option<ArrowColumnChunk>>> =
        tasks.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || -> Result<()> {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(task) = tasks.get(i) else {
                return Ok(());
            };
            let (mut writer, leaves) = task.lock().expect("task").take().expect("taken once");
            for leaf in &leaves {
                writer.write(leaf)?;
            }
            *chunks[i].lock().expect("chunk") = Some(writer.close()?);
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1)).map(|_| s.spawn(work)).collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| anyhow!("an encoder panicked"))?)
    })?;
    chunks
        .into_iter()
        .map(|c| {
            c.into_inner()
                .expect("chunk")
                .ok_or_else(|| anyhow!("a column was not encoded"))
        })
        .collect()
}

/// The encoding thread: row groups in, one file out.
fn encode_groups(
    schema: SchemaRef,
    target: PathBuf,
    props: Arc<WriterProperties>,
    threads: usize,
    groups: Receiver<Vec<RecordBatch>>,
    rows_per_group: SyncSender<usize>,
) -> Result<()> {
    let parquet_schema = ArrowSchemaConverter::new()
        .with_coerce_types(props.coerce_types())
        .convert(&schema)?;
    let max_bytes = props.max_row_group_bytes().unwrap_or(usize::MAX) as u64;
    let mut writer = SerializedFileWriter::new(
        File::create(&target)?,
        parquet_schema.root_schema_ptr(),
        props,
    )?;
    let factory = ArrowRowGroupWriterFactory::new(&writer, schema.clone());
    for (index, group) in groups.into_iter().enumerate() {
        let writers = factory.create_column_writers(index)?;
        let chunks = encode_group(&schema, writers, &group, threads)?;
        let mut row_group = writer.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        let meta = row_group.close()?;
        let bytes = meta.compressed_size().max(1) as u64;
        let rows = (max_bytes * meta.num_rows() as u64 / bytes).max(1024);
        // The gatherer may be gone after the last group.
        let _ = rows_per_group.try_send(rows as usize);
    }
    writer.close()?;
    Ok(())
}

/// Rewrites `inputs` (same schema) into `out/rewrite-00000.parquet`.
pub fn rewrite(
    out: PathBuf,
    inputs: Vec<PathBuf>,
    threads: usize,
    props: WriterProperties,
) -> Result<()> {
    std::fs::create_dir_all(&out)?;
    let first = inputs.first().ok_or_else(|| anyhow!("no inputs"))?;
    let schema = ParquetRecordBatchReaderBuilder::try_new(File::open(first)?)?
        .schema()
        .clone();
    let (batch_tx, batches) = sync_channel(2);
    let reader = std::thread::spawn(move || read_inputs(inputs, batch_tx));
    let (group_tx, group_rx) = sync_channel::<Vec<RecordBatch>>(1);
    let (rows_tx, rows_rx) = sync_channel::<usize>(4);
    let target = out.join("rewrite-00000.parquet");
    let props = Arc::new(props);
    let encoder = {
        let schema = schema.clone();
        std::thread::spawn(move || encode_groups(schema, target, props, threads, group_rx, rows_tx))
    };
    let mut group_rows = FIRST_GROUP_ROWS;
    let mut group = Vec::new();
    let mut rows = 0;
    for batch in batches {
        let batch = batch?;
        rows += batch.num_rows();
        group.push(batch);
        if rows >= group_rows {
            if group_tx.send(std::mem::take(&mut group)).is_err() {
                break;
            }
            rows = 0;
            if let Ok(n) = rows_rx.try_recv() {
                group_rows = n;
            }
        }
    }
    if !group.is_empty() {
        let _ = group_tx.send(group);
    }
    drop(group_tx);
    encoder
        .join()
        .map_err(|_| anyhow!("the encoder panicked"))??;
    reader.join().map_err(|_| anyhow!("the reader panicked"))?
}
