//! The positions earlier delete files already delete in the files a merge or compaction keeps.
//!
//! A table whose keys were upserted all over it has deletes on many files; a bitmap per file
//! in a map by path cost ~560 bytes per file even for one position (path, map entry, the
//! treemap's node, its container). Here bitmaps are gathered in memory until
//! [`PENDING_BYTES`], then each is serialized with its path into [`Records`]; memory keeps 24
//! bytes per spilled bitmap (a hash of its path and where its record lies). A file's deletes
//! may be spread over several records (one per spill that held some of them); reading a file's
//! positions unions them, checking each record's path, so a hash collision costs a read, never
//! a wrong position.

use std::collections::HashMap;
use std::path::Path;

use roaring::RoaringTreemap;

use super::records::{Record, Records, put_bytes};
use crate::error::{FloeError, Result};

/// Estimated bytes of bitmaps held in memory before they are spilled.
const PENDING_BYTES: usize = 8 << 20;
/// What a file's bitmap costs in memory besides its positions (path, map entry, tree node).
const PER_FILE_BYTES: usize = 600;

/// Deleted positions by data file path.
pub struct DeletedPositions {
    pending: HashMap<String, RoaringTreemap>,
    /// Positions inserted into `pending` (each costs at most ~4 bytes in a bitmap).
    pending_positions: usize,
    /// (path hash, record start, record end), sorted by hash once [`Self::seal`]ed.
    spilled: Vec<(u64, u64, u64)>,
    records: Records,
}

impl DeletedPositions {
    pub fn new(spill_dir: Option<&Path>) -> Self {
        Self {
            pending: HashMap::new(),
            pending_positions: 0,
            spilled: Vec::new(),
            records: Records::new(spill_dir, "the positions already deleted"),
        }
    }

    /// Records `pos` deleted in `path`.
    pub fn insert(&mut self, path: &str, pos: u64) {
        let inserted = match self.pending.get_mut(path) {
            Some(deleted) => deleted.insert(pos),
            None => self
                .pending
                .entry(path.to_string())
                .or_default()
                .insert(pos),
        };
        self.pending_positions += inserted as usize;
    }

    /// Spills the bitmaps in memory once they pass [`PENDING_BYTES`]; call between inserts,
    /// e.g. after each delete file.
    pub fn bound(&mut self) -> Result<()> {
        let bytes = self.pending.len() * PER_FILE_BYTES + self.pending_positions * 4;
        if bytes < PENDING_BYTES {
            return Ok(());
        }
        for (path, deleted) in std::mem::take(&mut self.pending) {
            let start = self.records.end();
            let out = self.records.tail();
            put_bytes(out, path.as_bytes());
            deleted
                .serialize_into(&mut *out)
                .expect("serializing into memory cannot fail");
            self.spilled.push((
                super::table_files::path_hash(&path),
                start,
                self.records.end(),
            ));
            self.records.done()?;
        }
        self.pending_positions = 0;
        Ok(())
    }

    /// Done inserting: makes the spilled bitmaps findable.
    pub fn seal(&mut self) {
        self.spilled.sort_unstable();
    }

    fn spilled_of(&self, path: &str) -> &[(u64, u64, u64)] {
        let hash = super::table_files::path_hash(path);
        let from = self.spilled.partition_point(|e| e.0 < hash);
        let to = self.spilled.partition_point(|e| e.0 <= hash);
        &self.spilled[from..to]
    }

    /// Whether `path` has deleted positions. Spilled bitmaps are found by path hash: another
    /// path with the same 64-bit hash would answer yes (compaction then rewrites a file it could
    /// have kept, nothing worse); [`Self::get`] is exact.
    pub fn contains(&self, path: &str) -> bool {
        self.pending.contains_key(path) || !self.spilled_of(path).is_empty()
    }

    /// The positions deleted in `path`, if any.
    pub fn get(&self, path: &str) -> Result<Option<RoaringTreemap>> {
        let mut out = self.pending.get(path).cloned();
        for &(_, start, end) in self.spilled_of(path) {
            let record = self.records.read(start, end)?;
            let mut r = Record(&record);
            let corrupt = || FloeError::Io {
                context: "cannot read the positions already deleted back".into(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "a bad record"),
            };
            if r.bytes().ok_or_else(corrupt)? != path.as_bytes() {
                continue;
            }
            let deleted = RoaringTreemap::deserialize_from(r.0).map_err(|_| corrupt())?;
            *out.get_or_insert_default() |= deleted;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_back_exactly_from_memory_and_from_spills() {
        let dir = tempfile::tempdir().unwrap();
        let mut deleted = DeletedPositions::new(Some(dir.path()));
        let path = |f: u64| format!("s3://bucket/t/data/{f:06}.parquet");
        // 30,000 files, each with positions in three delete files read at different times.
        for round in 0..3u64 {
            for f in 0..30_000u64 {
                deleted.insert(&path(f), f * 10 + round);
                if f % 7 == 0 {
                    deleted.insert(&path(f), 5_000_000_000 + round);
                }
            }
            deleted.bound().unwrap();
        }
        deleted.insert(&path(3), 99);
        deleted.seal();
        assert!(deleted.records.spilled(), "bitmaps went to the file");
        for f in [0u64, 3, 6, 7, 12_345, 29_999] {
            let got = deleted.get(&path(f)).unwrap().unwrap();
            let mut want: Vec<u64> = (0..3).map(|r| f * 10 + r).collect();
            if f % 7 == 0 {
                want.extend((0..3).map(|r| 5_000_000_000 + r));
            }
            if f == 3 {
                want.push(99);
            }
            want.sort_unstable();
            assert_eq!(got.iter().collect::<Vec<_>>(), want, "file {f}");
            assert!(deleted.contains(&path(f)));
        }
        assert!(deleted.get(&path(30_000)).unwrap().is_none());
        assert!(!deleted.contains(&path(30_000)));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
