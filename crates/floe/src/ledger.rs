//! The file ledger: every file a load writes, recorded when it is started, and the one place
//! that deletes them when the load does not land.
//!
//! Writers (data files, copied files, position-delete files, the added-files manifests) record
//! each location before the first byte is written, so a load that fails at any point, in any
//! task, leaves no file the ledger does not know. What happens to them is decided once, by the
//! load's end ([`Fate`]): kept when the snapshot landed or may have landed (a commit whose
//! outcome is unknown: the table may reference them), deleted otherwise.

use std::sync::{Arc, Mutex};

use iceberg::io::FileIO;
use iceberg::spec::PartitionKey;
use iceberg::writer::file_writer::location_generator::LocationGenerator;

use crate::error::FloeError;

/// The files of one load. Clones share one record.
#[derive(Clone, Debug, Default)]
pub struct FileLedger {
    files: Arc<Mutex<Vec<String>>>,
    observer: Arc<Mutex<Option<Observer>>>,
}

/// Told of every file a ledger records, before the file's first byte (a distributed load's
/// worker reports its files to the job's own ledger this way). An error fails the load.
pub type FileObserver = Arc<dyn Fn(&str) -> std::result::Result<(), String> + Send + Sync>;

#[derive(Clone)]
struct Observer {
    tell: FileObserver,
    /// The first error the observer answered.
    failed: Option<String>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// What becomes of a load's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The snapshot landed and references them.
    Keep,
    /// The table may reference them (the commit's outcome is unknown): nothing may go.
    KeepInDoubt,
    /// Nothing references them: the load failed, or another run with its load id landed.
    Delete,
}

impl Fate {
    /// The fate of the files of a load that ended with `error`.
    pub fn after(error: &FloeError) -> Self {
        if error.keeps_written_files() {
            Fate::KeepInDoubt
        } else {
            Fate::Delete
        }
    }
}

impl FileLedger {
    /// Records a file about to be written (and tells the observer, if there is one).
    pub fn record(&self, location: &str) {
        self.lock().push(location.to_string());
        let tell = self.observer_lock().as_ref().map(|o| o.tell.clone());
        if let Some(tell) = tell
            && let Err(e) = tell(location)
        {
            let mut observer = self.observer_lock();
            if let Some(o) = observer.as_mut() {
                o.failed.get_or_insert(format!("{location}: {e}"));
            }
        }
    }

    /// Tells `observer` of every file recorded from now on.
    pub fn observe(&self, observer: FileObserver) {
        *self.observer_lock() = Some(Observer {
            tell: observer,
            failed: None,
        });
    }

    /// The first file the observer could not be told of, and why.
    pub fn observer_failed(&self) -> Option<String> {
        self.observer_lock().as_ref().and_then(|o| o.failed.clone())
    }

    fn observer_lock(&self) -> std::sync::MutexGuard<'_, Option<Observer>> {
        self.observer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The files recorded so far.
    #[cfg(test)]
    pub fn files(&self) -> Vec<String> {
        self.lock().clone()
    }

