//! What a load reads: input names expanded to files (directories, globs) or stdin, each file's
//! format (by extension, or `--format`), and its compression (by its first bytes).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{FloeError, Result};
use crate::progress::Progress;

/// The file formats floe reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum InputFormat {
    /// Apache Parquet (`.parquet`, `.pq`).
    Parquet,
    /// JSON lines: one object per line (`.jsonl`, `.ndjson`, `.json`).
    Jsonl,
    /// Comma-separated values with a header line (`.csv`; `.tsv` is tab-separated).
    Csv,
    /// Arrow IPC, file or stream format (`.arrow`, `.feather`, `.ipc`, `.arrows`).
    Ipc,
}

/// `parquet`, `jsonl`, `csv` or `ipc`.
impl std::str::FromStr for InputFormat {
    type Err = FloeError;
    fn from_str(s: &str) -> Result<Self> {
        crate::error::parse_choice("format", s)
    }
}

impl InputFormat {
    /// The format a file's name says (after a `.gz`/`.zst` suffix), if it says one.
    pub fn of_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let name = [".gz", ".zst", ".zstd"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        let extension = name.rsplit_once('.')?.1;
        Some(match extension {
            "parquet" | "pq" => Self::Parquet,
            "jsonl" | "ndjson" | "json" => Self::Jsonl,
            "csv" | "tsv" => Self::Csv,
            "arrow" | "feather" | "ipc" | "arrows" => Self::Ipc,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Ipc => "ipc",
        }
    }
}

/// One input of a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    /// Standard input (`-`).
    Stdin,
}

impl Input {
    /// The name errors use.
    pub fn path(&self) -> PathBuf {
        match self {
            Self::File(path) => path.clone(),
            Self::Stdin => PathBuf::from("<stdin>"),
        }
    }
}

/// The inputs of a load and their one format.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub format: InputFormat,
    pub inputs: Vec<Input>,
}

impl Inputs {
    /// Expands files, directories (the files of the format inside, sorted), glob patterns and
    /// `-` (stdin, which needs `format`). Every input must have the same format: `format`, or
    /// the one their names say.
    pub fn expand(names: &[impl AsRef<str>], format: Option<InputFormat>) -> Result<Self> {
        let mut inputs = Vec::new();
        for name in names {
            let name = name.as_ref();
            if name == "-" {
                if format.is_none() {
                    return Err(FloeError::InvalidOption(
                        "reading stdin ('-') needs --format (jsonl, csv or ipc)".into(),
                    ));
                }
                inputs.push(Input::Stdin);
            } else {
                inputs.extend(expand_one(name, format)?.into_iter().map(Input::File));
            }
        }
        if inputs.is_empty() {
            return Err(FloeError::NoInput {
                pattern: String::new(),
                reason: "no input files given".into(),
            });
        }
        if inputs.iter().filter(|i| **i == Input::Stdin).count() > 1 {
            return Err(FloeError::InvalidOption(
                "stdin ('-') can be read once".into(),
            ));
        }
        let format = match format {
            Some(format) => format,
            None => one_format(&inputs)?,
        };
        if format == InputFormat::Parquet && inputs.contains(&Input::Stdin) {
            return Err(FloeError::InvalidOption(
                "Parquet cannot be read from stdin (its footer is at the end): pass a file".into(),
            ));
        }
        Ok(Self { format, inputs })
    }

    /// The input files (without stdin).
    pub fn files(&self) -> Vec<PathBuf> {
        self.inputs
            .iter()
            .filter_map(|i| match i {
                Input::File(path) => Some(path.clone()),
                Input::Stdin => None,
            })
            .collect()
    }
}

/// The format every file's name says, or an error naming the file that says none or another.
fn one_format(inputs: &[Input]) -> Result<InputFormat> {
    let mut found: Option<(InputFormat, PathBuf)> = None;
    for input in inputs {
        let path = input.path();
        let format = InputFormat::of_path(&path)
            .or_else(|| sniff_binary_format(&path))
            .ok_or_else(|| {
                FloeError::InvalidOption(format!(
                    "cannot tell the format of '{}' from its name: pass --format (parquet, jsonl, csv or ipc)",
                    path.display()
                ))
            })?;
        match &found {
            None => found = Some((format, path)),
            Some((first, first_path)) if *first != format => {
                return Err(FloeError::InvalidOption(format!(
                    "inputs mix formats ('{}' is {}, '{}' is {}): load them separately, or pass --format",
                    first_path.display(),
                    first.name(),
                    path.display(),
                    format.name()
                )));
            }
            Some(_) => {}
        }
    }
    Ok(found.expect("at least one input").0)
}

