//! The candidate files of a merge: the live data files that may hold a load key, numbered in
//! the order they were found (the join names a table row by that number and its position).
//!
//! A table may have millions of candidates when a load's keys spread over it, so they are not
//! kept as a list in memory: each is a small record (path, size, spec id, partition values)
//! in [`Records`] (a 1 MiB tail, then an anonymous temporary file), and memory keeps one offset
//! (8 bytes) per candidate.

use std::path::Path;

use iceberg::spec::{Literal, PrimitiveLiteral, Struct};

use super::records::{Record, Records, put_bytes};
use super::table_files::{LiveFile, LiveFiles};
use crate::error::{FloeError, Result};

/// The merge's candidate files, by number.
pub struct CandidateFiles {
    /// Where each record starts.
    offsets: Vec<u64>,
    records: Records,
}

impl CandidateFiles {
    /// An empty list whose records spill to an anonymous file in `spill_dir` (default: the
    /// system temp dir).
    pub fn new(spill_dir: Option<&Path>) -> Self {
        Self {
            offsets: Vec::new(),
            records: Records::new(spill_dir, "the merge's candidate list"),
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Candidate number `i`.
    pub fn get(&self, i: usize) -> Result<LiveFile> {
        let start = self.offsets[i];
        let end = self
            .offsets
            .get(i + 1)
            .copied()
            .unwrap_or(self.records.end());
        decode(&self.records.read(start, end)?)
    }

    fn encode(&mut self, file: LiveFile) -> Result<()> {
        let out = self.records.tail();
        put_bytes(out, file.path.as_bytes());
        out.extend_from_slice(&file.size.to_le_bytes());
        out.extend_from_slice(&file.spec_id.to_le_bytes());
        out.extend_from_slice(&(file.partition.fields().len() as u32).to_le_bytes());
        for value in file.partition.iter() {
            put_value(out, value).ok_or_else(|| FloeError::Io {
                context: format!("cannot record merge candidate {}", file.path),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a partition value that is not a primitive: {value:?}"),
                ),
            })?;
        }
        Ok(())
    }
}

fn decode(record: &[u8]) -> Result<LiveFile> {
    let corrupt = || FloeError::Io {
        context: "cannot read the merge's candidate list back".into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "a record does not decode"),
    };
    let mut r = Record(record);
    let path = String::from_utf8(r.bytes().ok_or_else(corrupt)?.to_vec()).map_err(|_| corrupt())?;
    let size = u64::from_le_bytes(*r.take::<8>().ok_or_else(corrupt)?);
    let spec_id = i32::from_le_bytes(*r.take::<4>().ok_or_else(corrupt)?);
    let fields = u32::from_le_bytes(*r.take::<4>().ok_or_else(corrupt)?);
    let partition = (0..fields)
        .map(|_| r.value().ok_or_else(corrupt))
        .collect::<Result<Struct>>()?;
    Ok(LiveFile {
        path,
        partition,
        size,
        spec_id,
    })
}

impl LiveFiles for CandidateFiles {
    fn push(&mut self, file: LiveFile) -> Result<()> {
        self.offsets.push(self.records.end());
        self.encode(file)?;
        self.records.done()
    }
}

/// One partition value: a tag, then its bytes (`None` for a value that is not a primitive,
/// which Iceberg partitions never hold).
fn put_value(out: &mut Vec<u8>, value: Option<&Literal>) -> Option<()> {
    use PrimitiveLiteral as P;
    let Some(value) = value else {
        out.push(0);
        return Some(());
    };
    let Literal::Primitive(value) = value else {
        return None;
    };
    match value {
        P::Boolean(b) => out.extend_from_slice(&[1, *b as u8]),
        P::Int(v) => tagged(out, 2, &v.to_le_bytes()),
        P::Long(v) => tagged(out, 3, &v.to_le_bytes()),
        P::Float(v) => tagged(out, 4, &v.0.to_le_bytes()),
        P::Double(v) => tagged(out, 5, &v.0.to_le_bytes()),
        P::String(v) => {
            out.push(6);
            put_bytes(out, v.as_bytes());
        }
        P::Binary(v) => {
            out.push(7);
            put_bytes(out, v);
        }
        P::Int128(v) => tagged(out, 8, &v.to_le_bytes()),
        P::UInt128(v) => tagged(out, 9, &v.to_le_bytes()),
        P::AboveMax => out.push(10),
        P::BelowMin => out.push(11),
    }
    Some(())
}

fn tagged(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(bytes);
}

/// Partition values as [`put_value`] wrote them.
impl Record<'_> {
    fn value(&mut self) -> Option<Option<Literal>> {
        use PrimitiveLiteral as P;
        let (&tag, rest) = self.0.split_first()?;
        self.0 = rest;
        let value = match tag {
            0 => return Some(None),
            1 => P::Boolean(self.take::<1>()?[0] != 0),
            2 => P::Int(i32::from_le_bytes(*self.take()?)),
            3 => P::Long(i64::from_le_bytes(*self.take()?)),
            4 => P::Float(f32::from_le_bytes(*self.take()?).into()),
            5 => P::Double(f64::from_le_bytes(*self.take()?).into()),
            6 => P::String(String::from_utf8(self.bytes()?.to_vec()).ok()?),
            7 => P::Binary(self.bytes()?.to_vec()),
            8 => P::Int128(i128::from_le_bytes(*self.take()?)),
            9 => P::UInt128(u128::from_le_bytes(*self.take()?)),
            10 => P::AboveMax,
            11 => P::BelowMin,
            _ => return None,
        };
        Some(Some(Literal::Primitive(value)))
    }
}

#[cfg(test)]
mod tests {
    use iceberg::spec::Literal;

    use super::*;

    fn file(i: usize) -> LiveFile {
        LiveFile {
            path: format!(
                "s3://bucket/t/data/part={}/{i:08}-{}.parquet",
                i % 7,
                "x".repeat(i % 50)
            ),
            partition: Struct::from_iter([
                Some(Literal::long((i % 7) as i64)),
                None,
                Some(Literal::string(format!("p{i}"))),
                Some(Literal::date(i as i32)),
                Some(Literal::double(i as f64 / 3.0)),
                Some(Literal::bool(i.is_multiple_of(2))),
                Some(Literal::binary(vec![i as u8; i % 5])),
                Some(Literal::decimal(i as i128 * -1_000)),
            ]),
            size: i as u64 * 3,
            spec_id: (i % 2) as i32,
        }
    }

    #[test]
    fn candidates_read_back_exactly_from_memory_and_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut list = CandidateFiles::new(Some(dir.path()));
        let n = 30_000;
        for i in 0..n {
            list.push(file(i)).unwrap();
        }
        assert_eq!(list.len(), n);
        assert!(list.records.spilled(), "records went to the file");
        assert!(
            !list.records.tail().is_empty(),
            "and some are still in memory"
        );
        for i in [0, 1, 6_999, 12_345, n - 2, n - 1] {
            let got = list.get(i).unwrap();
            let want = file(i);
            assert_eq!(
                (got.path, got.partition, got.size, got.spec_id),
                (want.path, want.partition, want.size, want.spec_id)
            );
        }
        // The file is anonymous: nothing is left in the spill folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
