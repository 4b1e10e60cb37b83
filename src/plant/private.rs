//! Keeps the data directory private: it holds the journal, the device tokens' hashes, the
//! admins' password hashes, TLS keys, the stack's passwords and backups. A directory made by
//! plantd is 0700 from the start; one that was there before (made by hand, or restored by a
//! tool that kept its own modes) is brought to that at start, with a warning naming what was
//! wider, so that no other local user reads a database or a key.
//!
//! A file its owner may run keeps that (0700), so a binary kept beside its data still runs.
//! What is left as it is: certificates (`*.crt`, public), `releases/` (the previous binary,
//! which must stay executable), Odoo's config in `stack/` (0600 and given to the user Odoo
//! runs as, who reads it through a bind mount: the stack's supervisor sees to it),
//! `stack/addons/` (plantd's own Odoo modules, read by Odoo's user the same way; they hold no
//! secret), and anything reached through a symbolic link (it may be outside the data
//! directory).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// How deep below the data directory modes are checked (`stack/`, `tls/`, `backups/…`).
const MAX_DEPTH: usize = 4;

/// Brings the data directory to 0700 and its files to 0600 (as the module says); returns
/// each path that other local users could read, with its old mode, each also logged as a
/// warning. A file that was wider inside a directory that kept everyone out (SQLite makes its
/// files 0644) is narrowed without a word. Errors are warnings: a file plantd cannot change
/// is one it did not write.
pub fn enforce(data_dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut widened = Vec::new();
    visit(data_dir, 0, false, &mut widened);
    for (path, mode) in &widened {
        let now = if path.is_dir() { "0700" } else { "0600" };
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:04o}"),
            "{} was readable by other local users (mode {mode:04o}); its mode is now {now}",
            path.display(),
        );
    }
    widened
}

/// `exposed`: whether other users could reach `dir` through its parents.
fn visit(dir: &Path, depth: usize, exposed: bool, widened: &mut Vec<(PathBuf, u32)>) {
    // The data directory's own parents are the admin's business: only its mode counts.
    let exposed = restrict(dir, 0o700, depth == 0 || exposed, widened);
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if kind.is_dir() {
            if depth == 0 && name == "releases" {
                continue;
            }
            // plantd's Odoo modules, which Odoo's own user reads through a bind mount.
            if depth == 1 && name == "addons" && dir.file_name().is_some_and(|d| d == "stack") {
                continue;
            }
            visit(&path, depth + 1, exposed, widened);
        } else if kind.is_file() && !kept(&path, &name) {
            restrict(&path, 0o600, exposed, widened);
        }
    }
}

/// Files whose mode is left alone (see the module).
fn kept(path: &Path, name: &str) -> bool {
    let in_stack = path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|p| p == "stack");
    name.ends_with(".crt") || (in_stack && name.starts_with("odoo-") && name.ends_with(".conf"))
}

/// Narrows `path` to `mode` when it is wider; says whether others could get into it (a
/// directory that was searchable by them, reached from an exposed parent).
fn restrict(path: &Path, mode: u32, reachable: bool, widened: &mut Vec<(PathBuf, u32)>) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    let old = meta.permissions().mode() & 0o7777;
    if old & 0o077 == 0 {
        return false;
    }
    let searchable = reachable && old & 0o011 != 0;
    // A program kept there (a binary beside its data) stays one for its owner.
    let mode = if meta.is_file() {
        mode | (old & 0o100)
    } else {
        mode
    };
    match fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        Ok(()) if reachable => widened.push((path.to_path_buf(), old)),
        Ok(()) => tracing::debug!(path = %path.display(), "mode narrowed to {mode:04o}"),
        Err(e) => tracing::warn!(
            path = %path.display(),
            error = %e,
            "{} is readable by other local users and its mode could not be changed; make it {mode:04o}",
            path.display()
        ),
    }
    searchable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_wide_data_directory_is_made_private() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        fs::create_dir_all(data.join("stack")).unwrap();
        fs::create_dir_all(data.join("tls")).unwrap();
        fs::create_dir_all(data.join("releases")).unwrap();
        let files = [
            "journal.db",
            "state.db",
            "admin.db-wal",
            "stack/secrets.json",
            "tls/api.key",
            "tls/api.crt",
            "stack/odoo-0123.conf",
            "releases/plantd",
        ];
        for f in files {
            fs::write(data.join(f), b"x").unwrap();
            fs::set_permissions(data.join(f), fs::Permissions::from_mode(0o644)).unwrap();
        }
        for d in ["", "stack", "tls"] {
            fs::set_permissions(data.join(d), fs::Permissions::from_mode(0o755)).unwrap();
        }
        let widened = enforce(&data);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("stack")), 0o700);
        for f in [
            "journal.db",
            "state.db",
            "admin.db-wal",
            "stack/secrets.json",
            "tls/api.key",
        ] {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
        }
        for f in ["tls/api.crt", "stack/odoo-0123.conf", "releases/plantd"] {
            assert_eq!(mode(&data.join(f)), 0o644, "{f} is left");
        }
        assert_eq!(widened.len(), 8, "{widened:?}");
        assert!(enforce(&data).is_empty(), "nothing to do the second time");
        // SQLite's 0644 files in a 0700 directory are narrowed, but nobody could read them.
        fs::set_permissions(data.join("state.db"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(enforce(&data).is_empty());
        assert_eq!(mode(&data.join("state.db")), 0o600);
        // A program kept in the data directory still runs for its owner.
        fs::create_dir_all(data.join("bin")).unwrap();
        fs::write(data.join("bin/plantd"), b"x").unwrap();
        fs::set_permissions(data.join("bin/plantd"), fs::Permissions::from_mode(0o755)).unwrap();
        enforce(&data);
        assert_eq!(mode(&data.join("bin/plantd")), 0o700);
    }

    #[test]
    fn the_odoo_modules_the_stack_mounts_stay_readable_by_odoo() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let addons = data.join("stack/addons");
        fs::create_dir_all(&addons).unwrap();
        crate::apply::odoo_module::write(&addons).unwrap();
        enforce(&data);
        assert_eq!(mode(&data.join("stack")), 0o700);
        let module = addons.join("plantd_apply");
        assert_eq!(mode(&module), 0o755);
        assert_eq!(mode(&module.join("models")), 0o755);
        assert_eq!(mode(&module.join("__manifest__.py")), 0o644);
        assert_eq!(mode(&module.join("models/plantd_apply.py")), 0o644);
    }
}
