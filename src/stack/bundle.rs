//! Image bundles: the `docker save` tar that `plantd images save` writes and `plantd images
//! load` reads, checked before Docker sees it so that a wrong file gets a clear refusal.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::spec::Service;

#[derive(Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config", default)]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
}

/// Checks that `file` is a `docker save` bundle and returns the image tags it carries.
pub fn check_bundle(file: &Path) -> anyhow::Result<Vec<String>> {
    Ok(bundle_images(file)?
        .into_iter()
        .map(|(tag, _)| tag)
        .collect())
}

/// Checks that `file` is a `docker save` bundle and returns its tags, each with the image ID
/// it names (`sha256:…`, from the image's config blob) when the manifest shows it.
pub fn bundle_images(file: &Path) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    check_reader(f).with_context(|| format!("{} is not an image bundle", file.display()))
}

/// The image ID in a manifest's `Config`: `blobs/sha256/HEX` (OCI layout) or `HEX.json`.
fn image_id(config: &str) -> Option<String> {
    let hex = config
        .strip_prefix("blobs/sha256/")
        .or_else(|| config.strip_suffix(".json"))?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

/// An entry's name as Docker resolves it when it loads a bundle: `./manifest.json`,
/// `/manifest.json` and `x/../manifest.json` are all `manifest.json` (Docker cleans each name,
/// and the last entry of a name wins). `None` for a name that climbs out (Docker refuses it).
fn docker_name(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// The image names an OCI `index.json` gives (Docker's containerd image store loads them as
/// tags too), as Docker shows them (`docker.io/library/` left out).
fn index_names(text: &str) -> anyhow::Result<Vec<String>> {
    let index: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("index.json, line {}: {e}", e.line()))?;
    let names = index
        .get("manifests")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("annotations"))
        .filter_map(|a| a.get("io.containerd.image.name"))
        .filter_map(|n| n.as_str())
        .map(|n| {
            n.strip_prefix("docker.io/library/")
                .or_else(|| n.strip_prefix("docker.io/"))
                .unwrap_or(n)
                .to_string()
        })
        .collect();
    Ok(names)
}

fn check_reader(reader: impl Read) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().context("not a tar archive")?;
    let mut tags = None;
    // Every entry Docker would read as the manifest or the OCI index, by its name in the tar.
    let mut manifests: Vec<String> = Vec::new();
    let mut indexes: Vec<String> = Vec::new();
    let mut indexed: Vec<String> = Vec::new();
    // Every entry is read to its end, so that a truncated bundle is caught here, not halfway
    // through Docker's load.
    for entry in entries {
        let mut entry = entry.context("the tar archive is damaged or truncated")?;
        let path = entry.path().context("an entry has an unreadable name")?;
        let size = entry.size();
        let name = path.display().to_string();
        let truncated = || anyhow::anyhow!("the tar archive is damaged or truncated (in {name})");
        let docker = docker_name(&entry.path_bytes());
        if docker.as_deref() == Some("index.json") {
            indexes.push(name.clone());
            if size > 16 * 1024 * 1024 {
                bail!("its index.json ({name}) is over 16 MiB");
            }
            let mut text = String::new();
            let read = entry.read_to_string(&mut text).map_err(|_| truncated())?;
            if read as u64 != size {
                return Err(truncated());
            }
            indexed.extend(index_names(&text)?);
            continue;
        }
        if docker.as_deref() != Some("manifest.json") {
            let read = std::io::copy(&mut entry, &mut std::io::sink()).map_err(|_| truncated())?;
            if read != size {
                return Err(truncated());
            }
            continue;
        }
        manifests.push(name.clone());
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
        let found: Vec<(String, Option<String>)> = manifest
            .into_iter()
            .flat_map(|m| {
                let id = image_id(&m.config);
                m.repo_tags
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |t| (t, id.clone()))
            })
            .collect();
        if found.is_empty() {
            bail!("its manifest.json names no image");
        }
        tags = Some(found);
    }
    // Docker reads one manifest, the last of that name: a bundle with two would be checked as
    // one image and loaded as another.
    for (what, names) in [("manifest.json", &manifests), ("index.json", &indexes)] {
        if names.len() > 1 {
            bail!(
                "it holds {} entries that Docker reads as {what} ({}); a bundle has one (make bundles with `plantd images save` or `docker save`)",
                names.len(),
                names.join(", ")
            );
        }
    }
    if let Some(found) = &tags {
        if let Some(other) = indexed.iter().find(|n| !found.iter().any(|(t, _)| t == *n)) {
            bail!("its index.json names image {other:?}, which its manifest.json does not; Docker would load it under that name too");
        }
    }
    tags.ok_or_else(|| {
        anyhow::anyhow!(
            "it has no manifest.json (make bundles with `plantd images save` or `docker save`)"
        )
    })
}

