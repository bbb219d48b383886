//! CSV: the header and a bounded sample give each input's columns and types; arrow's CSV
//! reader parses the rest in batches. A value that does not parse is named by line and column.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use arrow_csv::reader::Format;
use arrow_schema::{Schema, SchemaRef};
use regex::Regex;

use super::infer::at_micros;
use super::{BatchBudget, BatchSender, send};
use crate::error::{FloeError, Result};
use crate::progress::Progress;

/// The CSV dialect of a load's inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Field separator (default `,`; a tab for `.tsv` files).
    pub delimiter: Option<u8>,
    /// Whether the first line names the columns (otherwise they are `column_1`, ...).
    pub header: bool,
    pub quote: u8,
    /// Escape character inside quoted fields (default: none; a doubled quote is a quote).
    pub escape: Option<u8>,
    /// Values read as null. Empty: only empty fields.
    pub nulls: Vec<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: None,
            header: true,
            quote: b'"',
            escape: None,
            nulls: Vec::new(),
        }
    }
}

impl CsvOptions {
    fn delimiter_for(&self, path: &Path) -> u8 {
        let tsv = path
            .to_str()
            .is_some_and(|p| p.to_ascii_lowercase().contains(".tsv"));
        self.delimiter.unwrap_or(if tsv { b'\t' } else { b',' })
    }

    fn null_regex(&self) -> Result<Option<Regex>> {
        if self.nulls.is_empty() {
            return Ok(None);
        }
        let alternatives: Vec<String> = self.nulls.iter().map(|n| regex::escape(n)).collect();
        Regex::new(&format!("^(?:{})$", alternatives.join("|")))
            .map(Some)
            .map_err(|e| FloeError::InvalidOption(format!("null markers: {e}")))
    }

    fn format(&self, path: &Path) -> Result<Format> {
        let mut format = Format::default()
            .with_header(self.header)
            .with_delimiter(self.delimiter_for(path))
            .with_quote(self.quote);
        if let Some(escape) = self.escape {
            format = format.with_escape(escape);
        }
        if let Some(regex) = self.null_regex()? {
            format = format.with_null_regex(regex);
        }
        Ok(format)
    }
}

/// The columns (header) and types (sampled lines) of one input from its first lines.
pub(super) fn infer(head: &[u8], path: &Path, options: &CsvOptions) -> Result<Schema> {
    let (schema, _) = options
        .format(path)?
        .infer_schema(std::io::Cursor::new(head), None)
        .map_err(|e| FloeError::InputLine {
            path: path.to_path_buf(),
            line: 1,
            reason: format!("cannot infer a schema: {e}"),
        })?;
    Ok(at_micros(schema))
}

/// Parses all of `reader` with `schema` (the input's columns in header order) and sends the
/// batches, each of about `batch_rows` rows.
pub(super) fn read(
    reader: impl BufRead,
    path: &Path,
    schema: SchemaRef,
    options: &CsvOptions,
    batch_rows: usize,
    tx: &BatchSender,
    progress: &Progress,
) -> Result<()> {
    let origin: Arc<str> = Arc::from(path.display().to_string());
    let batches = arrow_csv::ReaderBuilder::new(schema.clone())
        .with_format(options.format(path)?)
        .with_batch_size(batch_rows.max(1))
        .build_buffered(reader)
        .map_err(|e| parse_error(path, &schema, options, &e))?;
    for batch in batches {
        progress.check_cancelled()?;
        let batch = batch.map_err(|e| parse_error(path, &schema, options, &e))?;
        progress.add_input_rows(batch.num_rows() as u64);
        if !send(tx, batch, &origin) {
            return Ok(());
        }
    }
    Ok(())
}

/// Rows per batch for an input whose sampled lines average `line_bytes`.
pub(super) fn batch_rows(budget: BatchBudget, head: &[u8]) -> usize {
    let lines = head.iter().filter(|b| **b == b'\n').count().max(1);
    let line_bytes = (head.len() / lines).max(1);
    let max_rows = budget.max_rows.max(1);
    (budget.max_bytes / line_bytes).clamp(max_rows.min(1024), max_rows)
}

/// arrow's error with the line (1-based, in the file, counting the header) and the column name.
fn parse_error(
    path: &Path,
    schema: &Schema,
    options: &CsvOptions,
    error: &arrow_schema::ArrowError,
) -> FloeError {
    let text = error.to_string();
    let text = text.strip_prefix("Parser error: ").unwrap_or(&text);
    // arrow numbers data records from 1 and columns from 0.
    let record = Regex::new(r" at line (\d+)").expect("a valid pattern");
    let line = record
        .captures(text)
        .and_then(|c| c[1].parse::<u64>().ok())
        .map(|n| n + u64::from(options.header));
    let text = record.replace(text, "");
    let column = Regex::new(r"column (\d+)").expect("a valid pattern");
    let reason = column
        .replace(&text, |c: &regex::Captures| {
            match c[1]
                .parse::<usize>()
                .ok()
                .and_then(|i| schema.fields().get(i))
            {
                Some(field) => format!("column '{}'", field.name()),
                None => c[0].to_string(),
            }
        })
        .into_owned();
    match line {
        Some(line) => FloeError::InputLine {
            path: path.to_path_buf(),
            line,
            reason,
        },
        None => FloeError::InputRead {
            path: path.to_path_buf(),
            row_group: None,
            reason,
        },
    }
}