/// Parquet and Arrow IPC files say what they are in their first bytes.
fn sniff_binary_format(path: &Path) -> Option<InputFormat> {
    let mut head = [0u8; 6];
    File::open(path).ok()?.read_exact(&mut head).ok()?;
    match &head {
        [b'P', b'A', b'R', b'1', ..] => Some(InputFormat::Parquet),
        b"ARROW1" => Some(InputFormat::Ipc),
        _ => None,
    }
}

fn expand_one(name: &str, format: Option<InputFormat>) -> Result<Vec<PathBuf>> {
    let path = Path::new(name);
    let no_input = |reason: String| FloeError::NoInput {
        pattern: name.to_string(),
        reason,
    };
    let mut found: Vec<PathBuf> = if path.is_dir() {
        let wanted = |p: &Path| match format {
            Some(format) => InputFormat::of_path(p) == Some(format),
            None => InputFormat::of_path(p).is_some(),
        };
        std::fs::read_dir(path)
            .map_err(|e| no_input(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && wanted(p))
            .collect()
    } else if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    } else if name.contains(['*', '?', '[']) {
        glob::glob(name)
            .map_err(|e| no_input(e.to_string()))?
            .filter_map(|p| p.ok())
            .filter(|p| p.is_file())
            .collect()
    } else {
        return Err(no_input("no such file or directory".into()));
    };
    if found.is_empty() {
        return Err(no_input(match (path.is_dir(), format) {
            (true, Some(format)) => format!("directory holds no {} files", format.name()),
            (true, None) => {
                "directory holds no input files (.parquet, .jsonl, .csv, .arrow, ...)".to_string()
            }
            (false, _) => "the pattern matches no file".into(),
        }));
    }
    found.sort();
    Ok(found)
}

/// An input's bytes, decompressed when they start with a gzip or zstd header.
pub(crate) type Bytes = Box<dyn BufRead + Send>;

/// Opens an input for reading; the compressed bytes it reads count as the load's progress.
pub(crate) fn open(input: &Input, progress: &Arc<Progress>) -> Result<Bytes> {
    let raw: Box<dyn Read + Send> = match input {
        Input::File(path) => Box::new(File::open(path).map_err(|e| FloeError::InputRead {
            path: path.clone(),
            row_group: None,
            reason: e.to_string(),
        })?),
        Input::Stdin => Box::new(std::io::stdin()),
    };
    let mut counted = BufReader::with_capacity(
        BUFFER_BYTES,
        Counted {
            inner: raw,
            progress: progress.clone(),
        },
    );
    let head = counted.fill_buf().map_err(|e| FloeError::InputRead {
        path: input.path(),
        row_group: None,
        reason: e.to_string(),
    })?;
    Ok(match head {
        [0x1f, 0x8b, ..] => Box::new(BufReader::with_capacity(
            BUFFER_BYTES,
            flate2::bufread::MultiGzDecoder::new(counted),
        )),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            let decoder = zstd::stream::read::Decoder::with_buffer(counted).map_err(|e| {
                FloeError::InputRead {
                    path: input.path(),
                    row_group: None,
                    reason: format!("not a readable zstd stream: {e}"),
                }
            })?;
            Box::new(BufReader::with_capacity(BUFFER_BYTES, decoder))
        }
        _ => Box::new(counted),
    })
}

/// Read buffer per input.
const BUFFER_BYTES: usize = 256 * 1024;

/// A reader that adds the bytes it reads to the load's progress.
struct Counted {
    inner: Box<dyn Read + Send>,
    progress: Arc<Progress>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add_input_bytes(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_names() {
        let of = |name: &str| InputFormat::of_path(Path::new(name));
        assert_eq!(of("a/b.parquet"), Some(InputFormat::Parquet));
        assert_eq!(of("x.jsonl.gz"), Some(InputFormat::Jsonl));
        assert_eq!(of("x.NDJSON.zst"), Some(InputFormat::Jsonl));
        assert_eq!(of("x.tsv"), Some(InputFormat::Csv));
        assert_eq!(of("x.feather"), Some(InputFormat::Ipc));
        assert_eq!(of("x.gz"), None);
        assert_eq!(of("x"), None);
    }

    #[test]
    fn stdin_needs_a_format_and_inputs_one_format() {
        let e = Inputs::expand(&["-"], None).unwrap_err();
        assert!(e.to_string().contains("--format"), "{e}");
        let e = Inputs::expand(&["-"], Some(InputFormat::Parquet)).unwrap_err();
        assert!(e.to_string().contains("stdin"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.csv", "b.parquet"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let e = Inputs::expand(&[dir.path().to_str().unwrap()], None).unwrap_err();
        assert!(e.to_string().contains("mix formats"), "{e}");
        let only = Inputs::expand(&[dir.path().to_str().unwrap()], Some(InputFormat::Csv)).unwrap();
        assert_eq!(only.files(), vec![dir.path().join("a.csv")]);
    }
}
