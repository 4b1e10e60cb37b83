//! Sign-in round trips: `cargo bench --bench sign_in`.
//!
//! Starts the real `plantd up` (release) and Debian's OpenLDAP slapd (throwaway, StartTLS, on
//! loopback, as `tests/plant/identity.rs` does), then times `POST /api/v1/admin/login` from a
//! client on the same machine, one after the other:
//! - a user of the directory: plantd connects, starts TLS, binds as the user, searches their
//!   groups and answers with a session (one connection to the directory per sign-in);
//! - a local user: one argon2id check (19 MiB, two passes);
//! - the directory stopped: how soon its users are told it cannot be reached;
//! - a user of the OpenID Connect provider (Debian's glewlwyd, throwaway, HTTPS, on loopback,
//!   as `tests/plant/oidc.rs` does), already signed in there: from plantd's start (a redirect
//!   to the provider) through the provider's authorization to plantd's callback, which
//!   exchanges the code at the provider's token endpoint, checks the ID token with the
//!   provider's keys and answers with a session.
//!
//! Each from a new address (127.0.0.N), so that the lockout counts stay out of it. Prints the
//! median, p95 and max of `PLANTD_BENCH_SIGN_INS` (default 50) each. Everything it starts is
//! stopped at the end.

use std::time::{Duration, Instant};

use plantd_testkit::harness::{admin_add, free_addr, Plant};
use plantd_testkit::ldap::{Directory, Person};
use plantd_testkit::oidc::{no_redirects, Provider, CLIENT_ID};

fn main() {
    let n: usize = std::env::var("PLANTD_BENCH_SIGN_INS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut ldap = Directory::start(&[Person {
        uid: "ada",
        password: "ada's secret 1",
        groups: &["plant-it"],
    }]);
    let addr = free_addr();
    let base = format!("https://localhost:{}", addr.port());
    let idp = Provider::start(
        &[Person {
            uid: "otto",
            password: "otto's idp secret",
            groups: &["plant-it"],
        }],
        &[format!("{base}/auth/oidc/callback")],
        &[format!("{base}/")],
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = format!(
        "[identity.ldap]\nurl = \"{}\"\nca_file = \"{}\"\nuser_dn = \"uid={{user}},ou=people,dc=plant,dc=test\"\ngroup_base = \"ou=groups,dc=plant,dc=test\"\ntimeout = \"2s\"\n[identity.ldap.roles]\nadmin = [\"{}\"]\n\n[identity.oidc]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_file = \"{}\"\nredirect_url = \"{base}/auth/oidc/callback\"\nca_file = \"{}\"\n[identity.oidc.roles]\nadmin = [\"plant-it\"]\n",
        ldap.url(),
        ldap.ca_file().display(),
        Directory::group_dn("plant-it"),
        idp.issuer(),
        idp.secret_file(dir.path()).display(),
        idp.ca_file().display(),
    );
    let mut plant = Plant::start_on(&data, &config, addr);
    assert!(admin_add(&plant.data_dir, "ana", "admin", "correct horse")
        .status
        .success());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let time = |user: &str, password: &str, want: u16| -> Vec<Duration> {
        rt.block_on(async {
            let mut took = Vec::with_capacity(n);
            for i in 0..n {
                let client = plant.client_from(&format!("127.0.{}.{}", 1 + i / 250, 2 + i % 250));
                // The TLS handshake to plantd is not the sign-in's: made before the clock starts.
                client
                    .get(plant.url("/api/v1/admin/session"))
                    .send()
                    .await
                    .unwrap();
                let t0 = Instant::now();
                let r = client
                    .post(plant.url("/api/v1/admin/login"))
                    .json(&serde_json::json!({"user": user, "password": password}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let _ = r.bytes().await;
                took.push(t0.elapsed());
                assert_eq!(status, want, "{user}");
            }
            took
        })
    };
    let oidc_times = rt.block_on(async {
        let server = no_redirects(&plant.data_dir.join("tls/api.crt"), plant.addr);
        let mut took = Vec::with_capacity(n);
        for _ in 0..n {
            let (status, page, _, t) = idp
                .sign_in_through(&server, &base, "otto", "otto's idp secret")
                .await;
            assert_eq!(status.as_u16(), 200, "{page}");
            took.push(t);
        }
        took
    });
    let ldap_times = time("ada", "ada's secret 1", 200);
    let local_times = time("ana", "correct horse", 200);
    ldap.stop();
    let down_times = time("ada", "ada's secret 1", 503);
    println!("sign-in round trips, {n} each, client and servers on this machine:");
    for (what, mut t) in [
        ("OIDC user (code flow through glewlwyd)", oidc_times),
        ("LDAP user (StartTLS, bind, groups)", ldap_times),
        ("local user (argon2id)", local_times),
        ("LDAP user, directory stopped (503)", down_times),
    ] {
        t.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "  {what:<40} median {:>6.1} ms   p95 {:>6.1} ms   max {:>6.1} ms",
            ms(t[t.len() / 2]),
            ms(t[(t.len() * 95 / 100).min(t.len() - 1)]),
            ms(*t.last().unwrap())
        );
    }
    plant.stop();
}
