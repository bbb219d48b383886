//! An append-only store of byte records: kept in memory until a 1 MiB tail fills, then
//! appended to an anonymous temporary file (unlinked from the start, so nothing is left behind
//! even if the process is killed). Callers keep where each record starts; a merge's candidate
//! list and the positions its candidates already have deleted live here instead of in memory.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, ResultExt};

/// Bytes of records kept in memory before they go to the file.
const TAIL_BYTES: usize = 1 << 20;

pub struct Records {
    /// Records not written to the file yet; they start at offset `flushed`.
    tail: Vec<u8>,
    flushed: u64,
    file: Option<File>,
    spill_dir: Option<PathBuf>,
    /// What the records are, for errors: "the merge's candidate list".
    what: &'static str,
}

impl Records {
    /// An empty store whose records spill to an anonymous file in `spill_dir` (default: the
    /// system temp dir).
    pub fn new(spill_dir: Option<&Path>, what: &'static str) -> Self {
        Self {
            tail: Vec::new(),
            flushed: 0,
            file: None,
            spill_dir: spill_dir.map(Path::to_path_buf),
            what,
        }
    }

    /// Where the next record starts: the offset of everything appended so far.
    pub fn end(&self) -> u64 {
        self.flushed + self.tail.len() as u64
    }

    /// The record being written: append its bytes, then call [`Records::done`].
    pub fn tail(&mut self) -> &mut Vec<u8> {
        &mut self.tail
    }

    /// Ends a record: spills the tail once it is full.
    pub fn done(&mut self) -> Result<()> {
        if self.tail.len() < TAIL_BYTES {
            return Ok(());
        }
        let what = self.what;
        let ctx = || format!("cannot spill {what}");
        if self.file.is_none() {
            let file = match &self.spill_dir {
                Some(dir) => tempfile::tempfile_in(dir),
                None => tempfile::tempfile(),
            };
            self.file = Some(file.context(ctx)?);
        }
        let file = self.file.as_mut().expect("just created");
        file.write_all(&self.tail).context(ctx)?;
        self.flushed += self.tail.len() as u64;
        self.tail.clear();
        Ok(())
    }

    /// The bytes from `start` to `end`.
    pub fn read(&self, start: u64, end: u64) -> Result<Vec<u8>> {
        if start >= self.flushed {
            let at = (start - self.flushed) as usize;
            return Ok(self.tail[at..at + (end - start) as usize].to_vec());
        }
        let mut buf = vec![0; (end - start) as usize];
        let file = self
            .file
            .as_ref()
            .expect("records before `flushed` are in the file");
        let what = self.what;
        file.read_exact_at(&mut buf, start)
            .context(|| format!("cannot read {what} back"))?;
        Ok(buf)
    }

    /// Whether some records went to the file (for tests).
    #[cfg(test)]
    pub fn spilled(&self) -> bool {
        self.flushed > 0
    }
}

/// Appends `bytes` with their length in front.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A record being decoded: fields are taken from the front.
pub struct Record<'a>(pub &'a [u8]);

impl Record<'_> {
    pub fn take<const N: usize>(&mut self) -> Option<&[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(head)
    }

    /// Bytes [`put_bytes`] appended.
    pub fn bytes(&mut self) -> Option<&[u8]> {
        let len = usize::try_from(u64::from_le_bytes(*self.take::<8>()?)).ok()?;
        let (head, rest) = (self.0.get(..len)?, self.0.get(len..)?);
        self.0 = rest;
        Some(head)
    }
}
