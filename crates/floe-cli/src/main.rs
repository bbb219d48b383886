//! The `floe` command line. Thin by design: flags -> one floe library call -> a report.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod maintain;
mod matching;

use anyhow::Result;
use clap::{Parser, Subcommand};
use floe::ops::merge_spec::{DuplicateKeys, MergeMode, MergeSpec, MergeStrategy, OnDuplicateKeys};
use floe::ops::{LoadKind, LoadMode, SchemaEvolution};
use floe::source::{CsvOptions, InputFormat, InputOptions};
use floe::{
    BatchBudget, Catalog, CatalogConfig, LoadOptions, Progress, ProgressSnapshot, Source, Stage,
    WriteOptions, ops,
};

#[derive(Parser, Debug)]
#[command(
    name = "floe",
    version,
    about = "Stream data of any size into Apache Iceberg tables: bounded memory, one snapshot per load.",
    long_about = "Stream data of any size into Apache Iceberg tables: bounded memory, one atomic snapshot per load.\n\n\
With no configuration, floe uses an embedded SQLite catalog at ./warehouse/catalog.db with table data under \
./warehouse (pyiceberg's SqlCatalog opens the same file). Named catalogs come from .pyiceberg.yaml \
($PYICEBERG_HOME, $HOME or ./) and PYICEBERG_CATALOG__<NAME>__<KEY> environment variables: \
type sql (SQLite) or rest (an Iceberg REST catalog: uri, warehouse, credential or token), with \
table files on local disk or S3 (s3.endpoint, s3.access-key-id, s3.secret-access-key, s3.region, \
s3.path-style-access)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load Parquet files into an Iceberg table (created from the first input if missing).
    #[command(
        after_help = "Examples:\n  floe load analytics.events data/2026-11-*.parquet\n  \
floe load analytics.events data/ --mode replace --json\n  \
floe load analytics.events big.parquet --load-id run-42   # rerun: no duplicate"
    )]
    Load(Box<LoadArgs>),
    /// Remove old snapshots in one commit, then the files only they reach (manifest lists,
    /// manifests, data and delete files). Load ids of expired snapshots are forgotten.
    #[command(after_help = "Examples:\n  floe expire analytics.events --dry-run\n  \
floe expire analytics.events --older-than 1d --retain-last 10 --json")]
    Expire(maintain::ExpireArgs),
    /// Show what a table holds: schema, spec, refs, snapshots, files per partition.
    Inspect(maintain::InspectArgs),
    /// Rewrite each partition's small files and files with deletes into target-size files, in
    /// one `replace` snapshot (the rows stay the same).
    Compact(maintain::CompactArgs),
    /// Delete files under the table's location that no metadata references and that are older
    /// than --older-than (default 3 days): what crashed or killed runs left behind.
    RemoveOrphans(maintain::RemoveOrphansArgs),
    /// Write the live rows whose key appears in the inputs (chosen columns) to a local
    /// Parquet file; reads only. The matching runs as a merge's does, in bounded memory.
    #[command(
        after_help = "Example:\n  floe match shop.orders batch.parquet --key order_id \
--columns order_id,status -o matched.parquet"
    )]
    Match(matching::MatchArgs),
}

