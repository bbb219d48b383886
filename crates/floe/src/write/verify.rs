//! Verify: prove that a column chunk about to be copied byte for byte is readable.
//!
//! The copy path ([`super::splice`]) never decodes values, so a page whose body is damaged
//! (while its header is intact) would land in the table and break every reader that scans it.
//! Before a chunk is copied, every page is read and checked:
//!
//! - the page body decompresses to exactly its header's uncompressed size, and its CRC matches
//!   where the writer stored one (both done by parquet-rs's page reader);
//! - repetition and definition levels decode, stay within the column's maximum levels, and
//!   add up to the footer's value count and to one top-level value per row;
//! - dictionary indices are in range of the chunk's dictionary, and there are as many of them
//!   as non-null values;
//! - plain values fill exactly the bytes the page has for them (byte-array lengths walked one
//!   by one); a plain dictionary page holds exactly its header's number of entries.
//!
//! Values themselves are not decoded: a flipped bit inside an int64 is still an int64 (only a
//! CRC finds that, and floe checks one wherever the input has it). The checks cost one
//! decompression of the chunk and a scan of its levels and indices.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use parquet::basic::{Encoding, Type as PhysicalType};
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};
use parquet::file::reader::ChunkReader;
use parquet::file::serialized_reader::SerializedPageReader;

/// Why a chunk is not safe to copy (the caller names the file, row group and column).
pub type VerifyResult<T> = std::result::Result<T, String>;

/// The checks of every copied chunk of one input file, run on worker threads that each take
/// the next unchecked chunk (row group by row group, leaf by leaf) when they finish one, so wide
/// and narrow columns balance out and no row group waits for the slowest column of the one
/// before. The workers stay at most `ahead` row groups past the one the copy waits for.
/// Dropping the handle stops them.
pub struct FileChecks {
    shared: Arc<Shared>,
}

struct Shared {
    /// Every (row group, leaf) to check, in order.
    items: Vec<(usize, usize)>,
    next: AtomicUsize,
    ahead: usize,
    state: Mutex<CheckState>,
    changed: Condvar,
}

struct CheckState {
    /// Per row group: chunks not checked yet.
    left: Vec<usize>,
    /// Per row group: the failure of its first bad leaf.
    failed: Vec<Option<(usize, String)>>,
    /// The row group the copy waits for.
    wanted: usize,
    stop: bool,
}

impl FileChecks {
    /// Starts `threads` workers in `scope` checking the `leaves` of every row group of `file`
    /// (the very handle the copy reads from; positional reads, so threads can share it).
    pub fn start<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        file: &Arc<File>,
        metadata: &'scope ParquetMetaData,
        leaves: &[usize],
        threads: usize,
        ahead: usize,
    ) -> Self {
        let groups = metadata.num_row_groups();
        let items: Vec<(usize, usize)> = (0..groups)
            .flat_map(|rg| leaves.iter().map(move |&leaf| (rg, leaf)))
            .collect();
        let shared = Arc::new(Shared {
            items,
            next: AtomicUsize::new(0),
            ahead: ahead.max(1),
            state: Mutex::new(CheckState {
                left: vec![leaves.len(); groups],
                failed: vec![None; groups],
                wanted: 0,
                stop: false,
            }),
            changed: Condvar::new(),
        });
        for _ in 0..threads.max(1) {
            let shared = shared.clone();
            let file = Arc::new(Positional(file.clone()));
            scope.spawn(move || shared.work(&file, metadata));
        }
        Self { shared }
    }

    /// Waits for every chunk of row group `rg` (taking row groups in order): Ok, or the first
    /// bad leaf of it with why.
    pub fn row_group(&self, rg: usize) -> std::result::Result<(), (usize, String)> {
        let shared = &self.shared;
        let mut state = shared.lock();
        state.wanted = rg;
        shared.changed.notify_all();
        while state.left[rg] > 0 && !state.stop {
            state = shared.wait(state);
        }
        match state.failed[rg].take() {
            Some(failure) => {
                state.stop = true;
                shared.changed.notify_all();
                Err(failure)
            }
            None if state.left[rg] > 0 => Err((usize::MAX, "the page checks stopped".into())),
            None => Ok(()),
        }
    }
}

