//! A real LDAP directory for the sign-in through `[identity.ldap]`: Debian's OpenLDAP `slapd`
//! run in the foreground (`-d 0`, so the child we spawn is the daemon and the only process we
//! kill) on 127.0.0.1 on a free port, with its own `slapd.conf`, database and certificate in a
//! temporary directory (never the system's `/etc/ldap` database or port 389), killed on drop.
//!
//! It holds people under `ou=people` and `groupOfNames` groups under `ou=groups` of
//! [`SUFFIX`], offers StartTLS with a certificate for `127.0.0.1` signed by a throwaway CA
//! ([`Directory::ca_file`]), and refuses any bind before TLS (`security tls=1`): a client that
//! sends a password in clear is told "confidentiality required".

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::free_addr;

pub const SLAPD: &str = "/usr/sbin/slapd";
pub const SLAPADD: &str = "/usr/sbin/slapadd";
pub const SUFFIX: &str = "dc=plant,dc=test";

/// One person: their uid, password and the groups (cn) they are in.
pub struct Person<'a> {
    pub uid: &'a str,
    pub password: &'a str,
    pub groups: &'a [&'a str],
}

/// A running slapd; killed on drop. [`Directory::stop`] and [`Directory::restart`] take it
/// down and bring it back on the same port with the same data.
pub struct Directory {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Directory {
    pub fn start(people: &[Person]) -> Directory {
        assert!(
            Path::new(SLAPD).exists(),
            "{SLAPD} is missing: install Debian's slapd (tests/run.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("db")).unwrap();
        let (ca, cert, key) = crate::mail::certificates();
        std::fs::write(d.join("ca.pem"), ca).unwrap();
        std::fs::write(d.join("cert.pem"), cert).unwrap();
        std::fs::write(d.join("key.pem"), key).unwrap();
        std::fs::write(d.join("slapd.conf"), config(d)).unwrap();
        std::fs::write(d.join("data.ldif"), ldif(people)).unwrap();
        let out = Command::new(SLAPADD)
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("data.ldif"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut directory = Directory {
            port: free_addr().port(),
            dir,
            child: None,
        };
        directory.restart();
        directory
    }

    /// `ldap://127.0.0.1:PORT`: StartTLS is needed before a bind.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn user_dn(uid: &str) -> String {
        format!("uid={uid},ou=people,{SUFFIX}")
    }

    pub fn group_dn(cn: &str) -> String {
        format!("cn={cn},ou=groups,{SUFFIX}")
    }

    /// Stops the daemon (the port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon (again) and waits until it takes connections.
    pub fn restart(&mut self) {
        self.stop();
        let d = self.dir.path();
        let child = Command::new(SLAPD)
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{}/", self.port))
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("slapd.log")).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "slapd exited with {status}: {}",
                    std::fs::read_to_string(d.join("slapd.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "slapd did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(d: &Path) -> String {
    let d = d.display();
    format!(
        "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d}/slapd.pid
TLSCACertificateFile {d}/ca.pem
TLSCertificateFile {d}/cert.pem
TLSCertificateKeyFile {d}/key.pem
security tls=1
database mdb
maxsize 16777216
suffix \"{SUFFIX}\"
rootdn \"cn=root,{SUFFIX}\"
directory {d}/db
access to attrs=userPassword by anonymous auth by self write by * none
access to * by users read by * none
"
    )
}

fn ldif(people: &[Person]) -> String {
    let mut out = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: plant\ndc: plant\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n"
    );
    let mut groups: Vec<&str> = people
        .iter()
        .flat_map(|p| p.groups.iter().copied())
        .collect();
    groups.sort();
    groups.dedup();
    for p in people {
        out.push_str(&format!(
            "dn: {}\nobjectClass: inetOrgPerson\nuid: {}\ncn: {}\nsn: {}\nuserPassword: {}\n\n",
            Directory::user_dn(p.uid),
            p.uid,
            p.uid,
            p.uid,
            p.password
        ));
    }
    for g in groups {
        out.push_str(&format!(
            "dn: {}\nobjectClass: groupOfNames\ncn: {g}\n",
            Directory::group_dn(g)
        ));
        for p in people.iter().filter(|p| p.groups.contains(&g)) {
            out.push_str(&format!("member: {}\n", Directory::user_dn(p.uid)));
        }
        out.push('\n');
    }
    out
}
