//! One writer per run or sweep directory: an advisory lock (`flock(2)`) on `DIR/.jumpscope.lock`,
//! held for as long as a job writes the directory and released by the kernel when its process
//! ends, however it ends. The file holds the writer's process id, for the refusal's message.
//! Readers (`watch`, `eval`, `inspect`, `doctor`, `compare`) take no lock.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name inside a run or sweep directory.
pub const LOCK_FILE: &str = ".jumpscope.lock";

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process writes it.
    #[error(
        "{dir}: another jumpscope process (pid {pid}) is writing it; follow it with `jumpscope watch {dir}`, or wait for it to end"
    )]
    Held {
        /// The directory.
        dir: PathBuf,
        /// The holder's process id, as its lock file says.
        pid: String,
    },
    /// The lock file could not be opened or locked.
    #[error("{path}: cannot lock it: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl DirLock {
    /// Lock `dir` (which must exist) for this process, or say who holds it.
    pub fn take(dir: &Path) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock(2) on a descriptor this function owns
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::WouldBlock {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.into()
                    },
                });
            }
            return Err(io(err));
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Self { file, path })
    }

    /// Whether the locked directory is still where it was: its lock file still found under its
    /// path, the very file locked (not deleted with the directory, nor a new one in a directory
    /// made again under the same name).
    pub fn in_place(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(&self.path), self.file.metadata()) {
            (Ok(now), Ok(held)) => now.dev() == held.dev() && now.ino() == held.ino(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_until_the_first_lets_go() {
        let d = tempfile::tempdir().unwrap();
        let first = DirLock::take(d.path()).unwrap();
        match DirLock::take(d.path()) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("{other:?}"),
        }
        assert!(first.in_place());
        drop(first);
        let again = DirLock::take(d.path()).unwrap();
        // the directory deleted, then made again under its name: not the one locked
        std::fs::remove_dir_all(d.path()).unwrap();
        assert!(!again.in_place());
        std::fs::create_dir(d.path()).unwrap();
        std::fs::write(d.path().join(LOCK_FILE), "1").unwrap();
        assert!(!again.in_place());
    }
}
