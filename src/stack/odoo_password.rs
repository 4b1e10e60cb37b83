//! Odoo's stored passwords: `res_users.password` holds a passlib `pbkdf2_sha512` hash,
//! `$pbkdf2-sha512$ROUNDS$SALT$CHECKSUM` (salt and checksum in passlib's "ab64", base64 with `.`
//! for `+` and no padding), 600 000 rounds since Odoo 16. plantd computes and checks them itself,
//! so that it can replace the `admin`/`admin` login of a database it created over its own
//! PostgreSQL connection: no password on a command line, in an environment or in a log, and no
//! second Odoo process. Odoo writes the column the same way (`_set_encrypted_password`).

use std::num::NonZeroU32;

use base64::Engine as _;
use ring::rand::SecureRandom;

/// Odoo's `MIN_ROUNDS` (odoo/addons/base/models/res_users.py).
pub const ROUNDS: u32 = 600_000;
const SALT_LEN: usize = 16;
const CHECKSUM_LEN: usize = 64;
const PREFIX: &str = "$pbkdf2-sha512$";

fn ab64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(bytes)
        .replace('+', ".")
}

fn ab64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text.replace('.', "+"))
        .ok()
}

fn derive(password: &str, salt: &[u8], rounds: NonZeroU32) -> [u8; CHECKSUM_LEN] {
    let mut out = [0u8; CHECKSUM_LEN];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA512,
        rounds,
        salt,
        password.as_bytes(),
        &mut out,
    );
    out
}

/// `password` hashed as Odoo hashes it, with a random salt. Takes a fraction of a second of
/// CPU: call it off the async workers.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; SALT_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| anyhow::anyhow!("the system's random generator failed"))?;
    Ok(hash_with(password, &salt, ROUNDS))
}

fn hash_with(password: &str, salt: &[u8], rounds: u32) -> String {
    let n = NonZeroU32::new(rounds).expect("rounds are positive");
    format!(
        "{PREFIX}{rounds}${}${}",
        ab64_encode(salt),
        ab64_encode(&derive(password, salt, n))
    )
}

/// Whether `stored` (a `res_users.password` value) is `password`'s. Odoo also accepts a
/// plaintext value, which it hashes at its next module update; so does this.
pub fn verify(password: &str, stored: &str) -> bool {
    let Some(rest) = stored.strip_prefix(PREFIX) else {
        // Not a hash of any scheme ("$id$..."): plaintext.
        return !stored.starts_with('$') && !stored.is_empty() && stored == password;
    };
    let mut parts = rest.split('$');
    let (Some(rounds), Some(salt), Some(checksum), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Some(rounds), Some(salt), Some(checksum)) = (
        rounds.parse::<u32>().ok().and_then(NonZeroU32::new),
        ab64_decode(salt),
        ab64_decode(checksum),
    ) else {
        return false;
    };
    ring::pbkdf2::verify(
        ring::pbkdf2::PBKDF2_HMAC_SHA512,
        rounds,
        &salt,
        password.as_bytes(),
        &checksum,
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by passlib 1.7 in the real Odoo 18 image:
    /// `pbkdf2_sha512.using(rounds=1000, salt=b"0123456789abcdef").hash("admin")`.
    const PASSLIB_ADMIN: &str = "$pbkdf2-sha512$1000$MDEyMzQ1Njc4OWFiY2RlZg$VYpayuGgwzZdp432P4BiDOsz2R32OckUD4cZP0OnU/dRJDzvbA9NzD4JRchh6MOV7dGmpArYbuwTJVUOgj66DA";
    /// `pbkdf2_sha512.using(rounds=600000).hash("s3cret pass")`, Odoo 18's own rounds, whose
    /// salt has a `.` (a `+` in base64).
    const PASSLIB_ODOO: &str = "$pbkdf2-sha512$600000$d671fo.x9r43JkQIYUyJEQ$j7wODfl8WvSvMp5iRA75QAzIArV2OCrktD.CgC0KvmtGkp5C.ufRsXVx7d4mfYrgfRXfrL4oioA.J9gJVcZojg";

    #[test]
    fn hashes_as_passlib_does() {
        assert_eq!(hash_with("admin", b"0123456789abcdef", 1000), PASSLIB_ADMIN);
    }

    #[test]
    fn verifies_passlib_hashes_and_refuses_others() {
        assert!(verify("admin", PASSLIB_ADMIN));
        assert!(!verify("Admin", PASSLIB_ADMIN));
        assert!(verify("s3cret pass", PASSLIB_ODOO));
        assert!(!verify("admin", PASSLIB_ODOO));
        // Plaintext, as Odoo tolerates until its next update; never an empty one.
        assert!(verify("admin", "admin"));
        assert!(!verify("", ""));
        // Damaged or foreign values never verify.
        for bad in [
            "$pbkdf2-sha512$0$MDEy$VYpa",
            "$pbkdf2-sha512$1000$MDEy",
            "$pbkdf2-sha512$x$MDEy$VYpa",
            "$pbkdf2-sha512$1000$!!$VYpa",
            "$2b$12$abcdefghijklmnopqrstuv",
        ] {
            assert!(!verify("admin", bad), "{bad}");
        }
    }

    #[test]
    fn a_new_hash_has_odoos_rounds_a_fresh_salt_and_verifies() {
        let a = hash("generated").unwrap();
        let b = hash("generated").unwrap();
        assert!(a.starts_with("$pbkdf2-sha512$600000$"), "{a}");
        assert_ne!(a, b);
        assert!(verify("generated", &a));
        assert!(!verify("admin", &a));
    }
}