#[derive(clap::Args, Debug)]
struct LoadArgs {
    /// Target table: namespace.table (nested namespaces allowed: a.b.table).
    table: String,
    /// Input files, directories (every file of the format inside, sorted), glob patterns, or
    /// `-` for stdin (with --format). Parquet, JSON lines (.jsonl/.ndjson/.json), CSV
    /// (.csv/.tsv) or Arrow IPC (.arrow/.feather/.ipc); gzip or zstd compressed text is
    /// recognised by its first bytes.
    #[arg(required = true)]
    inputs: Vec<String>,
    #[command(flatten)]
    read: InputArgs,
    /// Print the schema the inputs are read with (inferred for JSON lines and CSV) as JSON,
    /// and exit without touching the table.
    #[arg(long)]
    dry_run: bool,
    /// What the load does to the table.
    #[arg(long, value_enum, default_value_t = LoadMode::Append)]
    mode: LoadMode,
    /// Merge key columns, comma separated (with --mode merge).
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    key: Vec<String>,
    /// Merge strategy.
    #[arg(long, value_enum, default_value_t = MergeStrategy::Upsert)]
    strategy: MergeStrategy,
    /// How a merge removes matched rows.
    #[arg(long, value_enum, default_value_t = MergeMode::CopyOnWrite)]
    merge_mode: MergeMode,
    /// Load rows where this column is true (boolean) or not null (other types) delete the live
    /// row with their key and are not inserted.
    #[arg(long, value_name = "COLUMN")]
    hard_delete_column: Option<String>,
    /// Duplicate keys in one load: the winner is the row with the highest (desc, default) or
    /// lowest (asc) value of COLUMN, instead of the last occurrence.
    #[arg(long, value_name = "COLUMN[:asc|desc]")]
    dedup_sort: Option<String>,
    /// With --mode merge: files (or directories, globs) holding only the key columns, in any
    /// input format (known by the file name). Every table row with one of these keys is
    /// deleted before the load merges; an input may then be an empty file.
    #[arg(long, value_name = "PATH")]
    delete_keys: Vec<String>,
    /// With --mode merge: files holding only the key columns, the only keys the inputs' rows
    /// may have; rows with other keys are left out (read like --delete-keys).
    #[arg(long, value_name = "PATH")]
    only_keys: Vec<String>,
    /// What to do with duplicate keys inside one load (upsert, insert-only).
    #[arg(long, value_enum, default_value_t = OnDuplicateKeys::Last)]
    on_duplicate_keys: OnDuplicateKeys,
    /// Memory a merge's sorts may use before spilling to disk (a quarter each: the load's
    /// keys and rows, the table's keys, the deletes, and the partition clustering of the rows
    /// a copy-on-write rewrites).
    #[arg(long, value_parser = parse_bytes, default_value = "256MiB", value_name = "SIZE")]
    memory_limit: u64,
    /// With --mode replace: remove only the live files of the partitions present in the load
    /// (dynamic partition overwrite).
    #[arg(long, requires = "mode")]
    replace_partitions: bool,
    /// Partition spec for a table floe creates, e.g. "day(event_time), bucket(16, user_id)".
    /// Transforms: identity, year, month, day, hour, bucket(N, c), truncate(W, c), void.
    #[arg(long, value_name = "SPEC")]
    partition_by: Option<String>,
    /// Location of a table floe creates (default: <warehouse>/<namespace>/<table>, or the
    /// REST catalog's choice).
    #[arg(long, value_name = "URI")]
    table_location: Option<String>,
    /// A property of a table floe creates, e.g. write.parquet.compression-codec=zstd
    /// (repeatable).
    #[arg(long = "table-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    table_properties: Vec<(String, String)>,
    /// Partitioned tables: most data files open at once; past it the least recently written
    /// is finished, so memory stays bounded however many partitions a load touches.
    #[arg(long, default_value_t = 16)]
    max_open_files: usize,
    /// Unpartitioned loads: threads encoding the columns of each row group (default: one per
    /// core, at most 2). Files are written one at a time, rows in input order, which keeps
    /// key ranges per file narrow for later merges.
    #[arg(long, value_name = "N")]
    writers: Option<usize>,
    /// Decode and re-encode every input row. By default, append and replace into an
    /// unpartitioned table copy the column chunks of Parquet inputs that already have the
    /// table's codec and types byte for byte, and re-encode only the columns that differ.
    #[arg(long)]
    rewrite: bool,
    /// Where bounded sorts spill to disk (default: the system temp directory).
    #[arg(long, value_name = "DIR")]
    spill_dir: Option<PathBuf>,
    /// What the load may change in the table's schema.
    #[arg(long, value_enum, default_value_t = SchemaEvolution::AddColumns)]
    schema_evolution: SchemaEvolution,
    /// Idempotency key: if a snapshot with this load id is in the main branch's history (as far
    /// as it survives snapshot expiry), or still in the table's metadata though main was rolled
    /// back past it, the load is a no-op. Default: a fresh UUID, so a retry must pass the id
    /// the first run printed.
    #[arg(long)]
    load_id: Option<String>,
    /// Print one JSON object with the load summary on stdout.
    #[arg(long)]
    json: bool,
    /// Catalog name from .pyiceberg.yaml / PYICEBERG_CATALOG__* (default: `default`, the embedded one).
    #[arg(long, env = "FLOE_CATALOG")]
    catalog: Option<String>,
    /// Use the embedded SQLite catalog in DIR (catalog.db and table data).
    #[arg(long, value_name = "DIR")]
    warehouse: Option<PathBuf>,
    /// Target data file size, e.g. 512MiB (default: table property write.target-file-size-bytes, else 512MiB).
    #[arg(long, value_parser = parse_bytes, value_name = "SIZE")]
    target_file_size: Option<u64>,
    /// Parquet codec: zstd, snappy, gzip, brotli, lz4, uncompressed (default: table property, else zstd).
    #[arg(long)]
    compression: Option<String>,
    /// Parquet row group size, e.g. 64MiB (default: table property write.parquet.row-group-size-bytes,
    /// else 8MiB). A row group is buffered in memory until it is full.
    #[arg(long, value_parser = parse_bytes, value_name = "SIZE")]
    row_group_size: Option<u64>,
    /// Compression level (codec specific).
    #[arg(long)]
    compression_level: Option<i32>,
    /// Maximum rows per batch read from the input.
    #[arg(long, default_value_t = 65536)]
    batch_rows: usize,
    /// Target decoded bytes per batch; wide rows get fewer rows per batch.
    #[arg(long, value_parser = parse_bytes, default_value = "2MiB", value_name = "SIZE")]
    batch_bytes: u64,
    /// Never draw a progress bar (log lines are printed on non-terminals anyway).
    #[arg(long)]
    no_progress: bool,
}

