//! `floe compact`, `floe expire`, `floe remove-orphans` and `floe inspect`: flags in, one
//! library call, a report out.

use std::path::PathBuf;

use anyhow::Result;
use floe::ops::compact::{CompactBuilder, DEFAULT_MIN_INPUT_FILES};
use floe::ops::expire::{ExpireBuilder, FileKind, older_than_now};
use floe::ops::inspect::{TableReport, inspect};
use floe::ops::orphans::RemoveOrphansBuilder;
use floe::{Catalog, CatalogConfig};
use floe::{LoadOptions, WriteOptions};

/// Which catalog a maintenance command opens (as `floe load`).
#[derive(clap::Args, Debug)]
pub struct CatalogArgs {
    /// Catalog name from .pyiceberg.yaml / PYICEBERG_CATALOG__* (default: `default`, the embedded one).
    #[arg(long, env = "FLOE_CATALOG")]
    catalog: Option<String>,
    /// Use the embedded SQLite catalog in DIR.
    #[arg(long, value_name = "DIR")]
    warehouse: Option<PathBuf>,
}

impl CatalogArgs {
    pub async fn open(&self) -> Result<Catalog> {
        let config = CatalogConfig::resolve(self.catalog.as_deref(), self.warehouse.as_deref())?;
        Ok(Catalog::open(config).await?)
    }
}

#[derive(clap::Args, Debug)]
pub struct ExpireArgs {
    /// Table: namespace.table.
    table: String,
    /// Snapshots older than this may expire: a duration (5d, 12h, 30m, 90s, 2w) or a timestamp
    /// (2026-12-01T00:00:00Z, 2026-12-01). A branch's own max-snapshot-age-ms wins.
    #[arg(long, default_value = "5d", value_name = "DURATION|TIMESTAMP")]
    older_than: String,
    /// Every branch keeps at least its last N snapshots (a branch's own min-snapshots-to-keep
    /// wins). Tagged snapshots are always kept; refs are never removed.
    #[arg(long, default_value_t = 1, value_name = "N")]
    retain_last: usize,
    /// List what would be removed (one line per file) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object with the summary on stdout.
    #[arg(long)]
    json: bool,
    /// Where the file sweep's bounded sort spills (default: the system temp directory).
    #[arg(long, value_name = "DIR")]
    spill_dir: Option<PathBuf>,
    #[command(flatten)]
    catalog: CatalogArgs,
}

pub async fn expire(args: ExpireArgs) -> Result<()> {
    let ident = floe::parse_table_ident(&args.table)?;
    let older_than = older_than_now(&args.older_than)?;
    let catalog = args.catalog.open().await?;
    let list = args.dry_run && !args.json;
    let summary = ExpireBuilder::new(&catalog, ident)
        .older_than_ms(older_than)
        .retain_last(args.retain_last)
        .dry_run(args.dry_run)
        .with_spill_dir(args.spill_dir.clone())
        .with_listener(Box::new(move |kind, path| {
            if list {
                println!("would delete {} {path}", kind_name(kind));
            } else {
                tracing::info!(file = %path, kind = kind_name(kind), "deleted");
            }
        }))
        .execute()
        .await
        .map_err(|e| anyhow::Error::new(e).context(format!("expire of {} failed", args.table)))?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{}", summary.message);
    }
    Ok(())
}

fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::ManifestList => "manifest-list",
        FileKind::Manifest => "manifest",
        FileKind::Data => "data",
        FileKind::PositionDeletes => "position-deletes",
        FileKind::EqualityDeletes => "equality-deletes",
    }
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Table: namespace.table.
    table: String,
    /// Every snapshot: id, time, operation, load id, added/removed counts.
    #[arg(long)]
    snapshots: bool,
    /// Files per partition: data and delete files, rows, bytes, small files.
    #[arg(long)]
    partitions: bool,
    /// Every live file of the current snapshot (with --json: one JSON object per line).
    #[arg(long)]
    files: bool,
    /// The snapshot log: when main pointed at which snapshot.
    #[arg(long)]
    history: bool,
    /// Print the whole report as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    catalog: CatalogArgs,
}