    /// Settles the load's files: deletes them (best effort, a failure is logged) unless `fate`
    /// keeps them. Returns how many files were deleted.
    pub async fn settle(&self, file_io: &FileIO, fate: Fate) -> usize {
        let files = std::mem::take(&mut *self.lock());
        match fate {
            Fate::Keep => 0,
            Fate::KeepInDoubt => {
                tracing::warn!(
                    files = files.len(),
                    "keeping the load's files: the table may reference them"
                );
                0
            }
            Fate::Delete => {
                let mut deleted = 0;
                for path in &files {
                    match file_io.delete(path).await {
                        Ok(()) => deleted += 1,
                        Err(e) => {
                            tracing::warn!(file = %path, error = %e, "could not delete a file of the failed load")
                        }
                    }
                }
                deleted
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        // A writer that panicked mid-record leaves a whole list: recover it.
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A location generator that records every location it hands out in a [`FileLedger`].
#[derive(Clone, Debug)]
pub struct LedgerLocations<L> {
    inner: L,
    ledger: FileLedger,
}

impl<L> LedgerLocations<L> {
    pub fn new(inner: L, ledger: FileLedger) -> Self {
        Self { inner, ledger }
    }
}

impl<L: LocationGenerator> LocationGenerator for LedgerLocations<L> {
    fn generate_location(&self, partition_key: Option<&PartitionKey>, file_name: &str) -> String {
        let location = self.inner.generate_location(partition_key, file_name);
        self.ledger.record(&location);
        location
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::io::{FileIOBuilder, LocalFsStorageFactory};

    fn local_io() -> FileIO {
        FileIOBuilder::new(Arc::new(LocalFsStorageFactory)).build()
    }

    fn files_in(dir: &std::path::Path, names: &[&str]) -> Vec<String> {
        names
            .iter()
            .map(|n| {
                let p = dir.join(n);
                std::fs::write(&p, b"x").unwrap();
                p.to_string_lossy().into_owned()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_failed_load_deletes_every_recorded_file_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = FileLedger::default();
        let other = ledger.clone();
        let ours = files_in(dir.path(), &["a.parquet", "b.parquet", "m0.avro"]);
        let theirs = files_in(dir.path(), &["other.parquet"]);
        ledger.record(&ours[0]);
        other.record(&ours[1]);
        ledger.record(&ours[2]);
        let deleted = ledger.settle(&local_io(), Fate::Delete).await;
        assert_eq!(deleted, 3);
        assert!(ours.iter().all(|p| !std::path::Path::new(p).exists()));
        assert!(std::path::Path::new(&theirs[0]).exists());
        assert!(ledger.files().is_empty(), "settled files are forgotten");
    }

    #[tokio::test]
    async fn landed_and_in_doubt_loads_keep_their_files() {
        let dir = tempfile::tempdir().unwrap();
        for fate in [Fate::Keep, Fate::KeepInDoubt] {
            let ledger = FileLedger::default();
            let files = files_in(dir.path(), &["kept.parquet"]);
            ledger.record(&files[0]);
            assert_eq!(ledger.settle(&local_io(), fate).await, 0);
            assert!(std::path::Path::new(&files[0]).exists(), "{fate:?}");
        }
    }

    #[test]
    fn only_an_unknown_commit_outcome_keeps_files() {
        let unknown = FloeError::CommitStateUnknown {
            table: "t".into(),
            load_id: "l".into(),
            reason: "timeout".into(),
        };
        assert_eq!(Fate::after(&unknown), Fate::KeepInDoubt);
        assert_eq!(Fate::after(&FloeError::Cancelled), Fate::Delete);
        let conflict = FloeError::Conflict {
            table: "t".into(),
            reason: "r".into(),
        };
        assert_eq!(Fate::after(&conflict), Fate::Delete);
    }

    #[test]
    fn an_observer_hears_of_every_file_and_its_failure_is_kept() {
        let ledger = FileLedger::default();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = heard.clone();
        ledger.clone().observe(Arc::new(move |path: &str| {
            sink.lock().unwrap().push(path.to_string());
            if path.ends_with("b") {
                Err("actor gone".into())
            } else {
                Ok(())
            }
        }));
        ledger.record("a");
        assert_eq!(ledger.observer_failed(), None);
        ledger.record("b");
        ledger.record("c");
        assert_eq!(*heard.lock().unwrap(), ["a", "b", "c"]);
        assert_eq!(ledger.files(), ["a", "b", "c"]);
        assert_eq!(ledger.observer_failed().as_deref(), Some("b: actor gone"));
    }

    #[test]
    fn locations_handed_out_are_recorded() {
        #[derive(Clone, Debug)]
        struct Fixed;
        impl LocationGenerator for Fixed {
            fn generate_location(&self, _: Option<&PartitionKey>, name: &str) -> String {
                format!("/w/t/data/{name}")
            }
        }
        let ledger = FileLedger::default();
        let locations = LedgerLocations::new(Fixed, ledger.clone());
        assert_eq!(
            locations.generate_location(None, "f.parquet"),
            "/w/t/data/f.parquet"
        );
        assert_eq!(ledger.files(), vec!["/w/t/data/f.parquet".to_string()]);
    }
}
