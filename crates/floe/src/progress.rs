//! Load progress counters, shared between the pipeline and whoever reports (CLI bar, logs),
//! and the switch that cancels a load (Ctrl-C in the CLI).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use crate::error::{FloeError, Result};

/// What a load is doing. Reading the input is most of a plain load; a merge then spends its
/// time on the table's side (a spread upsert into 300,000 files: a minute after the last input
/// row), which the input counters alone would show as a stalled read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    #[default]
    Reading = 0,
    /// A merge reads the keys of the table's candidate files (`stage_done` of `stage_total`).
    MatchingKeys = 1,
    /// A merge hides or rewrites the matched rows, one data file at a time (`stage_done` files).
    ApplyingDeletes = 2,
    /// The last data files are written (a partitioned load's clustered partitions).
    FinishingFiles = 3,
    /// The snapshot goes to the catalog.
    Committing = 4,
}

impl Stage {
    fn from_u8(n: u8) -> Self {
        match n {
            1 => Self::MatchingKeys,
            2 => Self::ApplyingDeletes,
            3 => Self::FinishingFiles,
            4 => Self::Committing,
            _ => Self::Reading,
        }
    }

    /// The stage in a few words, for progress lines.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Reading => "reading input",
            Self::MatchingKeys => "matching keys against the table",
            Self::ApplyingDeletes => "applying matches to table files",
            Self::FinishingFiles => "finishing data files",
            Self::Committing => "committing",
        }
    }
}

/// Monotonic counters updated by the pipeline stages. Cheap to update from any thread.
#[derive(Debug, Default)]
pub struct Progress {
    input_bytes_total: AtomicU64,
    input_bytes: AtomicU64,
    input_rows: AtomicU64,
    input_files: AtomicU64,
    files_written: AtomicU64,
    stage: AtomicU8,
    stage_done: AtomicU64,
    stage_total: AtomicU64,
    cancelled: AtomicBool,
}

/// A consistent-enough copy of the counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgressSnapshot {
    pub input_bytes_total: u64,
    pub input_bytes: u64,
    pub input_rows: u64,
    pub input_files: u64,
    pub files_written: u64,
    pub stage: Stage,
    /// Items of the stage done (candidate files scanned, files applied); 0 when it counts none.
    pub stage_done: u64,
    /// Items the stage will do, 0 when unknown.
    pub stage_total: u64,
}

impl Progress {
    pub fn set_input_bytes_total(&self, n: u64) {
        self.input_bytes_total.store(n, Ordering::Relaxed);
    }
    pub fn add_input_bytes(&self, n: u64) {
        self.input_bytes.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_input_rows(&self, n: u64) {
        self.input_rows.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_input_file(&self) {
        self.input_files.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add_files_written(&self, n: u64) {
        self.files_written.fetch_add(n, Ordering::Relaxed);
    }
    /// Enters `stage`, which will do `total` items (0: unknown).
    pub fn enter(&self, stage: Stage, total: u64) {
        self.stage_done.store(0, Ordering::Relaxed);
        self.stage_total.store(total, Ordering::Relaxed);
        self.stage.store(stage as u8, Ordering::Relaxed);
    }
    /// One more item of the current stage done.
    pub fn stage_step(&self) {
        self.stage_done.fetch_add(1, Ordering::Relaxed);
    }
    /// Asks the load to stop: the stages reading input fail with [`FloeError::Cancelled`] at
    /// their next batch, and the load deletes its files as after any other failure. A load
    /// already committing finishes its commit.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
    /// `Err(Cancelled)` once [`Self::cancel`] was called.
    pub fn check_cancelled(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(FloeError::Cancelled);
        }
        Ok(())
    }
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            input_bytes_total: self.input_bytes_total.load(Ordering::Relaxed),
            input_bytes: self.input_bytes.load(Ordering::Relaxed),
            input_rows: self.input_rows.load(Ordering::Relaxed),
            input_files: self.input_files.load(Ordering::Relaxed),
            files_written: self.files_written.load(Ordering::Relaxed),
            stage: Stage::from_u8(self.stage.load(Ordering::Relaxed)),
            stage_done: self.stage_done.load(Ordering::Relaxed),
            stage_total: self.stage_total.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_is_reported_with_its_own_count() {
        let p = Progress::default();
        assert_eq!(p.snapshot().stage, Stage::Reading);
        p.add_input_rows(10);
        p.enter(Stage::MatchingKeys, 3);
        p.stage_step();
        p.stage_step();
        let s = p.snapshot();
        assert_eq!(
            (s.stage, s.stage_done, s.stage_total),
            (Stage::MatchingKeys, 2, 3)
        );
        assert_eq!(s.input_rows, 10);
        for stage in [
            Stage::ApplyingDeletes,
            Stage::FinishingFiles,
            Stage::Committing,
        ] {
            p.enter(stage, 0);
            let s = p.snapshot();
            assert_eq!((s.stage, s.stage_done, s.stage_total), (stage, 0, 0));
        }
    }
}
