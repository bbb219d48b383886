//! `floe match`: the live rows of a table whose key appears in the inputs, written to a local
//! Parquet file (reads only).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use floe::ops::{MatchBuilder, MatchSummary};
use floe::{Progress, Source};

use crate::maintain::CatalogArgs;

#[derive(clap::Args, Debug)]
pub struct MatchArgs {
    /// Table: namespace.table.
    table: String,
    /// Files holding the keys to look up (any input format, known by the file name), or `-`
    /// for stdin (with --format); only their key columns are read.
    #[arg(required = true)]
    inputs: Vec<String>,
    #[command(flatten)]
    read: crate::InputArgs,
    /// Key columns, comma separated (as a merge's --key).
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS", required = true)]
    key: Vec<String>,
    /// Columns of the matched rows to write, comma separated (default: the key columns).
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    columns: Vec<String>,
    /// The Parquet file to write (replaced; empty when nothing matches).
    #[arg(long, short, value_name = "PATH")]
    output: PathBuf,
    /// Memory the sorts may use before spilling to disk.
    #[arg(long, value_parser = crate::parse_bytes, default_value = "256MiB", value_name = "SIZE")]
    memory_limit: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    catalog: CatalogArgs,
}

pub async fn run(args: MatchArgs) -> Result<()> {
    let progress = Arc::new(Progress::default());
    let signals = crate::cancel_on_signals(progress.clone());
    let summary = find(&args, progress).await;
    signals.abort();
    let summary = summary?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "{} of {} keys matched {} rows in {} files ({} files compared) -> {}",
            args.table,
            summary.keys,
            summary.rows,
            summary.files_matched,
            summary.files_scanned,
            args.output.display()
        );
    }
    Ok(())
}

async fn find(args: &MatchArgs, progress: Arc<Progress>) -> Result<MatchSummary> {
    let ident = floe::parse_table_ident(&args.table)?;
    let read = args.read.options(Default::default())?;
    let source = Source::open(&args.inputs, &read, progress.clone())?;
    let catalog = args.catalog.open().await?;
    let mut builder = MatchBuilder::new(&catalog, ident, args.key.clone())
        .with_memory_limit(args.memory_limit as usize)
        .with_progress(progress.clone());
    if !args.columns.is_empty() {
        builder = builder.with_columns(args.columns.clone());
    }
    Ok(builder.write_parquet(source, &args.output).await?)
}
