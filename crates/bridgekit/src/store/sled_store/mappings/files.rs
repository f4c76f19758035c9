//! The directory that holds the runs, one file each, next to sled's own files.
//!
//! Why files and not sled values: a run is written once, read by block and deleted whole,
//! which a file does with no bookkeeping, while every sled value of every run ever written
//! leaves page stubs and segment state in sled's memory (RSS grew with the store's log, see
//! `docs/store-memory.md`). Reads go through the kernel's page cache, which the kernel
//! shrinks under pressure and which is not the process's memory.
//!
//! A file named `<id>.run` is always complete: runs are written as `<id>.run.partial`,
//! synced, renamed, and the directory synced, before the manifest names them. Anything else
//! in the directory (a partial file, a run no longer live) is removed when the store opens.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::store::StoreError;

const FINISHED: &str = ".run";
const PARTIAL: &str = ".run.partial";

pub(super) fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{what} {}: {e}", path.display()))
}

/// The runs' directory. Cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct RunDir {
    path: Arc<PathBuf>,
}

impl RunDir {
    /// Opens (creating it if needed) the directory at `path`.
    pub(super) fn open(path: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path).map_err(|e| io("creating", path, e))?;
        Ok(Self {
            path: Arc::new(path.to_owned()),
        })
    }

    /// Where run `id` lives once finished.
    pub(super) fn finished(&self, id: u64) -> PathBuf {
        self.path.join(format!("{id}{FINISHED}"))
    }

    /// Where run `id` is written.
    pub(super) fn partial(&self, id: u64) -> PathBuf {
        self.path.join(format!("{id}{PARTIAL}"))
    }

    /// Makes the partial file of run `id` its finished file, durably.
    pub(super) fn publish(&self, id: u64) -> Result<(), StoreError> {
        let (from, to) = (self.partial(id), self.finished(id));
        std::fs::rename(&from, &to).map_err(|e| io("renaming", &from, e))?;
        self.sync()
    }

    /// Syncs the directory itself, so that created, renamed and removed names survive a
    /// crash.
    fn sync(&self) -> Result<(), StoreError> {
        File::open(&*self.path)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io("syncing", &self.path, e))
    }

    /// Removes run `id`'s files; a file already gone is fine.
    pub(super) fn remove(&self, id: u64) -> Result<(), StoreError> {
        for path in [self.finished(id), self.partial(id)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io("removing", &path, e)),
            }
        }
        Ok(())
    }

    /// Removes every file that is not the finished file of a run in `live`.
    pub(super) fn keep_only(&self, live: &[u64]) -> Result<(), StoreError> {
        let entries = std::fs::read_dir(&*self.path).map_err(|e| io("listing", &self.path, e))?;
        let mut removed = false;
        for entry in entries {
            let entry = entry.map_err(|e| io("listing", &self.path, e))?;
            let name = entry.file_name();
            let keep = name
                .to_str()
                .and_then(|n| n.strip_suffix(FINISHED))
                .and_then(|id| id.parse::<u64>().ok())
                .is_some_and(|id| live.contains(&id));
            if !keep {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|e| io("removing", &path, e))?;
                removed = true;
            }
        }
        if removed {
            self.sync()?;
        }
        Ok(())
    }

    /// Bytes the files take.
    pub(super) fn size(&self) -> u64 {
        std::fs::read_dir(&*self.path)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// Reads exactly `buf.len()` bytes of `file` at `offset`, without moving a shared cursor
/// (readers share the file).
pub(super) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let (mut buf, mut offset) = (buf, offset);
        while !buf.is_empty() {
            match std::os::windows::fs::FileExt::seek_read(file, buf, offset)? {
                0 => return Err(ErrorKind::UnexpectedEof.into()),
                n => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }
}