/// How the inputs are read (format, schema, CSV dialect).
#[derive(clap::Args, Debug)]
pub(crate) struct InputArgs {
    /// Input format (default: from the file names; needed for stdin).
    #[arg(long, value_enum)]
    format: Option<InputFormat>,
    /// Schema of JSON lines or CSV inputs: a file holding an Iceberg schema as JSON (as table
    /// metadata does) or an Arrow schema as arrow-rs serialises one. Default: inferred from
    /// the first --infer-rows records of each input.
    #[arg(long, value_name = "FILE")]
    schema: Option<PathBuf>,
    /// Records of each JSON lines or CSV input sampled to infer its schema. Into an existing
    /// table, columns it has are parsed as its types; the sample types only new columns.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    infer_rows: usize,
    /// CSV field separator: one character, or `tab` (default `,`; a tab for .tsv files).
    #[arg(long, value_parser = parse_char, value_name = "CHAR")]
    delimiter: Option<u8>,
    /// CSV inputs have no header line: columns are named column_1, column_2, ...
    #[arg(long)]
    no_header: bool,
    /// CSV quote character.
    #[arg(long, value_parser = parse_char, default_value = "\"", value_name = "CHAR")]
    quote: u8,
    /// CSV escape character inside quoted fields (default: none; "" is a quote).
    #[arg(long, value_parser = parse_char, value_name = "CHAR")]
    escape: Option<u8>,
    /// A CSV value read as null, e.g. NA (repeatable). Default: empty fields are null.
    #[arg(long = "null", value_name = "TEXT")]
    nulls: Vec<String>,
}

impl InputArgs {
    pub(crate) fn options(&self, budget: BatchBudget) -> Result<InputOptions> {
        let schema = match &self.schema {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read --schema {}: {e}", path.display()))?;
                Some(floe::source::schema_from_json(
                    &text,
                    &path.display().to_string(),
                )?)
            }
            None => None,
        };
        Ok(InputOptions {
            format: self.format,
            schema,
            infer_rows: self.infer_rows.max(1),
            csv: CsvOptions {
                delimiter: self.delimiter,
                header: !self.no_header,
                quote: self.quote,
                escape: self.escape,
                nulls: self.nulls.clone(),
            },
            budget,
        })
    }
}