impl Drop for FileChecks {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, CheckState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'g>(
        &self,
        guard: std::sync::MutexGuard<'g, CheckState>,
    ) -> std::sync::MutexGuard<'g, CheckState> {
        self.changed.wait(guard).unwrap_or_else(|e| e.into_inner())
    }

    /// One worker: takes the next chunk until none is left or the checks stop.
    fn work(&self, file: &Arc<Positional>, metadata: &ParquetMetaData) {
        loop {
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            let Some(&(rg, leaf)) = self.items.get(i) else {
                return;
            };
            {
                let mut state = self.lock();
                while rg >= state.wanted + self.ahead && !state.stop {
                    state = self.wait(state);
                }
                if state.stop {
                    return;
                }
            }
            let group = metadata.row_group(rg);
            let rows = group.num_rows().max(0) as usize;
            let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                verify_chunk(file.clone(), group.column(leaf), rows)
            }))
            .unwrap_or_else(|_| Err("the page check failed unexpectedly".into()));
            let mut state = self.lock();
            if let Err(e) = checked {
                let failed = &mut state.failed[rg];
                if failed.as_ref().is_none_or(|(first, _)| leaf < *first) {
                    *failed = Some((leaf, e));
                }
            }
            state.left[rg] -= 1;
            self.changed.notify_all();
        }
    }
}

/// A file read with positional reads only, so threads can share it.
struct Positional(Arc<File>);

/// A reader at an offset of a [`Positional`] file.
struct PositionalRead {
    file: Arc<File>,
    at: u64,
}

impl std::io::Read for PositionalRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

impl parquet::file::reader::Length for Positional {
    fn len(&self) -> u64 {
        self.0.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

impl ChunkReader for Positional {
    type T = std::io::BufReader<PositionalRead>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let read = PositionalRead {
            file: self.0.clone(),
            at: start,
        };
        Ok(std::io::BufReader::with_capacity(64 * 1024, read))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let mut buf = vec![0; length];
        self.0.read_exact_at(&mut buf, start)?;
        Ok(buf.into())
    }
}

/// Reads and checks every page of `chunk` (a column chunk of a row group with `rows` rows).
pub fn verify_chunk<R: ChunkReader + 'static>(
    file: Arc<R>,
    chunk: &ColumnChunkMetaData,
    rows: usize,
) -> VerifyResult<()> {
    let descr = chunk.column_descr();
    let mut column = ColumnCheck {
        physical: descr.physical_type(),
        type_length: descr.type_length().max(0) as usize,
        max_def: descr.max_def_level(),
        max_rep: descr.max_rep_level(),
        dictionary: None,
        values: 0,
        rows: 0,
    };
    let mut pages =
        SerializedPageReader::new(file, chunk, rows, None).map_err(|e| e.to_string())?;
    let mut index = 0usize;
    while let Some(page) = pages
        .get_next_page()
        .map_err(|e| format!("page {index}: {e}"))?
    {
        column
            .page(&page)
            .map_err(|e| format!("page {index}: {e}"))?;
        index += 1;
    }
    if column.values as i64 != chunk.num_values() {
        return Err(format!(
            "the column chunk's pages hold {} values, its metadata says {}",
            column.values,
            chunk.num_values()
        ));
    }
    if column.rows != rows {
        return Err(format!(
            "the column chunk holds {} rows, its row group has {rows}",
            column.rows
        ));
    }
    Ok(())
}

/// What the pages of one chunk have shown so far.
struct ColumnCheck {
    physical: PhysicalType,
    type_length: usize,
    max_def: i16,
    max_rep: i16,
    /// Entries of the dictionary page, once seen.
    dictionary: Option<usize>,
    /// Levels (values including nulls and empty lists) seen in data pages.
    values: usize,
    /// Top-level rows seen in data pages.
    rows: usize,
}

