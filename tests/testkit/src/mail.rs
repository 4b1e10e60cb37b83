//! A real SMTP server for the alert e-mails: Debian's exim4 (`exim4-daemon-light`) run as a
//! throwaway daemon on 127.0.0.1 on a free port, with its own configuration, spool, logs and
//! maildir in a temporary directory (never the system's `/etc/exim4`, `/var/spool/exim4`,
//! `/var/log/exim4`, `/run/exim4` or port 25), killed on drop.
//!
//! It advertises STARTTLS with a certificate for `localhost` and `127.0.0.1` signed by a
//! throwaway CA ([`MailServer::ca_pem`] is what a client must trust) and refuses `MAIL` before
//! STARTTLS. After STARTTLS it also offers `AUTH PLAIN` (and `LOGIN`) with fixed credentials
//! ([`MailServer::user`], [`MailServer::password`]); [`MailServer::start`] accepts mail with or
//! without them, [`MailServer::start_requiring_auth`] refuses `MAIL` unless authenticated.
//! Only 127.0.0.1 may connect; every recipient, whatever its domain, is delivered into the
//! maildir in the temporary directory, one file per message ([`MailServer::messages`]).
//!
//! What exim needs, and why the setup looks as it does: exim runs as root with `-C CONFIG`
//! (root keeps its privilege with an alternative configuration; the daemon must be root to
//! start), in the foreground (`-bdf`) so the child we spawn is the daemon and the only process
//! we kill. The process that receives a message runs as the exim user `Debian-exim`, and the
//! delivery it re-executes with `-C` has lost root (exim drops it for any `-C` not in
//! `/etc/exim4/trusted_configs`), so the spool, log and maildir directories and the TLS key
//! belong to `Debian-exim`, the temporary directory is world-searchable, and the transport
//! delivers as `Debian-exim` (`deliver_drop_privilege`). `pid_file_path` keeps the pid file
//! out of `/run/exim4`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::free_addr;

/// The exim binary of Debian's exim4-daemon-light.
pub const EXIM: &str = "/usr/sbin/exim4";
/// The user exim's receiving and delivering processes run as, on Debian.
const EXIM_USER: &str = "Debian-exim";

/// A running exim that accepts mail over STARTTLS into a maildir; killed on drop.
pub struct MailServer {
    dir: tempfile::TempDir,
    /// Its SMTP port on 127.0.0.1 (plain SMTP, upgraded with STARTTLS; no implicit TLS).
    pub port: u16,
    ca_pem: String,
    child: Option<Child>,
}

/// One delivered message.
#[derive(Debug, Clone)]
pub struct Message {
    /// The file exim wrote, as it wrote it (LF line ends; exim adds `Return-path`,
    /// `Envelope-to`, `Delivery-date` and `Received`, and `X-Testkit-Authenticated-As` when
    /// the client authenticated).
    pub raw: String,
    /// The envelope sender (`MAIL FROM`), from `Return-path`; empty for a bounce.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), from `Envelope-to`, in the order given.
    pub to: Vec<String>,
    /// Every header of the message, unfolded, in order (names as written).
    pub headers: Vec<(String, String)>,
    /// The `Subject` header, RFC 2047 encoded words decoded; empty when there is none.
    pub subject: String,
    /// The body after the header, with a single-part `base64` or `quoted-printable` transfer
    /// encoding undone (as UTF-8, lossily); a multipart body is left as written.
    pub body: String,
    /// The user the client authenticated as with AUTH, if it did.
    pub authenticated_as: Option<String>,
}

impl Message {
    /// The first header called `name` (any case), unfolded.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl MailServer {
    /// Starts exim; AUTH is offered after STARTTLS but not required.
    pub fn start() -> MailServer {
        Self::start_with(false)
    }

    /// Starts exim that refuses `MAIL` unless the client authenticated (after STARTTLS) as
    /// [`MailServer::user`] with [`MailServer::password`].
    pub fn start_requiring_auth() -> MailServer {
        Self::start_with(true)
    }