fn parse_char(s: &str) -> Result<u8, String> {
    match s {
        "tab" | "\\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        _ => Err(format!(
            "expected one ASCII character (or `tab`), got '{s}'"
        )),
    }
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    floe::parse_size(s)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Load(args) => load(*args).await,
            Command::Expire(args) => maintain::expire(args).await,
            Command::Inspect(args) => maintain::inspect_table(args).await,
            Command::Compact(args) => maintain::compact(args).await,
            Command::RemoveOrphans(args) => maintain::remove_orphans(args).await,
            Command::Match(args) => matching::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            let cancelled = e
                .chain()
                .any(|c| matches!(c.downcast_ref(), Some(floe::FloeError::Cancelled)));
            if cancelled {
                std::process::ExitCode::from(EXIT_CANCELLED as u8)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

/// The error and its causes on one line. floe's errors (and iceberg's) already print their
/// sources, so a cause whose text is already there is not repeated.
fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        // Object-store retries are routine; they are reported only if they finally fail.
        0 => "warn,opendal=error",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn load(args: LoadArgs) -> Result<()> {
    let ident = floe::parse_table_ident(&args.table)?;
    let kind = LoadKind::from_mode(args.mode, args.replace_partitions, merge_spec(&args)?)?;
    let progress = Arc::new(Progress::default());
    let budget = BatchBudget {
        max_rows: args.batch_rows.max(1),
        max_bytes: args.batch_bytes as usize,
        ..BatchBudget::default()
    };
    let source = Source::open(&args.inputs, &args.read.options(budget)?, progress.clone())?;
    let keys = |paths: &[String]| -> Result<Option<Source>> {
        if paths.is_empty() {
            return Ok(None);
        }
        let read = InputOptions {
            budget,
            ..Default::default()
        };
        Ok(Some(Source::open(
            paths,
            &read,
            Arc::new(Progress::default()),
        )?))
    };
    let (delete_keys, only_keys) = (keys(&args.delete_keys)?, keys(&args.only_keys)?);
    if args.dry_run {
        return print_summary(&serde_json::to_string_pretty(&dry_run(&source)?)?);
    }
    let config = CatalogConfig::resolve(args.catalog.as_deref(), args.warehouse.as_deref())?;
    let catalog = Catalog::open(config).await?;
    let options = load_options(&args, progress.clone());
    let reporter = Reporter::start(progress.clone(), !args.no_progress);
    let signals = cancel_on_signals(progress.clone());
    let input = ops::LoadInput {
        rows: source,
        delete_keys,
        only_keys,
    };
    let result = ops::run(&catalog, ident, kind, options, input).await;
    reporter.stop();
    signals.abort();
    let summary = result.map_err(|e| {
        let context = match &e {
            floe::FloeError::CommitStateUnknown { load_id, .. } => format!(
                "load into {} may or may not have landed; its files are kept. Rerun exactly this to settle it: {}",
                args.table,
                rerun_command(load_id)
            ),
            _ => format!("load into {} failed; the table is unchanged", args.table),
        };
        anyhow::Error::new(e).context(context)
    })?;
    let line = if args.json {
        serde_json::to_string(&summary)?
    } else {
        format!(
            "{} [{:.1}s]",
            summary.message,
            summary.duration_ms as f64 / 1000.0
        )
    };
    print_summary(&line)
}

/// What `--dry-run` prints: the schema the inputs are read with, and whether it was inferred.
fn dry_run(source: &Source) -> Result<serde_json::Value> {
    Ok(serde_json::json!({
        "input": source.name,
        "inferred": source.inferred_schema()?.is_some(),
        "schema": source.schema_json()?,
    }))
}

/// Prints the summary line. The load has landed by now: a reader that went away (`| head`)
/// is not an error, and must not become a panic.
fn print_summary(line: &str) -> Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout(), "{line}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// The merge settings of the flags (used by `--mode merge` only).
fn merge_spec(args: &LoadArgs) -> Result<MergeSpec> {
    Ok(MergeSpec {
        keys: args.key.clone(),
        strategy: args.strategy,
        mode: args.merge_mode,
        hard_delete_column: args.hard_delete_column.clone(),
        duplicates: DuplicateKeys::from_settings(
            args.dedup_sort.as_deref(),
            args.on_duplicate_keys,
        )?,
        memory_limit: args.memory_limit as usize,
    })
}

fn load_options(args: &LoadArgs, progress: Arc<Progress>) -> LoadOptions {
    let options = LoadOptions::default()
        .with_progress(progress)
        .with_schema_evolution(args.schema_evolution)
        .with_write_options(WriteOptions {
            target_file_size: args.target_file_size,
            compression: args.compression.clone(),
            compression_level: args.compression_level,
            row_group_bytes: args.row_group_size.map(|n| n as usize),
            max_open_files: Some(args.max_open_files),
            spill_dir: args.spill_dir.clone(),
            // A merge gives it a quarter of --memory-limit; other loads keep the default.
            cluster_sort_bytes: None,
            writers: args.writers,
            rewrite: args.rewrite,
        });
    let options = match &args.load_id {
        Some(id) => options.with_load_id(id.clone()),
        None => options,
    };
    let options = match &args.partition_by {
        Some(spec) => options.with_partition_by(spec.clone()),
        None => options,
    };
    let options = options.with_table_properties(args.table_properties.iter().cloned().collect());
    match &args.table_location {
        Some(location) => options.with_table_location(location.clone()),
        None => options,
    }
}

/// `KEY=VALUE` of --table-property.
fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("'{text}': expected KEY=VALUE")),
    }
}