impl ColumnCheck {
    fn page(&mut self, page: &Page) -> VerifyResult<()> {
        match page {
            Page::DictionaryPage {
                buf,
                num_values,
                encoding,
                ..
            } => {
                if self.dictionary.is_some() || self.values > 0 {
                    return Err("a dictionary page after the first page".into());
                }
                if !matches!(encoding, Encoding::PLAIN | Encoding::PLAIN_DICTIONARY) {
                    return Err(format!("dictionary page encoded as {encoding}"));
                }
                let entries = *num_values as usize;
                self.plain_values(buf, entries)
                    .map_err(|e| format!("dictionary page: {e}"))?;
                self.dictionary = Some(entries);
                Ok(())
            }
            Page::DataPage {
                buf,
                num_values,
                encoding,
                ..
            } => {
                let levels = *num_values as usize;
                let mut rest = buf.clone();
                let rep = self.prefixed_levels(&mut rest, self.max_rep, levels, "repetition")?;
                let def = self.prefixed_levels(&mut rest, self.max_def, levels, "definition")?;
                self.values_section(&rest, *encoding, def)?;
                self.add_levels(levels, rep)
            }
            Page::DataPageV2 {
                buf,
                num_values,
                encoding,
                num_nulls,
                num_rows,
                def_levels_byte_len,
                rep_levels_byte_len,
                ..
            } => {
                let levels = *num_values as usize;
                let (rep_len, def_len) =
                    (*rep_levels_byte_len as usize, *def_levels_byte_len as usize);
                if rep_len + def_len > buf.len() {
                    return Err("level lengths exceed the page".into());
                }
                let rep = self.levels(&buf[..rep_len], self.max_rep, levels, "repetition")?;
                let def = self.levels(
                    &buf[rep_len..rep_len + def_len],
                    self.max_def,
                    levels,
                    "definition",
                )?;
                if levels - def != *num_nulls as usize {
                    return Err(format!(
                        "{} nulls by its definition levels, {num_nulls} by its header",
                        levels - def
                    ));
                }
                if self.max_rep > 0 && rep != *num_rows as usize {
                    return Err(format!(
                        "{rep} rows by its repetition levels, {num_rows} by its header"
                    ));
                }
                self.values_section(&buf.slice(rep_len + def_len..), *encoding, def)?;
                self.add_levels(levels, rep)
            }
        }
    }

    /// Counts a data page's levels and rows (`rep_zeros`: levels that start a row).
    fn add_levels(&mut self, levels: usize, rep_zeros: usize) -> VerifyResult<()> {
        self.values += levels;
        self.rows += if self.max_rep > 0 { rep_zeros } else { levels };
        Ok(())
    }

