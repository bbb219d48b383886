//! JSON lines: sampled for a schema, then decoded by arrow's JSON decoder in batches of whole
//! lines, so a record that does not parse is named by its line.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};

use super::infer::JsonSample;
use super::{BatchBudget, BatchSender, send};
use crate::error::{FloeError, Result};
use crate::progress::Progress;

/// The schema of the first `rows` records of `head` (the raw lines sampled from an input),
/// unioned onto `known` (the earlier inputs').
pub(super) fn infer(head: &[u8], path: &Path, known: Option<&Schema>) -> Result<Schema> {
    let mut sample = JsonSample::new();
    for (index, line) in head.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| line_error(path, index as u64 + 1, e))?;
        if !value.is_object() {
            return Err(line_error(path, index as u64 + 1, "not a JSON object"));
        }
        sample.push(value);
    }
    sample
        .schema(known)
        .map_err(|e| line_error(path, 1, format!("cannot infer a schema: {e}")))
}

/// Decodes every line of `reader` with `schema` and sends the batches. `inferred_rows` is the
/// sample size, named when a column outside the sample's schema appears.
pub(super) fn read(
    mut reader: impl BufRead,
    path: &Path,
    schema: SchemaRef,
    budget: BatchBudget,
    inferred_rows: Option<usize>,
    tx: &BatchSender,
    progress: &Progress,
) -> Result<()> {
    let origin: Arc<str> = Arc::from(path.display().to_string());
    let mut lines = Lines::new();
    loop {
        progress.check_cancelled()?;
        let more = lines.fill(&mut reader, budget, path)?;
        if lines.records > 0 {
            let batch = decode(&lines, &schema, path, inferred_rows)?;
            progress.add_input_rows(batch.num_rows() as u64);
            if !send(tx, batch, &origin) {
                return Ok(());
            }
        }
        if !more {
            return Ok(());
        }
    }
}

/// The raw lines of one batch, and where they start in the input.
struct Lines {
    bytes: Vec<u8>,
    /// 1-based number of the first line in `bytes`.
    first: u64,
    /// Lines in `bytes`.
    count: u64,
    /// Of those, lines holding a record (not blank).
    records: usize,
}

impl Lines {
    fn new() -> Self {
        Self {
            bytes: Vec::new(),
            first: 1,
            count: 0,
            records: 0,
        }
    }

    /// Refills with the next lines, up to the budget's rows or raw bytes (twice its decoded
    /// bytes: text is larger than its values). Returns false at the end of the input.
    fn fill(
        &mut self,
        reader: &mut impl BufRead,
        budget: BatchBudget,
        path: &Path,
    ) -> Result<bool> {
        self.first += self.count;
        self.bytes.clear();
        (self.count, self.records) = (0, 0);
        let max_rows = budget.max_rows.max(1);
        while self.records < max_rows && self.bytes.len() < 2 * budget.max_bytes {
            let start = self.bytes.len();
            let n = reader
                .read_until(b'\n', &mut self.bytes)
                .map_err(|e| line_error(path, self.first + self.count, e))?;
            if n == 0 {
                return Ok(false);
            }
            self.count += 1;
            if !self.bytes[start..].iter().all(u8::is_ascii_whitespace) {
                self.records += 1;
            }
        }
        Ok(true)
    }

    /// Each line with its 1-based number.
    fn numbered(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.bytes
            .split_inclusive(|b| *b == b'\n')
            .enumerate()
            .map(|(i, line)| (self.first + i as u64, line))
    }
}

/// One batch of `lines`; on failure, the first line that fails on its own is named.
fn decode(
    lines: &Lines,
    schema: &SchemaRef,
    path: &Path,
    inferred_rows: Option<usize>,
) -> Result<arrow_array::RecordBatch> {
    match decode_bytes(&lines.bytes, schema, lines.records) {
        Ok(Some(batch)) => Ok(batch),
        Ok(None) => Err(line_error(path, lines.first, "no records decoded")),
        Err(batch_error) => {
            let failing = lines.numbered().find_map(|(number, line)| {
                decode_bytes(line, schema, 1).err().map(|e| (number, e))
            });
            let (number, error) = failing.unwrap_or((lines.first, batch_error));
            Err(line_error(path, number, explain(&error, inferred_rows)))
        }
    }
}

fn decode_bytes(
    bytes: &[u8],
    schema: &SchemaRef,
    rows: usize,
) -> std::result::Result<Option<arrow_array::RecordBatch>, arrow_schema::ArrowError> {
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.max(1))
        .with_strict_mode(true)
        .with_coerce_primitive(true)
        .build_decoder()?;
    let mut offset = 0;
    while offset < bytes.len() {
        let n = decoder.decode(&bytes[offset..])?;
        if n == 0 {
            break;
        }
        offset += n;
    }
    decoder.flush()
}

/// arrow's message, with what to do when a column is outside the inferred schema.
fn explain(error: &arrow_schema::ArrowError, inferred_rows: Option<usize>) -> String {
    let text = error.to_string();
    let text = text
        .strip_prefix("Json error: ")
        .unwrap_or(&text)
        .to_string();
    match inferred_rows {
        Some(rows) if text.contains("missing from schema") => format!(
            "{text} (the schema was inferred from the first {rows} records of each input: raise --infer-rows, or give --schema)"
        ),
        _ => text,
    }
}

fn line_error(path: &Path, line: u64, reason: impl ToString) -> FloeError {
    FloeError::InputLine {
        path: path.to_path_buf(),
        line,
        reason: reason.to_string(),
    }
}