/// Ctrl-C or SIGTERM cancels the command (it deletes the files it wrote and exits 130); a
/// second one exits at once. The handlers are in place when this returns; abort the task
/// when the command is done.
pub(crate) fn cancel_on_signals(progress: Arc<Progress>) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return tokio::spawn(async {});
    };
    tokio::spawn(async move {
        for round in 0.. {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            if round > 0 {
                eprintln!(
                    "interrupted again: exiting now; files written so far may be left behind"
                );
                std::process::exit(EXIT_CANCELLED);
            }
            eprintln!(
                "interrupted: stopping and deleting the files written so far (again to exit at once)"
            );
            progress.cancel();
        }
    })
}

/// Exit status of a load stopped by a signal (128 + SIGINT, as shells report it).
const EXIT_CANCELLED: i32 = 130;

/// This very command line with `--load-id ID` (replacing any given), shell-quoted.
pub(crate) fn rerun_command(load_id: &str) -> String {
    let mut words = Vec::new();
    let mut args = std::env::args();
    while let Some(arg) = args.next() {
        if arg == "--load-id" {
            args.next();
        } else if !arg.starts_with("--load-id=") {
            words.push(arg);
        }
    }
    words.push("--load-id".into());
    words.push(load_id.to_string());
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A stage after reading, with its count: "matching keys against the table: 1200/30000 files".
fn stage_line(p: &ProgressSnapshot) -> String {
    match (p.stage_done, p.stage_total) {
        (0, 0) => p.stage.describe().to_string(),
        (done, 0) => format!("{}: {done} files", p.stage.describe()),
        (done, total) => format!("{}: {done}/{total} files", p.stage.describe()),
    }
}

/// Progress on stderr: a bar on a terminal, a log line every few seconds otherwise.
struct Reporter {
    task: tokio::task::JoinHandle<()>,
    bar: Option<indicatif::ProgressBar>,
}

impl Reporter {
    fn start(progress: Arc<Progress>, allow_bar: bool) -> Self {
        let total = progress.snapshot().input_bytes_total;
        let bar = (allow_bar && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}",
                )
                .expect("valid template"),
            );
            bar
        });
        let bar_in_task = bar.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let period = if bar_in_task.is_some() {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(10)
            };
            let mut ticker = tokio::time::interval(period);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let p = progress.snapshot();
                let secs = started.elapsed().as_secs_f64().max(0.001);
                match &bar_in_task {
                    Some(bar) => {
                        // A compaction knows its total only once it has planned.
                        bar.set_length(p.input_bytes_total);
                        bar.set_position(p.input_bytes);
                        bar.set_message(match p.stage {
                            Stage::Reading => {
                                format!("{} rows, {} files read", p.input_rows, p.input_files)
                            }
                            _ => stage_line(&p),
                        });
                    }
                    None if p.stage == Stage::Reading => eprintln!(
                        "progress: {} rows, {:.1}/{:.1} MiB read from {} files, {:.0} rows/s",
                        p.input_rows,
                        p.input_bytes as f64 / 1048576.0,
                        p.input_bytes_total as f64 / 1048576.0,
                        p.input_files,
                        p.input_rows as f64 / secs
                    ),
                    None => eprintln!("progress: {} rows read; {}", p.input_rows, stage_line(&p)),
                }
            }
        });
        Self { task, bar }
    }

    fn stop(self) {
        self.task.abort();
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let e = anyhow::Error::new(floe::FloeError::Io {
            context: "cannot write x".into(),
            source: std::io::Error::other("disk full"),
        })
        .context("load into a.b failed");
        assert_eq!(
            report(&e),
            "load into a.b failed: cannot write x: disk full"
        );
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("0").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