/// The repository of an image reference: `registry:5000/odoo:17` -> `registry:5000/odoo`.
pub fn repository(image: &str) -> &str {
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].find(':') {
        Some(colon) => &image[..name_start + colon],
        None => image,
    }
}

/// Loads a checked bundle into Docker; returns what Docker said ("Loaded image: …").
pub async fn load(engine: &super::docker::Engine, file: &Path) -> anyhow::Result<Vec<String>> {
    let f = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let body = tokio_util::io::ReaderStream::new(f);
    let options = bollard::query_parameters::ImportImageOptionsBuilder::default().build();
    let mut stream = engine.docker().import_image_stream(options, body, None);
    let mut said = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| anyhow::anyhow!("Docker refused {}: {e}", file.display()))?;
        if let Some(e) = info.error_detail.and_then(|d| d.message) {
            bail!("Docker refused {}: {e}", file.display());
        }
        if let Some(s) = info.stream {
            said.extend(
                s.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string),
            );
        }
    }
    Ok(said)
}

/// A service moved to an image from a release's bundle, for as long as plant.toml (or the
/// image source's default) still gives it `configured`: an admin who names another image in
/// plant.toml gets that one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub configured: String,
    pub image: String,
}

/// The overrides in `STACK_DIR/images.json`, by service.
pub type Overrides = std::collections::BTreeMap<Service, Override>;

fn overrides_path(stack_dir: &Path) -> std::path::PathBuf {
    stack_dir.join("images.json")
}

