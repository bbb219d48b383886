//! JSON lines, CSV and Arrow IPC inputs: each input's schema is known before the load plans
//! (IPC headers, or a bounded sample of the first lines), and the inputs are read one after
//! another on the reader thread. Text inputs whose schema was inferred are read as the table's
//! types where the table has the column ([`super::infer::bind`]).

use std::io::{BufRead, Cursor, Read};
use std::path::PathBuf;
use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};

use super::csv::{self, CsvOptions};
use super::infer::{Binding, bind};
use super::inputs::{self, Bytes, Input, InputFormat, Inputs};
use super::ipc::IpcReader;
use super::{BatchBudget, BatchSender, BatchStream, InputOptions, json, spawn_reader};
use crate::error::{FloeError, Result};
use crate::progress::Progress;

/// The inputs of a JSON lines, CSV or IPC load, each with its schema.
pub(crate) struct Records {
    format: InputFormat,
    inputs: Vec<Planned>,
    csv: CsvOptions,
    budget: BatchBudget,
    progress: Arc<Progress>,
    /// The sample size, when the schemas were inferred (then the table's types bind them).
    inferred_rows: Option<usize>,
}

/// One input, its schema, and (for stdin, which cannot be opened twice) what was read of it.
struct Planned {
    input: Input,
    schema: SchemaRef,
    /// CSV: rows per batch, from the sampled line length.
    batch_rows: usize,
    opened: Option<Opened>,
}

enum Opened {
    /// The sampled lines, then the rest.
    Text {
        head: Vec<u8>,
        rest: Bytes,
    },
    Ipc(IpcReader),
}

impl Records {
    /// Reads each input's header or sample and decides its schema.
    pub fn plan(inputs: Inputs, options: &InputOptions, progress: Arc<Progress>) -> Result<Self> {
        let inferred = options.schema.is_none() && inputs.format != InputFormat::Ipc;
        let mut planned = Vec::with_capacity(inputs.inputs.len());
        let mut union_so_far: Option<Schema> = None;
        for input in inputs.inputs {
            // Sampling a file is not progress: the file is read again from its start.
            let counted = match input {
                Input::Stdin => progress.clone(),
                Input::File(_) => Arc::new(Progress::default()),
            };
            let mut one = plan_one(
                input,
                inputs.format,
                options,
                &counted,
                union_so_far.as_ref(),
            )?;
            if inputs.format == InputFormat::Jsonl && inferred {
                union_so_far = Some(one.schema.as_ref().clone());
            }
            if one.input != Input::Stdin {
                one.opened = None;
            }
            planned.push(one);
        }
        if let Some(all) = union_so_far {
            // JSON columns are matched by name: every input reads with every column seen.
            let all = Arc::new(all);
            if all.fields().is_empty() {
                return Err(FloeError::InputLine {
                    path: planned[0].input.path(),
                    line: 1,
                    reason: "no records to infer a schema from (give --schema)".into(),
                });
            }
            planned.iter_mut().for_each(|p| p.schema = all.clone());
        }
        Ok(Self {
            format: inputs.format,
            inputs: planned,
            csv: options.csv.clone(),
            budget: options.budget,
            progress,
            inferred_rows: inferred.then_some(options.infer_rows),
        })
    }

    /// Every input's schema with its name, in input order.
    pub fn schemas(&self) -> impl Iterator<Item = (String, SchemaRef)> + '_ {
        self.inputs
            .iter()
            .map(|p| (p.input.path().display().to_string(), p.schema.clone()))
    }

    /// Whether the schemas were inferred, so the table's types bind them.
    pub fn inferred(&self) -> bool {
        self.inferred_rows.is_some()
    }

    pub fn budget(&self) -> BatchBudget {
        self.budget
    }

    /// The batches of every input in order, read as `table`'s types when the schemas were
    /// inferred and a table is given.
    pub fn into_stream(mut self, table: Option<SchemaRef>) -> BatchStream {
        let budget = self.budget;
        let inputs = std::mem::take(&mut self.inputs);
        spawn_reader(budget, move |tx| {
            for planned in inputs {
                let schema = match (&table, self.inferred_rows) {
                    (Some(table), Some(_)) => bind(&planned.schema, table, self.binding()),
                    _ => planned.schema.clone(),
                };
                read_one(&self, planned, schema, tx)?;
                self.progress.add_input_file();
            }
            Ok(())
        })
    }

    fn binding(&self) -> Binding {
        match self.format {
            InputFormat::Csv => Binding::ByPosition,
            _ => Binding::ByName,
        }
    }
}

fn plan_one(
    input: Input,
    format: InputFormat,
    options: &InputOptions,
    progress: &Arc<Progress>,
    known: Option<&Schema>,
) -> Result<Planned> {
    let path = input.path();
    if format == InputFormat::Ipc {
        let reader = IpcReader::open(&input, progress)?;
        return Ok(Planned {
            input,
            schema: reader.schema(),
            batch_rows: options.budget.max_rows,
            opened: Some(Opened::Ipc(reader)),
        });
    }
    let mut bytes = inputs::open(&input, progress)?;
    let header = usize::from(format == InputFormat::Csv && options.csv.header);
    let head = read_head(&mut bytes, options.infer_rows + header, &path)?;
    let schema = match (&options.schema, format) {
        (Some(schema), _) => schema.clone(),
        (None, InputFormat::Jsonl) => Arc::new(json::infer(&head, &path, known)?),
        (None, _) => Arc::new(csv::infer(&head, &path, &options.csv)?),
    };
    Ok(Planned {
        input,
        schema,
        batch_rows: csv::batch_rows(options.budget, &head),
        opened: Some(Opened::Text { head, rest: bytes }),
    })
}

/// The first `lines` lines of `bytes`.
fn read_head(bytes: &mut Bytes, lines: usize, path: &std::path::Path) -> Result<Vec<u8>> {
    let mut head = Vec::new();
    for line in 0..lines {
        let n = bytes
            .read_until(b'\n', &mut head)
            .map_err(|e| FloeError::InputLine {
                path: path.to_path_buf(),
                line: line as u64 + 1,
                reason: e.to_string(),
            })?;
        if n == 0 {
            break;
        }
    }
    Ok(head)
}

fn read_one(
    records: &Records,
    planned: Planned,
    schema: SchemaRef,
    tx: &BatchSender,
) -> Result<()> {
    let path: PathBuf = planned.input.path();
    let progress = &records.progress;
    let opened = match planned.opened {
        Some(opened) => opened,
        None if records.format == InputFormat::Ipc => {
            Opened::Ipc(IpcReader::open(&planned.input, progress)?)
        }
        None => Opened::Text {
            head: Vec::new(),
            rest: inputs::open(&planned.input, progress)?,
        },
    };
    let reader = match opened {
        Opened::Ipc(reader) => return reader.read(&path, records.budget, tx, progress),
        Opened::Text { head, rest } => Cursor::new(head).chain(rest),
    };
    match records.format {
        InputFormat::Csv => csv::read(
            reader,
            &path,
            schema,
            &records.csv,
            planned.batch_rows,
            tx,
            progress,
        ),
        _ => json::read(
            reader,
            &path,
            schema,
            records.budget,
            records.inferred_rows,
            tx,
            progress,
        ),
    }
}
