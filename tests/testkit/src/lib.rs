//! What plantd's integration tests (`tests/plant/`) and benchmarks (`benches/`) share, one
//! crate instead of copies: the real `plantd` binary run as a plant or a hub (`harness`),
//! hubs, plants and a throwaway PostgreSQL together (`fleet`), stacks on the real Docker
//! engine (`stack`), the Odoo emulator and the apply through them (`odoo`), and real Odoo 18
//! (`real_odoo`); a real LDAP directory, OpenLDAP's slapd (`ldap`); a real OpenID Connect provider, glewlwyd (`oidc`); a real SMTP server that requires STARTTLS for the alert e-mails (`mail`);
//! commands with a time limit and the Docker objects a run leaves behind
//! (`command`).

pub mod command;
pub mod fleet;
pub mod harness;
pub mod ldap;
pub mod mail;
pub mod odoo;
pub mod oidc;
pub mod real_odoo;
pub mod stack;