    fn start_with(require_auth: bool) -> MailServer {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            Path::new(EXIM).exists(),
            "{EXIM} is missing: install Debian's exim4-daemon-light (tests/run.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        // The exim user's processes must reach the configuration, spool, logs and maildir.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path();
        for sub in ["spool", "log", "mail"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        let (ca_pem, cert_pem, key_pem) = certificates();
        std::fs::write(d.join("cert.pem"), cert_pem).unwrap();
        std::fs::write(d.join("key.pem"), key_pem).unwrap();
        std::fs::set_permissions(d.join("key.pem"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let owned: Vec<PathBuf> = ["spool", "log", "mail", "key.pem"]
            .iter()
            .map(|p| d.join(p))
            .collect();
        let out = Command::new("chown")
            .arg(format!("{EXIM_USER}:{EXIM_USER}"))
            .args(&owned)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "chown {EXIM_USER} (the tests run as root; is exim4-daemon-light installed?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_addr().port();
        let config = d.join("exim.conf");
        std::fs::write(&config, config_text(d, port, require_auth)).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();

        let check = Command::new(EXIM)
            .arg("-C")
            .arg(&config)
            .arg("-bV")
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "exim rejects the configuration it was given:\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );

        let stderr = std::fs::File::create(d.join("stderr")).unwrap();
        let child = Command::new(EXIM)
            .arg("-C")
            .arg(&config)
            .arg("-bdf")
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().unwrap())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {EXIM}: {e}"));
        let mut server = MailServer {
            dir,
            port,
            ca_pem,
            child: Some(child),
        };
        server.wait_ready();
        server
    }

    /// Waits until exim greets with `220` on its port; panics with its log if it exits or
    /// does not within 20 s.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "exim exited ({status}) before it listened:\n{}",
                    self.logs()
                );
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut line = String::new();
                let mut reader = BufReader::new(&stream);
                if reader.read_line(&mut line).is_ok() && line.starts_with("220") {
                    let _ = (&stream).write_all(b"QUIT\r\n");
                    let _ = reader.read_line(&mut line);
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "exim did not greet on 127.0.0.1:{} within 20 s:\n{}",
                self.port,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The throwaway CA's certificate (PEM), the only one a client must trust; the server's
    /// certificate is for `localhost` and `127.0.0.1`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A file holding [`MailServer::ca_pem`], for a client that takes a CA file.
    pub fn ca_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        if !path.exists() {
            std::fs::write(&path, &self.ca_pem).unwrap();
        }
        path
    }

    /// The AUTH user exim accepts (PLAIN or LOGIN, over TLS only).
    pub fn user(&self) -> &str {
        AUTH_USER
    }

    /// [`MailServer::user`]'s password.
    pub fn password(&self) -> &str {
        AUTH_PASSWORD
    }

    /// The temporary directory (`exim.conf`, `spool/`, `log/`, `mail/` the maildir).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// exim's main, reject and panic logs and its stderr, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for name in ["log/mainlog", "log/rejectlog", "log/paniclog", "stderr"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.path().join(name)) {
                if !t.is_empty() {
                    text.push_str(&format!("--- {name}\n{t}"));
                }
            }
        }
        if text.is_empty() {
            text.push_str("(exim logged nothing)\n");
        }
        text
    }

    /// Every message delivered so far, oldest first.
    pub fn messages(&self) -> Vec<Message> {
        let new = self.dir.path().join("mail/new");
        let Ok(entries) = std::fs::read_dir(&new) else {
            return Vec::new(); // exim makes the maildir on the first delivery
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| {
                let mtime = e.metadata().and_then(|m| m.modified()).unwrap();
                (mtime, e.path())
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, path)| {
                let bytes = std::fs::read(&path).unwrap();
                parse(&String::from_utf8_lossy(&bytes))
            })
            .collect()
    }

    /// Waits until at least `count` messages were delivered and returns them all; panics with
    /// exim's log after `timeout`.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "{} message(s) delivered within {timeout:?}, wanted {count}:\n{}",
                messages.len(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        // Only the daemon this harness started (it runs in the foreground, so it is our child).
        // First a moment for the processes it forked (a delivery finishing its log, a client
        // saying QUIT) to end, so the daemon reaps them rather than leaving orphans.
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while children_of(child.id()) > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How many processes have `pid` as their parent (read from `/proc`, nothing is signalled).
fn children_of(pid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid ...; comm may hold spaces and parentheses.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|ppid| ppid.parse::<u32>().ok())
                == Some(pid)
        })
        .count()
}

