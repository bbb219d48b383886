//! Compaction: which live data files each partition rewrites (bin-packing small files, and every
//! file that has deletes), and their rows read back with those deletes applied.
//!
//! A partition's candidates are its files below 75% of the target file size (Java's
//! `min-file-size-bytes` default) and its files with position deletes. They are rewritten when
//! there are at least `min_input_files` of them, when one has deletes (so a merge-on-read table
//! ends with data files that need none), or when two or more add up to a target-size file.
//! Rows stream file by file through the load's writers, which cut target-size files.

use std::collections::HashMap;

use iceberg::io::FileIO;
use iceberg::spec::{Schema, Struct};
use roaring::RoaringTreemap;

use crate::error::Result;
use crate::merge::table_files::{LiveFile, LiveState, write_live_rows};
use crate::write::ParallelWriter;

/// What a compaction rewrites.
#[derive(Debug, Clone, Copy)]
pub struct CompactPolicy {
    pub target_file_size: u64,
    /// Small files a partition needs before they are worth rewriting (Java's default: 5).
    pub min_input_files: usize,
}

impl CompactPolicy {
    fn small(&self) -> u64 {
        self.target_file_size / 4 * 3
    }
}

/// A `--where` filter: partition field names and values, as `floe inspect` shows them
/// (`tenant=a, event_day=2026-12-01`). A file matches when its partition has every field
/// with that value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionMatch(Vec<(String, String)>);

impl std::str::FromStr for PartitionMatch {
    type Err = crate::error::FloeError;

    fn from_str(text: &str) -> Result<Self> {
        let mut pairs = Vec::new();
        for part in text
            .split([',', '&'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let part = part.strip_prefix("and ").unwrap_or(part);
            let Some((name, value)) = part.split_once('=') else {
                return Err(crate::error::FloeError::InvalidOption(format!(
                    "--where '{text}': expected partition-field=value, ... (names and values as floe inspect --partitions shows them)"
                )));
            };
            let value = value.trim().trim_matches(|c| c == '\'' || c == '"');
            pairs.push((name.trim().to_string(), value.to_string()));
        }
        Ok(Self(pairs))
    }
}

impl PartitionMatch {
    /// The field names it needs.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }

    /// Whether a file of a spec with `fields` and partition `values` matches.
    pub fn matches(&self, fields: &[iceberg::spec::PartitionField], values: &Struct) -> bool {
        let have = super::inspect::partition_values(fields, values);
        self.0
            .iter()
            .all(|(name, value)| have.iter().any(|(n, v)| n == name && v == value))
    }
}

/// The files of `live` to rewrite (indices into `live.files`), partition by partition.
pub fn plan(live: &LiveState, policy: &CompactPolicy) -> Vec<usize> {
    let mut groups: HashMap<(i32, &Struct), Vec<usize>> = HashMap::new();
    for (i, f) in live.files.iter().enumerate() {
        let has_deletes = live.deleted.contains(&f.path);
        if f.size < policy.small() || has_deletes {
            groups.entry((f.spec_id, &f.partition)).or_default().push(i);
        }
    }
    let mut chosen: Vec<usize> = groups
        .into_values()
        .filter(|files| {
            let with_deletes = files
                .iter()
                .any(|&i| live.deleted.contains(&live.files[i].path));
            let bytes: u64 = files.iter().map(|&i| live.files[i].size).sum();
            files.len() >= policy.min_input_files.max(1)
                || with_deletes
                || (files.len() >= 2 && bytes >= policy.target_file_size)
        })
        .flatten()
        .collect();
    chosen.sort_unstable();
    chosen
}

/// Writes the live rows of `file` (those `deleted` does not hide) to `writer`; returns how many.
pub async fn rewrite_file(
    file_io: &FileIO,
    file: &LiveFile,
    deleted: Option<&RoaringTreemap>,
    schema: &Schema,
    writer: &mut ParallelWriter,
) -> Result<u64> {
    let hidden = |p| deleted.is_some_and(|d| d.contains(p));
    write_live_rows(file_io, &file.path, schema, hidden, writer).await
}
