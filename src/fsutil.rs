//! Files that survive a crash, and the data directory's own: atomic writes, create-once,
//! private directories and lock files. The bottom layer: it uses nothing of plantd's but
//! [`crate::digest`].

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::digest::random_secret;

/// Writes `data` to `path` so that a crash leaves either the old file or the new one.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    // A name of its own (api.key and api.crt must not share one), created fresh so that the
    // mode applies; a leftover from a crash is removed first.
    let tmp = beside(path, ".tmp");
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, data, mode)?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", tmp.display()))?;
    fsync_dir(path);
    Ok(())
}

/// Creates `path` with `data` unless it exists, atomically: written and fsync'd under a name
/// of this writer's own, then linked into place, which fails when another process (the daemon
/// and a CLI command starting at once) made it first. `Ok(false)`: it was there; its content
/// is the other writer's, and this one's is dropped.
pub fn create_once(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<bool> {
    let tmp = beside(
        path,
        &format!(".{}-{}.new", std::process::id(), random_secret()?),
    );
    let linked = write_new(&tmp, data, mode).and_then(|_| match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("linking {} into place", tmp.display())),
    });
    let _ = fs::remove_file(&tmp);
    if let Ok(true) = linked {
        fsync_dir(path);
    }
    linked
}

/// `path` with `suffix` added to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Creates `path` (which must not exist) with `mode`, whatever the umask, and `data`, fsync'd.
fn write_new(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .and_then(|_| f.write_all(data))
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Makes a rename or link into `path`'s directory durable (best effort: some filesystems
/// refuse to fsync a directory, and the file itself is already on disk).
pub fn fsync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    }
}

/// Creates the data directory with mode 0700 if it does not exist.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))
}

/// Takes an exclusive lock on `path` (created if missing) without waiting; held while the
/// returned file is open. `busy` says who holds it.
pub fn lock_file(path: &Path, busy: impl FnOnce() -> String) -> anyhow::Result<fs::File> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => bail!("{}", busy()),
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_writers_racing_to_create_a_file_wins_and_nothing_is_left_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        let made: Vec<bool> = std::thread::scope(|s| {
            let writers: Vec<_> = (0..8)
                .map(|i| {
                    let path = &path;
                    s.spawn(move || create_once(path, format!("writer {i}").as_bytes(), 0o600))
                })
                .collect();
            writers
                .into_iter()
                .map(|w| w.join().unwrap().unwrap())
                .collect()
        });
        assert_eq!(made.iter().filter(|m| **m).count(), 1, "{made:?}");
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("writer "), "{text}");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secrets.json")]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