    /// Levels of a v1 data page: a 4-byte length, then RLE-encoded levels. Returns how many
    /// levels equal `max` (non-null values for definition levels, row starts for repetition
    /// levels: those are counted as zeros, see [`Self::levels`]).
    fn prefixed_levels(
        &self,
        rest: &mut Bytes,
        max: i16,
        count: usize,
        what: &str,
    ) -> VerifyResult<usize> {
        if max == 0 {
            return Ok(count);
        }
        if rest.len() < 4 {
            return Err(format!("{what} levels truncated"));
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if 4 + len > rest.len() {
            return Err(format!("{what} levels run past the page"));
        }
        let counted = self.levels(&rest[4..4 + len], max, count, what)?;
        *rest = rest.slice(4 + len..);
        Ok(counted)
    }

    /// Decodes `count` levels of at most `max`: definition levels return how many equal `max`
    /// (non-null values), repetition levels how many are zero (rows started).
    fn levels(&self, data: &[u8], max: i16, count: usize, what: &str) -> VerifyResult<usize> {
        if max == 0 {
            return Ok(count);
        }
        let width = bit_width(max as u32);
        let target = if what == "repetition" { 0 } else { max as u32 };
        let scan = scan_hybrid(data, width, count, Unpack::Counts)
            .map_err(|e| format!("{what} levels: {e}"))?;
        if scan.max > max as u32 {
            return Err(format!(
                "{what} level {} above the column's maximum {max}",
                scan.max
            ));
        }
        Ok(scan.count_of(target))
    }

    /// The values of a data page: `present` non-null values in `encoding`.
    fn values_section(&self, data: &Bytes, encoding: Encoding, present: usize) -> VerifyResult<()> {
        match encoding {
            Encoding::PLAIN => self.plain_values(data, present),
            Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY => {
                let entries = self
                    .dictionary
                    .ok_or("dictionary-encoded values without a dictionary page")?;
                self.dictionary_indices(data, present, entries)
            }
            Encoding::RLE if self.physical == PhysicalType::BOOLEAN => {
                if data.len() < 4 {
                    return Err("boolean values truncated".into());
                }
                let len = u32::from_le_bytes(data[..4].try_into().expect("4 bytes")) as usize;
                let body = data
                    .get(4..4 + len)
                    .ok_or("boolean values run past the page")?;
                scan_hybrid(body, 1, present, Unpack::No).map(|_| ())
            }
            other => Err(format!(
                "values encoded as {other}, which floe does not copy"
            )),
        }
    }

    fn dictionary_indices(&self, data: &[u8], present: usize, entries: usize) -> VerifyResult<()> {
        if present == 0 {
            return Ok(());
        }
        let (&width, indices) = data.split_first().ok_or("dictionary indices missing")?;
        if width > 32 {
            return Err(format!("dictionary index bit width {width}"));
        }
        // Indices this narrow cannot leave the dictionary: only their runs need walking.
        let may_overflow = width == 32 || (1usize << width) > entries;
        let unpack = if may_overflow {
            Unpack::Max
        } else {
            Unpack::No
        };
        let scan = scan_hybrid(indices, width, present, unpack)?;
        if scan.max as usize >= entries {
            return Err(format!(
                "dictionary index {} out of range of the chunk's {entries}-entry dictionary",
                scan.max
            ));
        }
        Ok(())
    }

    /// `count` PLAIN values must fill exactly the bytes given.
    fn plain_values(&self, data: &[u8], count: usize) -> VerifyResult<()> {
        let expected = match self.physical {
            PhysicalType::BOOLEAN => count.div_ceil(8),
            PhysicalType::INT32 | PhysicalType::FLOAT => 4 * count,
            PhysicalType::INT64 | PhysicalType::DOUBLE => 8 * count,
            PhysicalType::INT96 => 12 * count,
            PhysicalType::FIXED_LEN_BYTE_ARRAY => self.type_length * count,
            PhysicalType::BYTE_ARRAY => return byte_arrays(data, count),
        };
        if data.len() != expected {
            return Err(format!(
                "{count} plain values need {expected} bytes, the page has {}",
                data.len()
            ));
        }
        Ok(())
    }
}

/// `count` length-prefixed byte arrays must fill exactly the bytes given.
fn byte_arrays(data: &[u8], count: usize) -> VerifyResult<()> {
    let mut at = 0usize;
    for k in 0..count {
        let len = data
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| format!("byte array {k} of {count} truncated"))?;
        at = at
            .checked_add(4 + len)
            .filter(|&end| end <= data.len())
            .ok_or_else(|| format!("byte array {k} of {count} runs past the page"))?;
    }
    if at != data.len() {
        return Err(format!(
            "{count} byte arrays end at byte {at} of {}",
            data.len()
        ));
    }
    Ok(())
}

/// Bits needed for values up to `max`.
fn bit_width(max: u32) -> u8 {
    (32 - max.leading_zeros()) as u8
}

/// What a walk over RLE/bit-packed hybrid data found.
#[derive(Debug, PartialEq)]
struct HybridScan {
    /// Largest value among the ones counted.
    max: u32,
    /// How many values were zero, and how many were equal to `max` (the levels callers ask).
    zeros: usize,
    at_max: usize,
}

impl HybridScan {
    fn count_of(&self, value: u32) -> usize {
        if value == 0 {
            self.zeros
        } else if value == self.max {
            self.at_max
        } else {
            0
        }
    }
}

