//! Merge: match a load's keys against the table in bounded memory.
//!
//! ```text
//!  load batches --conform--> LoadSide: null-key check, +__floe_seq, key ranges
//!                              | rows: SpillQueue, input order         (spills)
//!                              | keys + seq: ExternalSorter by (keys, seq)  (spills)
//!  table: live files pruned by key bounds --> key columns + (file, pos)
//!                              | ExternalSorter by keys               (spills)
//!  sort-merge join, one key group at a time:
//!     strategy (upsert / insert-only / delete-insert), hard deletes, duplicate keys
//!     -> input positions of rows to write (a bitmap; the rows are read back
//!        from the queue in order afterwards)
//!     -> (file, pos) to delete --> ExternalSorter by (file, pos)
//!  deletes, file by file:
//!     copy-on-write: rewrite the file without those rows
//!     merge-on-read: one position-delete file per data file
//! ```
//!
//! Every load row and every candidate key is touched a constant number of times (plus the
//! sorts' O(n log n)); memory is set by the sort budget, never by the data.

mod apply;
pub mod candidates;
pub mod deleted;
mod join;
mod keys;
pub mod load_side;
pub mod position_deletes;
mod prune;
mod records;
mod spec;
pub mod table_files;
mod table_side;
mod winners;

pub(crate) use apply::{ByFile, DeleteCollector, DeleteTargets, apply_deletes};
pub(crate) use join::join;
pub use keys::KeyColumns;
pub use load_side::{KeyMarkers, LoadSide, Marker};
pub use prune::PartitionFilter;
pub use spec::{DuplicateKeys, MergeCounts, MergeMode, MergeSpec, MergeStrategy, OnDuplicateKeys};
pub use table_side::{TableSide, scan_candidates};
pub(crate) use winners::{Fingerprints, read_winners, write_winners};

pub(crate) const SEQ_COLUMN: &str = "__floe_seq";
pub(crate) const FILE_COLUMN: &str = "__floe_file";
pub(crate) const POS_COLUMN: &str = "__floe_pos";