pub async fn inspect_table(args: InspectArgs) -> Result<()> {
    let ident = floe::parse_table_ident(&args.table)?;
    let catalog = args.catalog.open().await?;
    if args.files {
        let json = args.json;
        let mut failed = None;
        floe::ops::inspect::for_each_file(&catalog, &ident, |f| {
            let line = if json {
                serde_json::to_string(&f)
                    .map_err(|e| failed.get_or_insert(e.to_string()))
                    .unwrap_or_default()
            } else {
                format!(
                    "{:<16} {:>10} {:>12}  {}  {}",
                    f.content, f.rows, f.bytes, f.partition, f.path
                )
            };
            println!("{line}");
        })
        .await?;
        if let Some(e) = failed {
            anyhow::bail!("cannot print a file: {e}");
        }
        return Ok(());
    }
    let report = inspect(&catalog, &ident).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    print_overview(&report);
    if args.snapshots {
        print_snapshots(&report);
    }
    if args.partitions {
        print_partitions(&report);
    }
    if args.history {
        println!("\n{:<26} {:<20}  in main", "time", "snapshot");
        for h in &report.history {
            let time = report
                .snapshots
                .iter()
                .find(|s| s.snapshot_id == h.snapshot_id)
                .map_or_else(|| h.timestamp_ms.to_string(), |s| s.time.clone());
            println!(
                "{time:<26} {:<20}  {}",
                h.snapshot_id, h.is_current_ancestor
            );
        }
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_overview(r: &TableReport) {
    let f = &r.files;
    println!("table      {} (format v{})", r.table, r.format_version);
    println!("location   {}", r.location);
    println!(
        "snapshot   {:?} of {} snapshots",
        r.current_snapshot_id,
        r.snapshots.len()
    );
    for reference in &r.refs {
        println!(
            "ref        {} ({}) -> {}",
            reference.name, reference.kind, reference.snapshot_id
        );
    }
    let columns: Vec<String> = r.schema["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let ty = c["type"]
                .as_str()
                .map_or_else(|| c["type"].to_string(), str::to_string);
            format!("{} {ty}", c["name"].as_str().unwrap_or("?"))
        })
        .collect();
    println!("schema     {}", columns.join(", "));
    println!("partition  {}", r.partition_spec["fields"]);
    println!(
        "data       {} files, {} rows, {:.1} MiB; {} small (< 75% of {:.0} MiB)",
        f.data_files,
        f.data_rows,
        mib(f.data_bytes),
        f.small_data_files,
        mib(r.target_file_size)
    );
    println!(
        "deletes    {} position-delete files, {} equality-delete files, {} rows, {:.1} MiB",
        f.position_delete_files,
        f.equality_delete_files,
        f.delete_rows,
        mib(f.delete_bytes)
    );
    println!("partitions {}", r.partitions.len());
}

fn print_snapshots(r: &TableReport) {
    println!(
        "\n{:<20} {:<24} {:<10} {:>12} {:>12}  load id",
        "snapshot", "time", "operation", "added rows", "deleted rows"
    );
    for s in &r.snapshots {
        let get = |k: &str| s.summary.get(k).cloned().unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:<24} {:<10} {:>12} {:>12}  {}{}",
            s.snapshot_id,
            s.time,
            s.operation,
            get("added-records"),
            get("deleted-records"),
            s.load_id.as_deref().unwrap_or("-"),
            if s.in_main { "" } else { "  (not in main)" }
        );
    }
}

fn print_partitions(r: &TableReport) {
    println!(
        "\n{:>8} {:>12} {:>10} {:>8} {:>8}  partition",
        "files", "rows", "MiB", "small", "deletes"
    );
    for p in &r.partitions {
        let f = &p.files;
        println!(
            "{:>8} {:>12} {:>10.1} {:>8} {:>8}  {}",
            f.data_files,
            f.data_rows,
            mib(f.data_bytes),
            f.small_data_files,
            f.position_delete_files + f.equality_delete_files,
            p.partition
        );
    }
}