/// Walks the first `count` values of Parquet's RLE/bit-packed hybrid encoding (levels and
/// dictionary indices), which must all be present, and reports the largest value with how
/// often it and zero occur (bit-packed values are only looked at with `unpack`). parquet-rs
/// keeps its decoder private (and trusts its input); this walk checks every length against
/// the bytes it has.
fn scan_hybrid(data: &[u8], width: u8, count: usize, unpack: Unpack) -> VerifyResult<HybridScan> {
    let mut scan = HybridScan {
        max: 0,
        zeros: 0,
        at_max: 0,
    };
    let mut note = |value: u32, times: usize| {
        if value > scan.max {
            scan.max = value;
            scan.at_max = 0;
        }
        if value == scan.max {
            scan.at_max += times;
        }
        if value == 0 {
            scan.zeros += times;
        }
    };
    let value_bytes = (width as usize).div_ceil(8);
    let (mut at, mut left) = (0usize, count);
    while left > 0 {
        let (header, used) = uleb128(&data[at.min(data.len())..])
            .ok_or_else(|| format!("run header missing with {left} of {count} values to go"))?;
        at += used;
        let run = (header >> 1) as usize;
        if header & 1 == 0 {
            // RLE run: `run` copies of one value in `value_bytes` little-endian bytes.
            let bytes = data
                .get(at..at + value_bytes)
                .ok_or("RLE run value truncated")?;
            let mut le = [0u8; 4];
            le[..bytes.len()].copy_from_slice(bytes);
            let value = u32::from_le_bytes(le);
            if width < 32 && value >> width != 0 {
                return Err(format!("RLE value {value} wider than {width} bits"));
            }
            if run == 0 {
                return Err("empty RLE run".into());
            }
            at += value_bytes;
            let taken = run.min(left);
            note(value, taken);
            left -= taken;
        } else {
            // Bit-packed run: `run` groups of 8 values, `width` bytes per group.
            let groups_bytes = run
                .checked_mul(width as usize)
                .ok_or("bit-packed run too long")?;
            let end = at
                .checked_add(groups_bytes)
                .ok_or("bit-packed run too long")?;
            let taken = (run * 8).min(left);
            if taken == 0 {
                return Err("empty bit-packed run".into());
            }
            let needed = (taken * width as usize).div_ceil(8);
            if needed > data.len().saturating_sub(at) {
                return Err("bit-packed run truncated".into());
            }
            let packed = &data[at..at + needed];
            match unpack {
                Unpack::No => {}
                Unpack::Max => note(bit_packed_max(packed, width, taken), 0),
                Unpack::Counts => bit_packed(packed, width, taken, &mut note),
            }
            left -= taken;
            at = end.min(data.len());
        }
    }
    Ok(scan)
}

/// Which bit-packed values a walk looks at.
#[derive(Clone, Copy, PartialEq)]
enum Unpack {
    /// None: only the runs' lengths are checked.
    No,
    /// Only the largest matters (dictionary indices).
    Max,
    /// Every value is counted (levels).
    Counts,
}

/// The largest of `count` values of `width` bits, packed least significant bit first.
fn bit_packed_max(data: &[u8], width: u8, count: usize) -> u32 {
    let width = width as usize;
    if width == 0 {
        return 0;
    }
    let mask = if width == 32 {
        u32::MAX as u64
    } else {
        (1u64 << width) - 1
    };
    // Values whose 8-byte window lies inside the data, then the few at the end.
    let fast = if data.len() >= 8 {
        ((data.len() - 8) * 8 / width + 1).min(count)
    } else {
        0
    };
    let mut max = 0u64;
    for k in 0..fast {
        let bit = k * width;
        let word = u64::from_le_bytes(data[bit / 8..bit / 8 + 8].try_into().expect("8 bytes"));
        max = max.max((word >> (bit % 8)) & mask);
    }
    for k in fast..count {
        let bit = k * width;
        let byte = bit / 8;
        let mut word = [0u8; 8];
        let end = (byte + 8).min(data.len());
        word[..end - byte].copy_from_slice(&data[byte..end]);
        max = max.max((u64::from_le_bytes(word) >> (bit % 8)) & mask);
    }
    max as u32
}

/// Feeds `count` values of `width` bits, packed least significant bit first, to `note`.
fn bit_packed(data: &[u8], width: u8, count: usize, note: &mut impl FnMut(u32, usize)) {
    if width == 0 {
        note(0, count);
        return;
    }
    let width = width as usize;
    let mask = if width == 32 {
        u32::MAX as u64
    } else {
        (1u64 << width) - 1
    };
    for k in 0..count {
        let bit = k * width;
        let byte = bit / 8;
        let word = match data.get(byte..byte + 8) {
            Some(eight) => u64::from_le_bytes(eight.try_into().expect("8 bytes")),
            None => {
                let mut word = [0u8; 8];
                word[..data.len() - byte].copy_from_slice(&data[byte..]);
                u64::from_le_bytes(word)
            }
        };
        note(((word >> (bit % 8)) & mask) as u32, 1);
    }
}