const AUTH_USER: &str = "plantd-alerts";
const AUTH_PASSWORD: &str = "mail-test-password";

/// (CA certificate, server certificate, server key), PEM; the server's for `localhost` and
/// `127.0.0.1`.
pub(crate) fn certificates() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "plantd-testkit mail CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// The exim configuration: listens on 127.0.0.1:`port` only, everything in `dir`.
fn config_text(dir: &Path, port: u16, require_auth: bool) -> String {
    let d = dir.display();
    let auth_acl = if require_auth {
        "  deny message = authentication required\n       !authenticated = *\n"
    } else {
        ""
    };
    format!(
        r#"# plantd-testkit's throwaway exim (tests/testkit/src/mail.rs); nothing leaves {d}.
primary_hostname = localhost
qualify_domain = localhost
exim_path = {EXIM}
spool_directory = {d}/spool
log_file_path = {d}/log/%slog
pid_file_path = {d}/exim.pid
log_selector = +smtp_protocol_error +smtp_syntax_error +received_recipients
local_interfaces = <; 127.0.0.1.{port}
disable_ipv6 = true
host_lookup =
rfc1413_hosts =
rfc1413_query_timeout = 0s
keep_environment =
deliver_drop_privilege = true
tls_advertise_hosts = *
tls_certificate = {d}/cert.pem
tls_privatekey = {d}/key.pem
acl_smtp_connect = acl_connect
acl_smtp_mail = acl_mail
acl_smtp_rcpt = acl_rcpt
acl_smtp_data = acl_data

begin acl

acl_connect:
  accept hosts = 127.0.0.1
  deny message = only 127.0.0.1 may connect

acl_mail:
  deny message = STARTTLS required before MAIL
       !encrypted = *
{auth_acl}  accept

acl_rcpt:
  accept hosts = 127.0.0.1
  deny

acl_data:
  warn condition = ${{if def:authenticated_id}}
       add_header = X-Testkit-Authenticated-As: $authenticated_id
  accept

begin routers

everything:
  driver = accept
  transport = to_maildir

begin transports

to_maildir:
  driver = appendfile
  directory = {d}/mail
  maildir_format = true
  create_directory = true
  user = {EXIM_USER}
  group = {EXIM_USER}
  batch_max = 1000
  envelope_to_add = true
  return_path_add = true
  delivery_date_add = true

begin retry

*  *  F,1m,5s

begin authenticators

plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${{if and {{{{eq{{$auth2}}{{{AUTH_USER}}}}}{{eq{{$auth3}}{{{AUTH_PASSWORD}}}}}}}}}
  server_set_id = $auth2
  server_advertise_condition = ${{if def:tls_in_cipher}}

login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = ${{if and {{{{eq{{$auth1}}{{{AUTH_USER}}}}}{{eq{{$auth2}}{{{AUTH_PASSWORD}}}}}}}}}
  server_set_id = $auth1
  server_advertise_condition = ${{if def:tls_in_cipher}}
"#
    )
}

/// Parses a delivered file.
fn parse(raw: &str) -> Message {
    let text = raw.replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let from = get("Return-path")
        .unwrap_or_default()
        .trim_matches(['<', '>'])
        .to_string();
    let to = get("Envelope-to")
        .unwrap_or_default()
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    let subject = decode_words(&get("Subject").unwrap_or_default());
    let multipart =
        get("Content-Type").is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/"));
    let encoding = get("Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let body = if multipart {
        body.to_string()
    } else if encoding == "base64" {
        String::from_utf8_lossy(&base64(body)).into_owned()
    } else if encoding == "quoted-printable" {
        String::from_utf8_lossy(&quoted_printable(body, false)).into_owned()
    } else {
        body.to_string()
    };
    Message {
        authenticated_as: get("X-Testkit-Authenticated-As"),
        raw: raw.to_string(),
        from,
        to,
        subject,
        body,
        headers,
    }
}