/// The overrides in force; none when the file is missing.
pub fn read_overrides(stack_dir: &Path) -> anyhow::Result<Overrides> {
    let path = overrides_path(stack_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is damaged; remove it to run the images plant.toml names",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Overrides::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Replaces the overrides (atomically, durably).
pub fn write_overrides(stack_dir: &Path, overrides: &Overrides) -> anyhow::Result<()> {
    std::fs::create_dir_all(stack_dir)
        .with_context(|| format!("creating {}", stack_dir.display()))?;
    let bytes = serde_json::to_vec_pretty(overrides).expect("serializes");
    crate::fsutil::write_atomic(&overrides_path(stack_dir), &bytes, 0o600)
}

/// Which services a bundle with `tags` moves, and to what: those whose configured image has
/// the repository of one of the tags, and does not run that tag already. `configured` is each
/// service's image from plant.toml or the image source; `current` the one it runs now.
pub fn plan(
    configured: &[(Service, String)],
    current: &Overrides,
    tags: &[String],
) -> Vec<(Service, Override)> {
    configured
        .iter()
        .filter_map(|(service, image)| {
            let tag = tags.iter().find(|t| repository(t) == repository(image))?;
            let running = match current.get(service) {
                Some(o) if &o.configured == image => &o.image,
                _ => image,
            };
            (running != tag).then(|| {
                (
                    *service,
                    Override {
                        configured: image.clone(),
                        image: tag.clone(),
                    },
                )
            })
        })
        .collect()
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

    /// A tar whose entry names are written as given (tar::Builder cleans "./" away).
    fn tar_raw(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, content) in entries {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append(&h, *content).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn repositories_and_plans() {
        assert_eq!(repository("odoo:17"), "odoo");
        assert_eq!(
            repository("registry:5000/plantd/odoo:17.0-p1"),
            "registry:5000/plantd/odoo"
        );
        assert_eq!(repository("registry:5000/redis"), "registry:5000/redis");
        assert_eq!(repository("redis"), "redis");
        let configured = vec![
            (Service::Postgres, "plantd-local/postgres:15".to_string()),
            (Service::Redis, "plantd-local/redis:7".to_string()),
            (Service::Odoo, "plantd-local/odoo:19.0".to_string()),
        ];
        let tags = vec![
            "plantd-local/odoo:19.0-p2".to_string(),
            "plantd-local/redis:7".to_string(),
            "other/postgres:16".to_string(),
        ];
        let mut current = Overrides::new();
        let moved = plan(&configured, &current, &tags);
        // Redis runs that tag already; postgres's repository is not in the bundle.
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].0, Service::Odoo);
        assert_eq!(moved[0].1.image, "plantd-local/odoo:19.0-p2");
        current.insert(Service::Odoo, moved[0].1.clone());
        assert!(
            plan(&configured, &current, &tags).is_empty(),
            "applied already"
        );
        // An admin who named another image of the repository in plant.toml is moved from it.
        let edited = vec![(Service::Odoo, "plantd-local/odoo:19.0-p1".to_string())];
        assert_eq!(
            plan(&edited, &current, &tags)[0].1.configured,
            "plantd-local/odoo:19.0-p1"
        );
    }

    #[test]
    fn bundles_are_checked() {
        let good = tar_with(
            "manifest.json",
            br#"[{"Config":"x.json","RepoTags":["postgres:15"],"Layers":[]}]"#,
        );
        assert_eq!(
            check_reader(&good[..]).unwrap(),
            vec![("postgres:15".to_string(), None)]
        );
        let hex = "ab".repeat(32);
        let oci = tar_with(
            "manifest.json",
            format!(r#"[{{"Config":"blobs/sha256/{hex}","RepoTags":["odoo:19-p1"],"Layers":[]}}]"#)
                .as_bytes(),
        );
        assert_eq!(
            check_reader(&oci[..]).unwrap(),
            vec![("odoo:19-p1".to_string(), Some(format!("sha256:{hex}")))]
        );
        assert_eq!(
            image_id(&format!("{hex}.json")),
            Some(format!("sha256:{hex}"))
        );

        // Docker reads "./manifest.json" as "manifest.json": two of them are refused, naming both.
        let two = tar_raw(&[
            (
                "manifest.json",
                br#"[{"Config":"x.json","RepoTags":["x/benign:1"],"Layers":[]}]"#,
            ),
            (
                "./manifest.json",
                br#"[{"Config":"y.json","RepoTags":["x/evil:1"],"Layers":[]}]"#,
            ),
        ]);
        let e = format!("{:#}", check_reader(&two[..]).unwrap_err());
        assert!(
            e.contains("2 entries") && e.contains("./manifest.json, manifest.json")
                || e.contains("manifest.json, ./manifest.json"),
            "{e}"
        );
        let dotted = tar_raw(&[(
            "./manifest.json",
            br#"[{"Config":"x.json","RepoTags":["x/benign:1"],"Layers":[]}]"#,
        )]);
        assert_eq!(
            check_reader(&dotted[..]).unwrap(),
            vec![("x/benign:1".to_string(), None)],
            "a lone ./manifest.json is the manifest"
        );
        let indexed = tar_raw(&[
            (
                "manifest.json",
                br#"[{"Config":"x.json","RepoTags":["x/benign:1"],"Layers":[]}]"#,
            ),
            (
                "index.json",
                br#"{"manifests":[{"annotations":{"io.containerd.image.name":"docker.io/x/evil:1"}}]}"#,
            ),
        ]);
        let e = format!("{:#}", check_reader(&indexed[..]).unwrap_err());
        assert!(e.contains("x/evil:1"), "{e}");
        for (raw, want) in [
            ("manifest.json", Some("manifest.json")),
            ("./manifest.json", Some("manifest.json")),
            ("/manifest.json", Some("manifest.json")),
            ("a/../manifest.json", Some("manifest.json")),
            (".//./manifest.json", Some("manifest.json")),
            ("../manifest.json", None),
            ("blobs/sha256/ab", Some("blobs/sha256/ab")),
        ] {
            assert_eq!(docker_name(raw.as_bytes()).as_deref(), want, "{raw}");
        }

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
