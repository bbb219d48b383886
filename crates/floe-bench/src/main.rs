//! floe-bench: deterministic dlt-like test data, and the bare Parquet rewrite baseline.
//!
//! `floe-bench gen` writes N rows of the 20-column dataset floe's benchmarks and demo use;
//! `floe-bench rewrite` decodes Parquet and writes it again with floe's codec settings and no
//! Iceberg at all: the floor a re-encoding loader can reach; `--threads 2` encodes columns on
//! both cores while a reader thread decodes (see `parallel`).

mod parallel;

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::builder::{
    BooleanBuilder, Decimal128Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, RecordBatchReader};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use clap::{Parser, Subcommand};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Parser)]
#[command(name = "floe-bench", about = "Benchmark data and baselines for floe")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate dlt-like Parquet data (20 columns, ~130 MB of zstd Parquet per 1M rows).
    Gen {
        /// Output directory (created).
        #[arg(long)]
        out: PathBuf,
        /// Total rows.
        #[arg(long)]
        rows: u64,
        /// Number of files to spread the rows over.
        #[arg(long, default_value_t = 1)]
        files: u64,
        /// Rows per input row group / batch.
        #[arg(long, default_value_t = 100_000)]
        batch: usize,
        /// Compression of the generated files: zstd (level 1) or snappy (dlt's files).
        #[arg(long, default_value = "zstd")]
        compression: String,
        /// Seed; the same seed gives the same data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// First id (to make disjoint datasets).
        #[arg(long, default_value_t = 0)]
        first_id: i64,
    },
    /// Decode Parquet files and write them again with floe's defaults (zstd(1), 64 KiB
    /// dictionaries, 8 MiB row groups), no Iceberg: the baseline. One thread (64k-row batches,
    /// one output per input) unless `--threads` says more.
    Rewrite {
        #[arg(long)]
        out: PathBuf,
        /// Encoder threads. Above 1: a reader thread decodes every input and the columns of
        /// each row group are encoded on this many threads into one output file.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        inputs: Vec<PathBuf>,
    },
}

fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("event_time", ts.clone(), true),
        Field::new("inserted_at", ts, true),
        Field::new("event_type", DataType::Utf8, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("device", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, true),
        Field::new("user_id", DataType::Int64, true),
        Field::new("session_id", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(10, 3), true),
        Field::new("price", DataType::Decimal128(10, 3), true),
        Field::new("description", DataType::Utf8, true),
        Field::new("payload", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
        Field::new("ratio", DataType::Float64, true),
        Field::new("is_active", DataType::Boolean, true),
        Field::new("is_test", DataType::Boolean, true),
        Field::new("quantity", DataType::Int32, true),
        Field::new("note", DataType::Utf8, true),
        Field::new("version", DataType::Int32, true),
    ]))
}

const EVENT_TYPES: [&str; 6] = ["click", "view", "purchase", "signup", "logout", "search"];
const COUNTRIES: [&str; 8] = ["US", "DE", "FR", "GB", "BR", "IN", "JP", "CA"];
const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];
const STATUSES: [&str; 4] = ["ok", "pending", "failed", "retry"];