/// Decodes RFC 2047 encoded words (`=?charset?B|Q?text?=`, taken as UTF-8); whitespace between
/// two encoded words is dropped, as the RFC says.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let decoded = rest[start + 2..].split_once("?=").and_then(|(word, tail)| {
            let mut parts = word.splitn(3, '?');
            let (_charset, enc, text) = (parts.next()?, parts.next()?, parts.next()?);
            let bytes = match enc {
                "B" | "b" => base64(text),
                "Q" | "q" => quoted_printable(text, true),
                _ => return None,
            };
            Some((String::from_utf8_lossy(&bytes).into_owned(), tail))
        });
        match decoded {
            Some((word, tail)) => {
                let between = &rest[..start];
                if !(after_word && between.trim().is_empty()) {
                    out.push_str(between);
                }
                out.push_str(&word);
                rest = tail;
                after_word = true;
            }
            None => {
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
                after_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Standard base64, whitespace and padding ignored.
fn base64(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Quoted-printable (`=XX`, soft line breaks); `underscore_is_space` for RFC 2047's Q.
fn quoted_printable(text: &str, underscore_is_space: bool) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'=' if b.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') => i += 3,
            b'=' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            b'_' if underscore_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::io::Read;
    use std::sync::Arc;

    /// Reads one SMTP reply (all its lines); (code, text).
    fn reply(r: &mut impl BufRead) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            assert!(r.read_line(&mut line).unwrap() > 0, "the server hung up");
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return (line[..3].parse().unwrap(), text);
            }
        }
    }

    fn cmd<S: Read + Write>(s: &mut BufReader<S>, line: &str) -> (u16, String) {
        s.get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        s.get_mut().flush().unwrap();
        reply(s)
    }

    /// Connects, says EHLO, checks MAIL is refused before STARTTLS, then upgrades trusting
    /// only the server's CA for `name`, and says EHLO again; the TLS stream and its EHLO reply.
    fn connect_tls(
        mail: &MailServer,
        name: &str,
    ) -> (
        BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
        String,
    ) {
        let tcp = TcpStream::connect(mail.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut plain = BufReader::new(tcp);
        assert_eq!(reply(&mut plain).0, 220);
        let (code, ehlo) = cmd(&mut plain, "EHLO client.test");
        assert_eq!(code, 250, "{ehlo}");
        assert!(ehlo.contains("STARTTLS"), "no STARTTLS offered: {ehlo}");
        assert!(!ehlo.contains("AUTH"), "AUTH offered in the clear: {ehlo}");
        let (code, text) = cmd(&mut plain, "MAIL FROM:<plantd@plant.test>");
        assert_eq!(code, 550, "MAIL before STARTTLS: {text}");
        assert!(text.contains("STARTTLS required"), "{text}");
        let (code, text) = cmd(&mut plain, "STARTTLS");
        assert_eq!(code, 220, "{text}");
        let tcp = plain.into_inner();

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(mail.ca_pem().as_bytes()).unwrap())
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let conn = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from(name.to_string()).unwrap(),
        )
        .unwrap();
        let mut tls = BufReader::new(rustls::StreamOwned::new(conn, tcp));
        let (code, ehlo) = cmd(&mut tls, "EHLO client.test");
        assert_eq!(code, 250, "{ehlo}");
        (tls, ehlo)
    }

    fn send<S: Read + Write>(s: &mut BufReader<S>, from: &str, to: &[&str], data: &str) {
        let (code, text) = cmd(s, &format!("MAIL FROM:<{from}>"));
        assert_eq!(code, 250, "MAIL: {text}");
        for rcpt in to {
            let (code, text) = cmd(s, &format!("RCPT TO:<{rcpt}>"));
            assert_eq!(code, 250, "RCPT: {text}");
        }
        let (code, text) = cmd(s, "DATA");
        assert_eq!(code, 354, "DATA: {text}");
        // `data` ends with a line end and is dot-stuffed already.
        let data = data.replace('\n', "\r\n");
        let (code, text) = cmd(s, &format!("{data}."));
        assert_eq!(code, 250, "end of DATA: {text}");
        assert_eq!(cmd(s, "QUIT").0, 221);
    }

    #[test]
    fn starttls_is_required_and_mail_lands_in_the_maildir() {
        let mail = MailServer::start();
        assert!(mail.messages().is_empty());
        let (mut tls, ehlo) = connect_tls(&mail, "localhost");
        assert!(ehlo.contains("AUTH PLAIN"), "{ehlo}");
        send(
            &mut tls,
            "plantd@plant.test",
            &["ops@example.com", "oncall@other.test"],
            "From: plantd <plantd@plant.test>\n\
             To: ops@example.com, oncall@other.test\n\
             Subject: =?utf-8?b?W3BsYW50ZF0gZGlzayBmdWxsIMOgIGxpbmUgMw==?=\n\
             MIME-Version: 1.0\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: quoted-printable\n\
             \n\
             The plant's disk is full =C3=A0 line 3.\n\
             ..a line that began with a dot\n",
        );
        let messages = mail.wait_for(1, Duration::from_secs(10));
        assert_eq!(messages.len(), 1, "one file for both recipients");
        let m = &messages[0];
        assert_eq!(m.from, "plantd@plant.test");
        assert_eq!(m.to, ["ops@example.com", "oncall@other.test"]);
        assert_eq!(m.subject, "[plantd] disk full à line 3");
        assert_eq!(
            m.body,
            "The plant's disk is full à line 3.\n.a line that began with a dot\n"
        );
        assert_eq!(m.header("to"), Some("ops@example.com, oncall@other.test"));
        assert_eq!(m.authenticated_as, None);
        assert!(m.raw.contains("with esmtps"), "{}", m.raw);
    }

    #[test]
    fn auth_over_tls_and_the_ip_name() {
        let mail = MailServer::start_requiring_auth();
        // The certificate names 127.0.0.1 too.
        let (mut tls, _) = connect_tls(&mail, "127.0.0.1");
        let (code, text) = cmd(&mut tls, "MAIL FROM:<plantd@plant.test>");
        assert_eq!(code, 550, "MAIL without AUTH: {text}");
        let wrong = base64_encode(&format!("\0{}\0nope", mail.user()));
        assert_eq!(cmd(&mut tls, &format!("AUTH PLAIN {wrong}")).0, 535);
        let right = base64_encode(&format!("\0{}\0{}", mail.user(), mail.password()));
        let (code, text) = cmd(&mut tls, &format!("AUTH PLAIN {right}"));
        assert_eq!(code, 235, "{text}");
        send(
            &mut tls,
            "plantd@plant.test",
            &["ops@example.com"],
            "Subject: authenticated\n\nhello\n",
        );
        let m = &mail.wait_for(1, Duration::from_secs(10))[0];
        assert_eq!(m.authenticated_as.as_deref(), Some(mail.user()));
        assert_eq!(m.subject, "authenticated");
        assert_eq!(m.body, "hello\n");
    }

    #[test]
    fn decodes_what_mail_clients_encode() {
        assert_eq!(
            decode_words("=?utf-8?q?a=C3=A0_b?= =?UTF-8?B?w6A=?= plain"),
            "aà bà plain"
        );
        let m = parse("Subject: x\nContent-Transfer-Encoding: base64\n\naGVs\nbG8K\n");
        assert_eq!(m.body, "hello\n");
        let m =
            parse("Subject: x\nContent-Transfer-Encoding: quoted-printable\n\nsoft=\nbreak =3D\n");
        assert_eq!(m.body, "softbreak =\n");
    }

    fn base64_encode(s: &str) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in s.as_bytes().chunks(3) {
            let n =
                chunk.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
