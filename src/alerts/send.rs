//! Where alerts go: webhooks (a JSON body, signed with HMAC-SHA256 over the timestamp and the
//! body) and e-mail (SMTP with STARTTLS required, through lettre). Each send is bounded in
//! time; secrets are read from their files at each send.
//!
//! A webhook receiver checks `X-Plantd-Signature: t=UNIX,v1=HEX`: HEX is the HMAC-SHA256, with
//! the shared secret as key, of `UNIX.` followed by the body's bytes; a receiver refuses a `t`
//! far from its clock, so that a captured request cannot be played again later.

use std::time::Duration;

use anyhow::Context;
use lettre::AsyncTransport;
use serde_json::json;

use super::{Alerts, Event, Notice, Route as Key};
use crate::config::alerts::{read_password, read_webhook_secret, AlertsConfig, Email, Webhook};

/// How long one send may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);

enum Route {
    Webhook {
        hook: Webhook,
        http: reqwest::Client,
    },
    Email {
        email: Email,
        tls: lettre::transport::smtp::client::TlsParameters,
    },
}

/// How many notices are sent at once: a fleet-wide outage must not open hundreds of SMTP
/// connections.
pub const AT_ONCE: usize = 8;

/// The configured routes, ready to send.
pub struct Routes {
    routes: Vec<Route>,
    keys: Vec<Key>,
    /// Who speaks: `hub`, or the plant's name.
    source: String,
}

/// The JSON a webhook receives.
pub fn payload(notice: &Notice, source: &str) -> serde_json::Value {
    let a = &notice.alert;
    // The same for a retried send of one notice, so that a receiver can drop the second.
    let id = crate::digest::sha256_hex(
        format!(
            "{source}/{}/{}/{}/{}",
            a.when.as_str(),
            a.subject,
            a.fired_at.map(|t| t.to_string()).unwrap_or_default(),
            match notice.kind {
                super::Kind::Resolved => "resolved".to_string(),
                _ => a
                    .routes
                    .values()
                    .map(|r| r.times)
                    .max()
                    .unwrap_or(0)
                    .to_string(),
            }
        )
        .as_bytes(),
    );
    json!({
        "id": &id[..32],
        "source": source,
        "state": notice.kind.as_str(),
        "tier": a.tier.as_str(),
        "condition": a.when.as_str(),
        "subject": a.subject,
        "message": a.message,
        "since": a.since.to_string(),
        "fired_at": a.fired_at.map(|t| t.to_string()),
        "sent_at": notice.at.to_string(),
    })
}

/// The signature header's value for `body` at `unix` seconds.
pub fn signature(secret: &[u8], unix: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(format!("{unix}.").as_bytes());
    ctx.update(body);
    format!("t={unix},v1={}", crate::digest::hex(ctx.sign().as_ref()))
}

fn tls(ca_file: Option<&std::path::Path>) -> anyhow::Result<rustls::ClientConfig> {
    let provider = crate::pki::provider();
    let extra = match ca_file {
        Some(path) => crate::pki::read_certs(path)?,
        None => Vec::new(),
    };
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .context("loading the system's CA certificates")?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth())
}

impl Routes {
    /// The routes of `config`, speaking as `source`.
    pub fn new(config: &AlertsConfig, source: &str) -> anyhow::Result<Routes> {
        let mut routes = Vec::new();
        for (i, hook) in config.webhooks.iter().enumerate() {
            let http = reqwest::Client::builder()
                .tls_backend_preconfigured(
                    tls(hook.ca_file.as_deref())
                        .with_context(|| format!("alerts.webhooks[{}].ca_file", i + 1))?,
                )
                .timeout(SEND_TIMEOUT)
                .connect_timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .context("building the webhook client")?;
            routes.push(Route::Webhook {
                hook: hook.clone(),
                http,
            });
        }
        if let Some(email) = &config.email {
            let mut params =
                lettre::transport::smtp::client::TlsParameters::builder(email.server.clone());
            if let Some(path) = &email.ca_file {
                let pem = std::fs::read(path)
                    .with_context(|| format!("alerts.email.ca_file: reading {}", path.display()))?;
                let cert = lettre::transport::smtp::client::Certificate::from_pem(&pem)
                    .with_context(|| {
                        format!(
                            "alerts.email.ca_file: {} is not a PEM certificate",
                            path.display()
                        )
                    })?;
                params = params.add_root_certificate(cert);
            }
            let tls = params.build_rustls().context("alerts.email: TLS")?;
            routes.push(Route::Email {
                email: email.clone(),
                tls,
            });
        }
        let keys = routes
            .iter()
            .map(|r| {
                let (what, tiers) = match r {
                    Route::Webhook { hook, .. } => (format!("webhook {}", hook.url), &hook.tiers),
                    Route::Email { email, .. } => (
                        format!(
                            "e-mail {}:{} {}",
                            email.server,
                            email.port,
                            email.to.join(",")
                        ),
                        &email.tiers,
                    ),
                };
                Key {
                    key: crate::digest::sha256_hex(what.as_bytes())[..16].to_string(),
                    tiers: tiers.clone(),
                }
            })
            .collect();
        Ok(Routes {
            routes,
            keys,
            source: source.to_string(),
        })
    }

    /// Each route's stable key and tiers, in route order (what [`Alerts::step`] needs).
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// A route's name for the history and the logs, with no secret of its URL (whose path
    /// or query may be the key, as in chat webhooks): `webhook #1 (host)`, `e-mail to a, b`.
    pub fn name(&self, route: usize) -> String {
        match self.routes.get(route) {
            Some(Route::Webhook { hook, .. }) => format!(
                "webhook #{} ({})",
                route + 1,
                hook.url.host_str().unwrap_or("?")
            ),
            Some(Route::Email { email, .. }) => format!("e-mail to {}", email.to.join(", ")),
            None => format!("route #{}", route + 1),
        }
    }