/// An unsigned LEB128 integer (at most 5 bytes: run headers fit in 32 bits) and its length.
fn uleb128(data: &[u8]) -> Option<(u32, usize)> {
    let mut value = 0u64;
    for (k, &byte) in data.iter().take(5).enumerate() {
        value |= ((byte & 0x7f) as u64) << (7 * k);
        if byte & 0x80 == 0 {
            return u32::try_from(value).ok().map(|v| (v, k + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::ParquetMetaDataReader;

    /// A zstd Parquet file of one row group (ids and low-cardinality strings), in memory.
    fn file() -> (Arc<Bytes>, parquet::file::metadata::ParquetMetaData) {
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..10_000));
        let cats: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..10_000).map(|i| format!("c{}", i % 7)),
        ));
        let batch = RecordBatch::try_from_iter([("id", ids), ("cat", cats)]).unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
            .build();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let bytes = Bytes::from(out);
        let meta = ParquetMetaDataReader::new()
            .parse_and_finish(&bytes)
            .unwrap();
        (Arc::new(bytes), meta)
    }

    #[test]
    fn a_clean_chunk_verifies() {
        let (bytes, meta) = file();
        for c in meta.row_group(0).columns() {
            verify_chunk(Arc::new(bytes.as_ref().clone()), c, 10_000).unwrap();
        }
    }

    #[test]
    fn a_footer_whose_counts_or_sizes_lie_is_refused() {
        let (bytes, meta) = file();
        let data = Arc::new(bytes.as_ref().clone());
        let chunk = meta.row_group(0).column(1).clone();
        let more_values = chunk
            .clone()
            .into_builder()
            .set_num_values(chunk.num_values() + 1)
            .build()
            .unwrap();
        assert!(verify_chunk(data.clone(), &more_values, 10_000).is_err());
        // A footer that promises more rows than the pages hold.
        assert!(verify_chunk(data.clone(), &chunk, 10_001).is_err());
        let shorter = chunk
            .clone()
            .into_builder()
            .set_total_compressed_size(chunk.compressed_size() - 7)
            .build()
            .unwrap();
        assert!(verify_chunk(data.clone(), &shorter, 10_000).is_err());
        let longer = chunk
            .clone()
            .into_builder()
            .set_total_compressed_size(chunk.compressed_size() + 7)
            .build()
            .unwrap();
        assert!(verify_chunk(data, &longer, 10_000).is_err());
    }

    #[test]
    fn hybrid_runs_are_walked_and_bounded() {
        // RLE run of 5 x value 3 (width 2), then one bit-packed group of 8 values 0..=3,0..=3.
        let data = [0x0a, 0x03, 0x03, 0b11_10_01_00, 0b11_10_01_00];
        let scan = scan_hybrid(&data, 2, 13, Unpack::Counts).unwrap();
        assert_eq!(scan.max, 3);
        assert_eq!(scan.at_max, 5 + 2);
        assert_eq!(scan.zeros, 2);
        // Asking for more values than the runs hold fails instead of inventing them.
        assert!(scan_hybrid(&data, 2, 14, Unpack::Counts).is_err());
        // A truncated bit-packed group fails.
        assert!(scan_hybrid(&data[..4], 2, 13, Unpack::Counts).is_err());
        // A value wider than the bit width fails.
        assert!(scan_hybrid(&[0x02, 0x04], 2, 1, Unpack::Counts).is_err());
    }

    #[test]
    fn byte_arrays_must_fill_the_page_exactly() {
        let mut data = Vec::new();
        for s in ["ab", "", "xyz"] {
            data.extend_from_slice(&(s.len() as u32).to_le_bytes());
            data.extend_from_slice(s.as_bytes());
        }
        assert!(byte_arrays(&data, 3).is_ok());
        assert!(byte_arrays(&data, 2).is_err());
        assert!(byte_arrays(&data, 4).is_err());
        data[0] = 200;
        assert!(byte_arrays(&data, 3).is_err());
    }

    #[test]
    fn the_fast_max_agrees_with_counting() {
        for width in [1u8, 3, 7, 8, 10, 17, 32] {
            let data: Vec<u8> = (0..61u32).map(|i| (i * 37 % 251) as u8).collect();
            let count = data.len() * 8 / width as usize;
            let mut slow = 0;
            bit_packed(&data, width, count, &mut |v, _| slow = slow.max(v));
            assert_eq!(bit_packed_max(&data, width, count), slow, "width {width}");
        }
    }

    #[test]
    fn bit_widths() {
        assert_eq!(bit_width(0), 0);
        assert_eq!(bit_width(1), 1);
        assert_eq!(bit_width(2), 2);
        assert_eq!(bit_width(255), 8);
        assert_eq!(bit_width(256), 9);
    }
}
