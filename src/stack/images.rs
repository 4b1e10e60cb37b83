//! Image bundles: the `docker save` tar that `plantd images save` writes and `plantd images
//! load` reads, checked before Docker sees it so that a wrong file gets a clear refusal.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

#[derive(Deserialize)]
struct ManifestEntry {
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
}

/// Checks that `file` is a `docker save` bundle and returns the image tags it carries.
pub fn check_bundle(file: &Path) -> anyhow::Result<Vec<String>> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    check_reader(f).with_context(|| format!("{} is not an image bundle", file.display()))
}

fn check_reader(reader: impl Read) -> anyhow::Result<Vec<String>> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().context("not a tar archive")?;
    let mut tags = None;
    // Every entry is read to its end, so that a truncated bundle is caught here, not halfway
    // through Docker's load.
    for entry in entries {
        let mut entry = entry.context("the tar archive is damaged or truncated")?;
        let path = entry.path().context("an entry has an unreadable name")?;
        let size = entry.size();
        let name = path.display().to_string();
        let truncated = || anyhow::anyhow!("the tar archive is damaged or truncated (in {name})");
        if path.as_os_str() != "manifest.json" {
            let read = std::io::copy(&mut entry, &mut std::io::sink()).map_err(|_| truncated())?;
            if read != size {
                return Err(truncated());
            }
            continue;
        }
        if entry.size() > 16 * 1024 * 1024 {
            bail!("its manifest.json is over 16 MiB");
        }
        let mut text = String::new();
        let read = entry.read_to_string(&mut text).map_err(|_| truncated())?;
        if read as u64 != size {
            return Err(truncated());
        }
        let manifest: Vec<ManifestEntry> = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("manifest.json, line {}: {e}", e.line()))?;
        let found: Vec<String> = manifest
            .into_iter()
            .flat_map(|m| m.repo_tags.unwrap_or_default())
            .collect();
        if found.is_empty() {
            bail!("its manifest.json names no image");
        }
        tags = Some(found);
    }
    tags.ok_or_else(|| {
        anyhow::anyhow!(
            "it has no manifest.json (make bundles with `plantd images save` or `docker save`)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(name: &str, content: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, content).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn bundles_are_checked() {
        let good = tar_with(
            "manifest.json",
            br#"[{"Config":"x.json","RepoTags":["postgres:15"],"Layers":[]}]"#,
        );
        assert_eq!(check_reader(&good[..]).unwrap(), vec!["postgres:15"]);

        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"hello, not a tar".to_vec(), "damaged or truncated"),
            (tar_with("other.txt", b"x"), "no manifest.json"),
            (tar_with("manifest.json", b"{nope"), "manifest.json, line 1"),
            (tar_with("manifest.json", b"[]"), "names no image"),
            (good[..540].to_vec(), "damaged or truncated"),
        ];
        for (bytes, want) in cases {
            let e = format!("{:#}", check_reader(&bytes[..]).unwrap_err());
            assert!(e.contains(want), "{e:?} should say {want:?}");
        }
    }
}
