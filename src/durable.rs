//! Durable replacement of files and directories: the new version is prepared under a temporary name, synced,
//! and renamed into place, so a crash at any moment leaves either the old or the new version.
//! And the check that a file to be read is a regular file (a fifo or a device would block or
//! never end).

use std::fs;
use std::io::Write;
use std::path::Path;

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// fsync every file directly inside `dir`, then `dir` itself.
pub fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_file() {
            fs::File::open(&p)?.sync_all()?;
        }
    }
    sync_dir(dir)
}

/// Move the fully written directory `tmp` to `dest`, replacing any previous `dest`. A complete
/// copy is under `dest` at every moment: the two are exchanged in one step (Linux's
/// `renameat2(RENAME_EXCHANGE)`), and the old copy, now under `tmp`'s name, is removed after.
/// Where the file system cannot exchange, the old copy is first renamed to `.NAME.old-PID`
/// beside `dest`; a kill between that rename and the next leaves it there, and
/// [`restore_old`] puts it back.
pub fn replace_dir(tmp: &Path, dest: &Path) -> std::io::Result<()> {
    sync_tree(tmp)?;
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if dest.exists() {
        if exchange(tmp, dest)? {
            crate::seams::kill_at("dir-swapped");
            sync_dir(parent)?;
            return fs::remove_dir_all(tmp);
        }
        let old = parent.join(format!(
            ".{}.old-{}",
            dest.file_name().and_then(|n| n.to_str()).unwrap_or("dir"),
            std::process::id()
        ));
        fs::rename(dest, &old)?;
        fs::rename(tmp, dest)?;
        fs::remove_dir_all(&old)?;
    } else {
        fs::rename(tmp, dest)?;
    }
    sync_dir(parent)
}

/// Swap `a` and `b` atomically; `Ok(false)` where the file system (or the C library) cannot.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: two valid NUL-terminated paths, relative to the working directory
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<bool> {
    Ok(false)
}

/// Put back what a [`replace_dir`] killed between its two renames left in `dir`: each
/// `.NAME.old-PID` whose writer is dead goes back to `NAME` when `NAME` holds no complete copy
/// (`complete` says which do), and is removed otherwise. Returns what was restored and what was
/// removed.
pub fn restore_old(
    dir: &Path,
    complete: impl Fn(&Path) -> bool,
    alive: impl Fn(u32) -> bool,
) -> std::io::Result<(Vec<std::path::PathBuf>, Vec<std::path::PathBuf>)> {
    let (mut restored, mut removed) = (Vec::new(), Vec::new());
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok((restored, removed));
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((base, pid)) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".old-"))
            .and_then(|(b, p)| Some((b.to_string(), p.parse::<u32>().ok()?)))
        else {
            continue;
        };
        if pid != std::process::id() && alive(pid) {
            continue;
        }
        let (old, dest) = (e.path(), dir.join(&base));
        if !complete(&dest) && complete(&old) {
            if dest.exists() {
                fs::remove_dir_all(&dest)?;
            }
            fs::rename(&old, &dest)?;
            restored.push(dest);
        } else {
            fs::remove_dir_all(&old)?;
            removed.push(old);
        }
    }
    sync_dir(dir)?;
    restored.sort();
    removed.sort();
    Ok((restored, removed))
}

/// Write `bytes` to `path` through a temporary file and a rename.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(parent)
}

/// `Ok` when `path` is a regular file (after following links); a fifo, a device, a socket or a
/// directory is an `InvalidInput` error saying so, before anything opens it (opening a fifo
/// blocks until a writer comes; `/dev/zero` never ends).
pub fn check_regular(path: &Path) -> std::io::Result<()> {
    let kind = fs::metadata(path)?.file_type();
    if kind.is_file() {
        return Ok(());
    }
    use std::os::unix::fs::FileTypeExt;
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a fifo"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{what}, not a regular file"),
    ))
}
