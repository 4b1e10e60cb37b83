//! plantd's own Odoo module, `plantd_apply`, shipped inside the binary (its source is in
//! `src/apply/odoo_module/plantd_apply/`).
//!
//! Installed in an Odoo, it adds the model `plantd.apply`, whose `run` carries out a batch of
//! runs (what the apply would otherwise send as one `load` each, plus the transfers of stock
//! moves) in one call and one database transaction, in the order given, with the same public
//! methods and the caller's access rights. The transfers of a batch's moves (one per move) are
//! validated together at the end of the batch, which is what makes a mix of creates and moves
//! fast; a refusal there makes it carry the batch out again run by run, to name the run. The apply uses it whenever the Odoo it applies to
//! has it ([`installed`]), and its own calls otherwise: the results are the same, only the
//! number of round trips differs. The plant's stack mounts it on Odoo's addons path and
//! installs it in the database it creates; any other Odoo gets it from `plantd apply
//! odoo-module DIR` and its Apps menu.

use std::path::Path;

use crate::odoo::Client;

/// The module's technical name.
pub const NAME: &str = "plantd_apply";

/// The model whose `run` takes a batch.
pub const MODEL: &str = "plantd.apply";

/// Where the plant's stack mounts the module's parent directory in Odoo's container.
pub const MOUNT: &str = "/mnt/plantd-addons";

/// The module's files, relative to its directory.
const FILES: &[(&str, &str)] = &[
    (
        "__manifest__.py",
        include_str!("odoo_module/plantd_apply/__manifest__.py"),
    ),
    (
        "__init__.py",
        include_str!("odoo_module/plantd_apply/__init__.py"),
    ),
    (
        "models/__init__.py",
        include_str!("odoo_module/plantd_apply/models/__init__.py"),
    ),
    (
        "models/plantd_apply.py",
        include_str!("odoo_module/plantd_apply/models/plantd_apply.py"),
    ),
];

/// Writes the module into `parent/plantd_apply`, files 0644 and directories 0755 (Odoo reads
/// them as its own user); a file that already says the same is not written again.
pub fn write(parent: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let root = parent.join(NAME);
    for (name, text) in FILES {
        let path = root.join(name);
        let dir = path.parent().expect("a file in the module");
        std::fs::create_dir_all(dir)?;
        for d in [parent, root.as_path(), dir] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        }
        if std::fs::read_to_string(&path).ok().as_deref() != Some(*text) {
            crate::fsutil::write_atomic(&path, text.as_bytes(), 0o644)
                .map_err(|e| std::io::Error::other(format!("{}: {e:#}", path.display())))?;
        }
        // Readable by Odoo's user whatever narrowed it meanwhile.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// The connection's cache entry that says whether this Odoo has the module (1) or not (0).
const INSTALLED: &str = "installed plantd.apply";

/// Whether the Odoo behind `c` was last seen with the module.
pub fn installed(c: &Client) -> bool {
    c.cached(INSTALLED) == Some(1)
}

/// Records whether the Odoo behind `c` has the module.
pub fn set_installed(c: &Client, yes: bool) {
    c.remember(INSTALLED.to_string(), i64::from(yes));
}
