//! Load progress counters, shared between the pipeline and whoever reports (CLI bar, logs),
//! and the switch that cancels a load (Ctrl-C in the CLI).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::{FloeError, Result};

/// Monotonic counters updated by the pipeline stages. Cheap to update from any thread.
#[derive(Debug, Default)]
pub struct Progress {
    input_bytes_total: AtomicU64,
    input_bytes: AtomicU64,
    input_rows: AtomicU64,
    input_files: AtomicU64,
    files_written: AtomicU64,
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
        }
    }
}
