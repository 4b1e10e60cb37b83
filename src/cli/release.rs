//! `plantd release verify FILE --version V --signature SIG`: checks a plantd binary against the
//! release keys this plant pins, as the plant does before it runs an update. For an admin who
//! carries a release to a plant by hand (`plantd hub release list --json` gives the signature).

use anyhow::{bail, Context};

use crate::config::PlantConfig;
use crate::release::{self, Manifest};

pub fn verify(
    config: &PlantConfig,
    file: &std::path::Path,
    version: &str,
    signature: &str,
) -> anyhow::Result<()> {
    if config.release_keys.is_empty() {
        bail!("this plant pins no release key: add the public key from `plantd hub release keygen` to [update] release_keys in plant.toml");
    }
    let binary = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let manifest = Manifest::of(version, &binary)?;
    let which = release::verify(&config.release_keys, &manifest, signature)
        .with_context(|| format!("{}", file.display()))?;
    println!(
        "{}: version {} ({} bytes, sha256 {}) is signed by {}",
        file.display(),
        manifest.version,
        manifest.size,
        manifest.sha256,
        config.release_keys[which]
    );
    Ok(())
}
