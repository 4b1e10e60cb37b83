//! The archive file: `ID.tar.zst`, or `ID.tar.zst.age` when `backup.encrypt_to` names age
//! recipients. Both open with standard tools (`tar --zstd -xf`, `age -d -i KEY | tar --zstd
//! -xf -`).
//!
//! An encrypted archive is also encrypted to the plant's own key, `DATA_DIR/backup-identity.txt`
//! (made on first use, mode 0600), so that the plant can verify and restore its own backups;
//! the configured recipients are for whoever must open them elsewhere (after losing the plant
//! server, say). Other identities come from `--identity FILE` (age's identity file format).

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};

/// The identities at hand for opening encrypted archives.
pub type Keys = Arc<Vec<age::x25519::Identity>>;

/// The file holding the plant's own backup key.
pub fn identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join("backup-identity.txt")
}

/// Reads age identities (`AGE-SECRET-KEY-1...` lines; `#` comments) from a file.
pub fn read_identities(path: &Path) -> anyhow::Result<Vec<age::x25519::Identity>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut keys = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = age::x25519::Identity::from_str(line).map_err(|_| {
            anyhow!(
                "{}:{}: not an age identity (AGE-SECRET-KEY-1...)",
                path.display(),
                n + 1
            )
        })?;
        keys.push(key);
    }
    if keys.is_empty() {
        bail!("{}: holds no age identity", path.display());
    }
    Ok(keys)
}

/// The plant's own key, made when `create` and missing.
pub fn plant_identity(
    data_dir: &Path,
    create: bool,
) -> anyhow::Result<Option<age::x25519::Identity>> {
    let path = identity_path(data_dir);
    if path.exists() {
        return Ok(read_identities(&path)?.into_iter().next());
    }
    if !create {
        return Ok(None);
    }
    let key = age::x25519::Identity::generate();
    let text = format!(
        "# plantd's own backup key: opens this plant's encrypted backups. Public key: {}\n{}\n",
        key.to_public(),
        age::secrecy::ExposeSecret::expose_secret(&key.to_string())
    );
    crate::fsutil::write_atomic(&path, text.as_bytes(), 0o600)?;
    Ok(Some(key))
}

/// The plant's key and those in `extra` files.
pub fn keys(data_dir: &Path, extra: &[PathBuf]) -> anyhow::Result<Keys> {
    let mut keys: Vec<_> = plant_identity(data_dir, false)?.into_iter().collect();
    for path in extra {
        keys.extend(read_identities(path)?);
    }
    Ok(Arc::new(keys))
}

/// One archive on disk, with the keys to open it.
#[derive(Clone)]
pub struct Archive {
    pub path: PathBuf,
    pub keys: Keys,
}

impl Archive {
    pub fn encrypted(&self) -> bool {
        self.path.extension().is_some_and(|e| e == "age")
    }

    /// The archive's tar stream.
    pub fn open(&self) -> anyhow::Result<Box<dyn Read + Send>> {
        let file = std::fs::File::open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        let compressed: Box<dyn Read + Send> = if self.encrypted() {
            let decryptor = age::Decryptor::new(std::io::BufReader::new(file))
                .map_err(|e| anyhow!("not an age-encrypted file: {e}"))?;
            let reader = decryptor
                .decrypt(self.keys.iter().map(|k| k as &dyn age::Identity))
                .map_err(|e| match e {
                    age::DecryptError::NoMatchingKeys => anyhow!(
                        "it is encrypted to none of the keys at hand ({} key{}: this plant's own, DATA_DIR/backup-identity.txt, if it has one, and those given with --identity FILE); give the right one with --identity FILE",
                        self.keys.len(),
                        if self.keys.len() == 1 { "" } else { "s" }
                    ),
                    e => anyhow!("decrypting: {e}"),
                })?;
            Box::new(reader)
        } else {
            Box::new(file)
        };
        Ok(Box::new(
            zstd::Decoder::new(compressed).context("not a zstd stream")?,
        ))
    }
}

/// Where an archive is written: plain, or through age.
pub enum Sink {
    Plain(std::fs::File),
    Age(age::stream::StreamWriter<std::fs::File>),
}

impl Sink {
    pub fn new(file: std::fs::File, recipients: &[age::x25519::Recipient]) -> anyhow::Result<Sink> {
        if recipients.is_empty() {
            return Ok(Sink::Plain(file));
        }
        let encryptor =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| anyhow!("age: {e}"))?;
        Ok(Sink::Age(encryptor.wrap_output(file)?))
    }

    /// Ends the stream (age's last chunk) and returns the file.
    pub fn finish(self) -> anyhow::Result<std::fs::File> {
        match self {
            Sink::Plain(f) => Ok(f),
            Sink::Age(w) => Ok(w.finish()?),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(f) => f.write(buf),
            Sink::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(f) => f.flush(),
            Sink::Age(w) => w.flush(),
        }
    }
}

/// The recipients a new archive is encrypted to: `encrypt_to` and the plant's own key; none
/// when `encrypt_to` is empty.
pub fn recipients(
    data_dir: &Path,
    encrypt_to: &[String],
) -> anyhow::Result<Vec<age::x25519::Recipient>> {
    if encrypt_to.is_empty() {
        return Ok(vec![]);
    }
    let mut out = Vec::new();
    for r in encrypt_to {
        out.push(
            age::x25519::Recipient::from_str(r)
                .map_err(|e| anyhow!("backup.encrypt_to: {r:?}: {e}"))?,
        );
    }
    let own = plant_identity(data_dir, true)?.expect("made when missing");
    out.push(own.to_public());
    Ok(out)
}