#[derive(clap::Args, Debug)]
pub struct CompactArgs {
    /// Table: namespace.table.
    table: String,
    /// A partition's small files (below 75% of the target size) are rewritten once it has at
    /// least N of them; files with deletes are always rewritten.
    #[arg(long, default_value_t = DEFAULT_MIN_INPUT_FILES, value_name = "N")]
    min_input_files: usize,
    /// Target data file size, e.g. 512MiB (default: table property write.target-file-size-bytes, else 512MiB).
    #[arg(long, value_parser = crate::parse_bytes, value_name = "SIZE")]
    target_file_size: Option<u64>,
    /// Only these partitions: partition field names and values as `floe inspect --partitions`
    /// shows them, e.g. "tenant=a, event_day=2026-12-01".
    #[arg(long = "where", value_name = "FIELD=VALUE,...")]
    only: Option<floe::ops::compact::PartitionMatch>,
    /// Idempotency key, as for `floe load`: a rerun with the same id is a no-op.
    #[arg(long)]
    load_id: Option<String>,
    /// Where bounded sorts spill to disk (default: the system temp directory).
    #[arg(long, value_name = "DIR")]
    spill_dir: Option<PathBuf>,
    /// Print one JSON object with the summary on stdout.
    #[arg(long)]
    json: bool,
    /// Never draw a progress bar (log lines are printed on non-terminals anyway).
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    catalog: CatalogArgs,
}

pub async fn compact(args: CompactArgs) -> Result<()> {
    let ident = floe::parse_table_ident(&args.table)?;
    let catalog = args.catalog.open().await?;
    let progress = std::sync::Arc::new(floe::Progress::default());
    let mut options = LoadOptions::default()
        .with_progress(progress.clone())
        .with_write_options(WriteOptions {
            target_file_size: args.target_file_size,
            spill_dir: args.spill_dir.clone(),
            ..WriteOptions::default()
        });
    if let Some(id) = &args.load_id {
        options = options.with_load_id(id.clone());
    }
    let mut builder = CompactBuilder::new(&catalog, ident)
        .with_options(options)
        .min_input_files(args.min_input_files);
    if let Some(only) = args.only.clone() {
        builder = builder.only_partitions(only);
    }
    let signals = crate::cancel_on_signals(progress);
    let summary = builder.execute().await;
    signals.abort();
    let summary = summary.map_err(|e| {
        let context = match &e {
            floe::FloeError::CommitStateUnknown { load_id, .. } => format!(
                "compaction of {} may or may not have landed; its files are kept. Rerun exactly this to settle it: {}",
                args.table,
                crate::rerun_command(load_id)
            ),
            _ => format!("compaction of {} failed; the table is unchanged", args.table),
        };
        anyhow::Error::new(e).context(context)
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "{} [{:.1}s]",
            summary.message,
            summary.duration_ms as f64 / 1000.0
        );
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct RemoveOrphansArgs {
    /// Table: namespace.table.
    table: String,
    /// Only files last modified before this may go: a duration (3d, 12h, 30m) or a timestamp.
    /// Never lower it below the longest load that may be running: its files are not referenced
    /// until it commits.
    #[arg(long, default_value = "3d", value_name = "DURATION|TIMESTAMP")]
    older_than: String,
    /// List the orphans (one line per file) and delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object with the summary on stdout.
    #[arg(long)]
    json: bool,
    /// Where the search's bounded sort spills (default: the system temp directory).
    #[arg(long, value_name = "DIR")]
    spill_dir: Option<PathBuf>,
    #[command(flatten)]
    catalog: CatalogArgs,
}

pub async fn remove_orphans(args: RemoveOrphansArgs) -> Result<()> {
    let ident = floe::parse_table_ident(&args.table)?;
    let older_than = older_than_now(&args.older_than)?;
    let catalog = args.catalog.open().await?;
    let list = args.dry_run && !args.json;
    let summary = RemoveOrphansBuilder::new(&catalog, ident)
        .older_than_ms(older_than)
        .dry_run(args.dry_run)
        .with_spill_dir(args.spill_dir.clone())
        .with_listener(Box::new(move |orphan| {
            if list {
                println!("would delete {} ({} bytes)", orphan.path, orphan.bytes);
            } else {
                tracing::info!(file = %orphan.path, "deleted");
            }
        }))
        .execute()
        .await
        .map_err(|e| {
            anyhow::Error::new(e).context(format!("removing orphans of {} failed", args.table))
        })?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{}", summary.message);
    }
    Ok(())
}
