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

/// Move the fully written directory `tmp` to `dest`, replacing any previous `dest`.
pub fn replace_dir(tmp: &Path, dest: &Path) -> std::io::Result<()> {
    sync_tree(tmp)?;
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if dest.exists() {
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