fn text(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn batch(rng: &mut StdRng, first_id: i64, rows: usize) -> Result<RecordBatch> {
    let base_ts: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z in microseconds
    let mut id = Int64Builder::with_capacity(rows);
    let mut event_time = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
    let mut inserted_at = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
    let mut strings: Vec<StringBuilder> = (0..8).map(|_| StringBuilder::new()).collect();
    let mut user_id = Int64Builder::with_capacity(rows);
    let mut amount = Decimal128Builder::with_capacity(rows).with_precision_and_scale(10, 3)?;
    let mut price = Decimal128Builder::with_capacity(rows).with_precision_and_scale(10, 3)?;
    let mut score = Float64Builder::with_capacity(rows);
    let mut ratio = Float64Builder::with_capacity(rows);
    let mut is_active = BooleanBuilder::with_capacity(rows);
    let mut is_test = BooleanBuilder::with_capacity(rows);
    let mut quantity = Int32Builder::with_capacity(rows);
    let mut version = Int32Builder::with_capacity(rows);
    for i in 0..rows {
        let key = first_id + i as i64;
        id.append_value(key);
        let t = base_ts + key * 1_000_000 + rng.random_range(0..1_000_000);
        event_time.append_value(t);
        inserted_at.append_option(
            rng.random_bool(0.95)
                .then_some(t + rng.random_range(0..60_000_000)),
        );
        strings[0].append_value(EVENT_TYPES[rng.random_range(0..EVENT_TYPES.len())]);
        strings[1].append_option(
            rng.random_bool(0.97)
                .then(|| COUNTRIES[rng.random_range(0..COUNTRIES.len())]),
        );
        strings[2].append_value(DEVICES[rng.random_range(0..DEVICES.len())]);
        strings[3].append_value(STATUSES[rng.random_range(0..STATUSES.len())]);
        user_id.append_value(rng.random_range(0..1_000_000));
        strings[4].append_value(format!(
            "{:016x}{:016x}",
            rng.random::<u64>(),
            rng.random::<u64>()
        ));
        amount.append_option(
            rng.random_bool(0.9)
                .then(|| rng.random_range(0..100_000_000i128)),
        );
        price.append_value(rng.random_range(0..10_000_000i128));
        let desc_len = rng.random_range(80..120);
        strings[5].append_value(text(rng, desc_len));
        let payload_len = rng.random_range(60..140);
        strings[6].append_option(rng.random_bool(0.8).then(|| text(rng, payload_len)));
        score.append_value(rng.random::<f64>() * 100.0);
        ratio.append_option(rng.random_bool(0.9).then(|| rng.random::<f64>()));
        is_active.append_value(rng.random_bool(0.7));
        is_test.append_option(rng.random_bool(0.5).then(|| rng.random_bool(0.05)));
        quantity.append_value(rng.random_range(1..100));
        let note_len = rng.random_range(10..40);
        strings[7].append_option(rng.random_bool(0.3).then(|| text(rng, note_len)));
        version.append_value(1);
    }
    let mut s = strings.into_iter();
    let mut next = || Arc::new(s.next().expect("string column").finish()) as ArrayRef;
    let (event_type, country, device, status, session_id, description, payload, note) = (
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
    );
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(event_time.finish()),
        Arc::new(inserted_at.finish()),
        event_type,
        country,
        device,
        status,
        Arc::new(user_id.finish()),
        session_id,
        Arc::new(amount.finish()),
        Arc::new(price.finish()),
        description,
        payload,
        Arc::new(score.finish()),
        Arc::new(ratio.finish()),
        Arc::new(is_active.finish()),
        Arc::new(is_test.finish()),
        Arc::new(quantity.finish()),
        note,
        Arc::new(version.finish()),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

fn gen_props(compression: &str, row_group_rows: usize) -> Result<WriterProperties> {
    let codec = match compression {
        "zstd" => Compression::ZSTD(ZstdLevel::try_new(1)?),
        "snappy" => Compression::SNAPPY,
        other => anyhow::bail!("--compression {other}: use zstd or snappy"),
    };
    Ok(WriterProperties::builder()
        .set_compression(codec)
        .set_max_row_group_row_count(Some(row_group_rows))
        .build())
}

/// floe's default encoding: zstd(1), 8 MiB row groups, 64 KiB dictionaries
/// (floe::write::DEFAULT_DICT_BYTES), so the floor is encoded exactly as floe encodes.
fn floe_props() -> Result<WriterProperties> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_max_row_group_bytes(Some(8 << 20))
        .set_dictionary_page_size_limit(64 * 1024)
        .build())
}

struct GenArgs {
    rows: u64,
    files: u64,
    batch_rows: usize,
    compression: String,
    seed: u64,
    first_id: i64,
}

fn generate(out: PathBuf, args: GenArgs) -> Result<()> {
    let GenArgs {
        rows,
        files,
        batch_rows,
        compression,
        seed,
        first_id,
    } = args;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let files = files.max(1);
    let per_file = rows.div_ceil(files);
    let mut next_id = first_id;
    let mut left = rows;
    for f in 0..files {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(f));
        let path = out.join(format!("part-{f:05}.parquet"));
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer =
            ArrowWriter::try_new(file, schema(), Some(gen_props(&compression, batch_rows)?))?;
        let mut in_file = per_file.min(left);
        left -= in_file;
        while in_file > 0 {
            let n = (batch_rows as u64).min(in_file) as usize;
            writer.write(&batch(&mut rng, next_id, n)?)?;
            next_id += n as i64;
            in_file -= n as u64;
        }
        writer.close()?;
    }
    Ok(())
}

fn rewrite(out: PathBuf, inputs: Vec<PathBuf>, threads: usize) -> Result<()> {
    if threads > 1 {
        return parallel::rewrite(out, inputs, threads, floe_props()?);
    }
    std::fs::create_dir_all(&out)?;
    for (i, input) in inputs.iter().enumerate() {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(input)?)?
            .with_batch_size(65536)
            .build()?;
        let target = out.join(format!("rewrite-{i:05}.parquet"));
        let mut writer =
            ArrowWriter::try_new(File::create(&target)?, reader.schema(), Some(floe_props()?))?;
        for batch in reader {
            writer.write(&batch?)?;
        }
        writer.close()?;
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Gen {
            out,
            rows,
            files,
            batch,
            compression,
            seed,
            first_id,
        } => generate(
            out,
            GenArgs {
                rows,
                files,
                batch_rows: batch,
                compression,
                seed,
                first_id,
            },
        ),
        Command::Rewrite {
            out,
            threads,
            inputs,
        } => rewrite(out, inputs, threads),
    }
}