    /// Sends `notices`, [`AT_ONCE`] at a time, records each outcome in `state`, and returns
    /// the history lines.
    pub async fn deliver(&self, state: &mut Alerts, notices: &[Notice]) -> Vec<Event> {
        let permits = tokio::sync::Semaphore::new(AT_ONCE);
        let outcomes = futures_util::future::join_all(notices.iter().map(|n| async {
            let _permit = permits.acquire().await;
            self.send(n).await
        }))
        .await;
        let mut history = Vec::new();
        for (notice, outcome) in notices.iter().zip(outcomes) {
            let name = self.name(notice.route);
            if let Err(e) = &outcome {
                tracing::warn!(route = %name, error = %e, "an alert was not sent");
            }
            if let Some(key) = self.keys.get(notice.route) {
                history.push(state.sent(notice, key, &name, outcome));
            }
        }
        history
    }

    /// Sends one notice on its route; `Err` says why not, in words.
    pub async fn send(&self, notice: &Notice) -> Result<(), String> {
        let Some(route) = self.routes.get(notice.route) else {
            return Err("no such route".into());
        };
        let sent = tokio::time::timeout(SEND_TIMEOUT + Duration::from_secs(5), async {
            match route {
                Route::Webhook { hook, http } => self.webhook(hook, http, notice).await,
                Route::Email { email, tls } => self.email(email, tls, notice).await,
            }
        })
        .await;
        match sent {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {SEND_TIMEOUT:?}")),
        }
    }

    async fn webhook(
        &self,
        hook: &Webhook,
        http: &reqwest::Client,
        n: &Notice,
    ) -> Result<(), String> {
        let secret = read_webhook_secret(&hook.secret_file)?;
        let body = payload(n, &self.source).to_string();
        let unix = jiff::Timestamp::now().as_second();
        let answer = http
            .post(hook.url.clone())
            .header("content-type", "application/json")
            .header(
                "x-plantd-signature",
                signature(&secret, unix, body.as_bytes()),
            )
            .header("x-plantd-event", n.kind.as_str())
            .body(body)
            .send()
            .await
            .map_err(without_url)?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    }

    async fn email(
        &self,
        email: &Email,
        tls: &lettre::transport::smtp::client::TlsParameters,
        n: &Notice,
    ) -> Result<(), String> {
        let a = &n.alert;
        let subject = format!(
            "[plantd {}{}] {}: {} — {}",
            a.tier.as_str(),
            match n.kind {
                super::Kind::Firing => "",
                super::Kind::Repeat => ", still",
                super::Kind::Resolved => ", resolved",
            },
            a.subject,
            a.when.as_str().replace('_', " "),
            one_line(&a.message, 120),
        );
        let body = format!(
            "{what} at {source}.\n\nCondition: {cond}\nSubject:   {subject}\nTier:      {tier}\nSince:     {since}\nFired at:  {fired}\nSent at:   {at}\n\n{message}\n",
            what = match n.kind {
                super::Kind::Firing => "An alert fired",
                super::Kind::Repeat => "An alert still holds",
                super::Kind::Resolved => "An alert is resolved",
            },
            source = self.source,
            cond = a.when.as_str(),
            subject = a.subject,
            tier = a.tier.as_str(),
            since = a.since,
            fired = a.fired_at.map(|t| t.to_string()).unwrap_or_default(),
            at = n.at,
            message = a.message,
        );
        let mut builder = lettre::Message::builder()
            .from(email.from.parse().map_err(|e| format!("from: {e}"))?)
            .subject(subject)
            .header(lettre::message::header::ContentType::TEXT_PLAIN);
        for to in &email.to {
            builder = builder.to(to.parse().map_err(|e| format!("to {to}: {e}"))?);
        }
        let message = builder.body(body).map_err(|e| format!("{e}"))?;
        // STARTTLS is required: a server that does not offer it is not sent to in the clear.
        let mut transport =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(
                email.server.clone(),
            )
            .port(email.port)
            .tls(lettre::transport::smtp::client::Tls::Required(tls.clone()))
            .timeout(Some(SEND_TIMEOUT));
        if let Some((user, file)) = &email.user {
            // Read at each send, so that a changed password needs no restart.
            transport =
                transport.credentials(lettre::transport::smtp::authentication::Credentials::new(
                    user.clone(),
                    read_password(file)?,
                ));
        }
        let result = transport.build().send(message).await;
        result.map(|_| ()).map_err(|e| format!("{e}"))
    }
}

/// What went wrong, without the URL (reqwest names it, and its path or query may be the
/// webhook's key).
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_timestamp_and_the_body() {
        // RFC 4231 test case 2 ("Jefe"), with the message split as "t." + body.
        let sig = signature(b"Jefe", 0, b"what do ya want for nothing?");
        assert!(sig.starts_with("t=0,v1="));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let want = ring::hmac::sign(&key, b"0.what do ya want for nothing?");
        assert_eq!(sig, format!("t=0,v1={}", crate::digest::hex(want.as_ref())));
        assert_ne!(signature(b"Jefe", 1, b"x"), signature(b"Jefe", 2, b"x"));
    }

    #[test]
    fn subjects_stay_on_one_line() {
        assert_eq!(one_line("a\nb\r\nc", 10), "a b  c");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }
}
