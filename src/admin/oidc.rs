//! Sign-in through the company's OpenID Connect provider (`[identity.oidc]`), for the plant's
//! admin UI and the hub's fleet page: the authorization code flow with PKCE (S256), a `state`
//! bound to the browser by a cookie, and a `nonce` in the ID token.
//!
//! - The provider is found by discovery; its metadata and keys are kept for `keys_refresh` and
//!   fetched again after that, or at once (at most every [`FORCED_REFRESH`]) when a token is
//!   signed by a key not among them. A key the provider no longer publishes is no longer
//!   trusted after the next refresh.
//! - The ID token is checked by `openidconnect`: signature (by the provider's published keys,
//!   never `none` or a shared secret), issuer, audience, expiry and issue time (within
//!   `clock_skew`), nonce.
//! - The groups claim gives the role (`[identity.oidc.roles]`, the highest wins); a user of no
//!   mapped group is refused with a page that says so.
//! - A flow's state, nonce and PKCE verifier travel in the browser's flow cookie, sealed
//!   (AES-256-GCM under a key made at start and held in memory only) and good for
//!   [`FLOW_TTL`]: the server holds nothing per flow, so nobody unauthenticated can make it hold
//!   more, or push anyone's flow out. Each code is used once at the provider, and PKCE ties it
//!   to the cookie's verifier.
//! - Sign-out ends the session here and sends the browser to the provider's end-session
//!   endpoint when it offers one (RP-initiated logout).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    LogoutRequest, Nonce, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, Scope, SignatureVerificationError, TokenResponse,
};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::api::blocking;
use super::directory::Reach;
use super::store::Role;
use super::{AdminError, SignIn};
use crate::config::identity::OidcConfig;

/// How long a browser has between leaving for the provider and coming back.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// The keys are fetched again for an unknown key at most this often.
pub const FORCED_REFRESH: Duration = Duration::from_secs(10);
/// The largest answer read from the provider.
const MAX_ANSWER: usize = 1024 * 1024;
/// The cookie binding a flow to the browser that started it (`__Secure-`: no plain-HTTP page
/// of a sibling host can set it).
pub const FLOW_COOKIE: &str = "__Secure-plantd_oidc";
/// Provider requests at once (discovery, token); more are refused at once.
const TURNS: usize = 4;

/// Who the provider says signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcUser {
    /// The name shown and audited: `preferred_username`, else `email`, in canonical form.
    pub name: String,
    /// `ISSUER#sub`: the provider's subject, which the audit log names.
    pub subject: String,
    pub role: Role,
    /// The group that gave the role.
    pub group: String,
    /// Where to send the browser to sign out at the provider too, when it offers that.
    pub logout: Option<String>,
    /// At the hub: the plants they see (`None`: every plant).
    pub plants: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be asked: down, unreachable, TLS refused, too slow.
    #[error(
        "the sign-in provider {issuer} cannot be reached ({why}); local users can still sign in"
    )]
    Unreachable { issuer: String, why: String },
    /// The flow is not one this browser started here, or it is too old.
    #[error("this sign-in was not started here in this browser in the last 10 minutes, or it was used already; start again from the sign-in page")]
    UnknownFlow,
    /// The provider said no (the user cancelled, or was refused there).
    #[error("the sign-in provider refused the sign-in: {0}")]
    Refused(String),
    /// The answer failed a check (signature, issuer, audience, expiry, nonce): nobody is let in.
    #[error("the sign-in provider's answer failed a check ({0}); nobody was signed in")]
    Invalid(String),
    /// Signed in at the provider, but no group of theirs gives a role here.
    #[error("{name} is in none of the groups that give a role on this server; ask your IT to add you to one")]
    NoRole { name: String, groups: Vec<String> },
    /// At the hub: no group of theirs is given plants (`[identity.oidc.plants]`).
    #[error("{name} is in none of the groups that give plants on this hub; ask your IT to add you to one")]
    NoPlants { name: String },
    /// Signed in, but the provider gives no name plantd can use.
    #[error("{0}")]
    NoName(String),
    #[error("too many sign-ins at once; try again in a moment")]
    Busy,
    #[error("{0}")]
    Internal(String),
}

/// What a flow's cookie carries, sealed.
#[derive(serde::Serialize, serde::Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    /// Unix seconds after which it is refused.
    until: u64,
}

struct Known {
    metadata: ProviderMetadataWithLogout,
    fetched: Instant,
}

pub struct Provider {
    config: OidcConfig,
    secret: String,
    http: reqwest::Client,
    turns: Arc<tokio::sync::Semaphore>,
    known: tokio::sync::Mutex<Option<Known>>,
    /// When the keys were last fetched for a key not among them.
    forced: Mutex<Option<Instant>>,
    /// Seals the flow cookies.
    seal: ring::aead::LessSafeKey,
    reach: Mutex<Option<Reach>>,
    probing: AtomicBool,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

/// A failure of the HTTP client `openidconnect` is given.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// One request to the provider: no redirects followed, the answer read up to [`MAX_ANSWER`].
async fn send(
    http: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let request = reqwest::Request::try_from(request).map_err(|e| HttpError(format!("{e}")))?;
    let mut answer = http.execute(request).await.map_err(|e| {
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            why = format!("{why}: {s}");
            source = s.source();
        }
        HttpError(why)
    })?;
    let mut response = openidconnect::http::Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(|e| HttpError(e.to_string()))? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(HttpError(format!(
                "the answer is larger than {MAX_ANSWER} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    response.body(body).map_err(|e| HttpError(e.to_string()))
}

impl Provider {
    /// Reads the client secret and the CA: a mistake in either stops the start.
    pub fn new(config: OidcConfig) -> anyhow::Result<Provider> {
        let secret = std::fs::read_to_string(&config.client_secret_file)
            .with_context(|| {
                format!(
                    "[identity.oidc] client_secret_file = {}",
                    config.client_secret_file.display()
                )
            })?
            .trim_end_matches(['\r', '\n'])
            .to_string();
        anyhow::ensure!(
            !secret.is_empty(),
            "[identity.oidc] client_secret_file = {} is empty",
            config.client_secret_file.display()
        );
        let provider = crate::pki::provider();
        let extra = match &config.ca_file {
            Some(path) => crate::pki::read_certs(path)
                .with_context(|| format!("[identity.oidc] ca_file = {}", path.display()))?,
            None => Vec::new(),
        };
        let verifier =
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
                .context("loading the system's CA certificates for [identity.oidc]")?;
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // The spec's advice: a redirect from the token endpoint could send the code and
            // the client secret anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the OIDC client")?;
        Ok(Provider {
            config,
            secret,
            http,
            turns: Arc::new(tokio::sync::Semaphore::new(TURNS)),
            known: tokio::sync::Mutex::new(None),
            forced: Mutex::new(None),
            seal: {
                let mut key = [0u8; 32];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
                    .map_err(|_| anyhow::anyhow!("no random numbers from the operating system"))?;
                ring::aead::LessSafeKey::new(
                    ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key)
                        .map_err(|_| anyhow::anyhow!("an AES-256-GCM key"))?,
                )
            },
            reach: Mutex::new(None),
            probing: AtomicBool::new(false),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    pub fn display_name(&self) -> &str {
        &self.config.display_name
    }

    fn unreachable(&self, why: impl std::fmt::Display) -> OidcError {
        OidcError::Unreachable {
            issuer: self.config.issuer.clone(),
            why: why.to_string(),
        }
    }

    /// The provider's metadata and keys: as kept, unless older than `keys_refresh`; fetched
    /// at once when `force`d, unless that was done less than [`FORCED_REFRESH`] ago.
    async fn metadata(&self, force: bool) -> Result<ProviderMetadataWithLogout, OidcError> {
        let now = force && {
            let mut last = self.forced.lock().expect("not poisoned");
            let due = last.is_none_or(|at| at.elapsed() >= FORCED_REFRESH);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if now {
            return self.fetch(None).await;
        }
        self.fetch(Some(self.config.keys_refresh)).await
    }

    /// The metadata kept when younger than `keep` (`None`: fetched whatever its age).
    async fn fetch(&self, keep: Option<Duration>) -> Result<ProviderMetadataWithLogout, OidcError> {
        let mut known = self.known.lock().await;
        if let (Some(k), Some(keep)) = (known.as_ref(), keep) {
            if k.fetched.elapsed() < keep {
                return Ok(k.metadata.clone());
            }
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| self.unreachable(format!("issuer: {e}")))?;
        let http = self.http.clone();
        let found =
            ProviderMetadataWithLogout::discover_async(issuer, &move |r| send(http.clone(), r))
                .await;
        let found = found.map_err(|e| chain(&e)).and_then(|m| {
            // The code, the client secret and the keys must not cross the network in clear.
            let mut urls = vec![
                ("authorization_endpoint", m.authorization_endpoint().url().clone()),
                ("jwks_uri", m.jwks_uri().url().clone()),
            ];
            if let Some(t) = m.token_endpoint() {
                urls.push(("token_endpoint", t.url().clone()));
            }
            if let Some(e) = &m.additional_metadata().end_session_endpoint {
                urls.push(("end_session_endpoint", e.url().clone()));
            }
            match urls.into_iter().find(|(_, u)| u.scheme() != "https") {
                Some((name, u)) => Err(format!(
                    "its discovery document names {name} {u}, which is not https; nothing is sent there"
                )),
                None => Ok(m),
            }
        });
        match found {
            Ok(metadata) => {
                self.note(true, None);
                *known = Some(Known {
                    metadata: metadata.clone(),
                    fetched: Instant::now(),
                });
                Ok(metadata)
            }
            Err(why) => {
                self.note(false, Some(why.clone()));
                Err(self.unreachable(why))
            }
        }
    }

    fn note(&self, reachable: bool, detail: Option<String>) {
        *self.reach.lock().expect("not poisoned") =
            Some(Reach::new("oidc", &self.config.issuer, reachable, detail));
    }

    /// What is known of the provider's reach; fetches its metadata and keys again in the
    /// background when that is older than [`super::directory::PROBE_EVERY`] or
    /// `keys_refresh`, whichever is shorter (one fetch at a time).
    pub fn reach(self: &Arc<Self>) -> Option<Reach> {
        let known = self.reach.lock().expect("not poisoned").clone();
        let every = self.config.keys_refresh.min(super::directory::PROBE_EVERY);
        let stale = known.as_ref().is_none_or(|r| r.stale_after(every));
        if stale && !self.probing.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            tokio::spawn(async move {
                let _ = me.fetch(None).await;
                me.probing.store(false, Ordering::Release);
            });
        }
        known
    }

    fn client(
        &self,
        metadata: ProviderMetadataWithLogout,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let redirect = RedirectUrl::new(self.config.redirect_url.clone())
            .map_err(|e| OidcError::Invalid(format!("redirect_url: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    /// A turn to ask the provider (or `Busy`), and its metadata.
    async fn turn_and_metadata(
        &self,
    ) -> Result<
        (
            tokio::sync::OwnedSemaphorePermit,
            ProviderMetadataWithLogout,
        ),
        OidcError,
    > {
        let turn = self
            .turns
            .clone()
            .try_acquire_owned()
            .map_err(|_| OidcError::Busy)?;
        Ok((turn, self.metadata(false).await?))
    }

    /// Starts a flow: the flow's id (for the browser's cookie) and where to send the browser.
    pub async fn start(&self) -> Result<(String, String), OidcError> {
        let (_turn, metadata) = self.turn_and_metadata().await?;
        let client = self.client(metadata)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        let flow = Flow {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            until: unix_now() + FLOW_TTL.as_secs(),
        };
        let id = self.seal(&flow)?;
        Ok((id, url.to_string()))
    }

    /// Seals a flow into a cookie value: base64url of the nonce and the sealed JSON.
    fn seal(&self, flow: &Flow) -> Result<String, OidcError> {
        use base64::Engine;
        let mut nonce = [0u8; 12];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).map_err(
            |_| OidcError::Internal("no random numbers from the operating system".into()),
        )?;
        let mut data = serde_json::to_vec(flow).map_err(|e| OidcError::Internal(e.to_string()))?;
        self.seal
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(FLOW_COOKIE),
                &mut data,
            )
            .map_err(|_| OidcError::Internal("sealing a flow".into()))?;
        let mut all = nonce.to_vec();
        all.extend_from_slice(&data);
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(all))
    }

    /// The flow a cookie value seals, when it is this server's, not expired, and its state is
    /// `state` (compared in constant time).
    fn open(&self, cookie: &str, state: &str) -> Result<Flow, OidcError> {
        use base64::Engine;
        let mut all = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cookie.as_bytes())
            .map_err(|_| OidcError::UnknownFlow)?;
        if all.len() < 12 + 16 || all.len() > 4096 {
            return Err(OidcError::UnknownFlow);
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&all[..12]);
        let plain = self
            .seal
            .open_in_place(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(FLOW_COOKIE),
                &mut all[12..],
            )
            .map_err(|_| OidcError::UnknownFlow)?;
        let flow: Flow = serde_json::from_slice(plain).map_err(|_| OidcError::UnknownFlow)?;
        if flow.until < unix_now() || !super::auth::same(state.as_bytes(), flow.state.as_bytes()) {
            return Err(OidcError::UnknownFlow);
        }
        Ok(flow)
    }

    /// Finishes the flow `flow` (the browser's cookie) with the provider's answer: the code is
    /// exchanged, the ID token checked, and its groups give the role.
    pub async fn finish(&self, flow: &str, state: &str, code: &str) -> Result<OidcUser, OidcError> {
        let flow = self.open(flow, state)?;
        let (_turn, metadata) = self.turn_and_metadata().await?;
        let end_session = metadata.additional_metadata().end_session_endpoint.clone();
        let client = self.client(metadata)?;
        let http = self.http.clone();
        let http = move |r| send(http.clone(), r);
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Invalid(format!("the provider names no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier))
            .request_async(&http)
            .await
            .map_err(|e| match &e {
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    OidcError::Refused(match r.error_description() {
                        Some(d) => format!("{} ({d})", r.error()),
                        None => r.error().to_string(),
                    })
                }
                openidconnect::RequestTokenError::Request(_) => self.unreachable(chain(&e)),
                _ => OidcError::Invalid(chain(&e)),
            })?;
        let id_token = token
            .id_token()
            .ok_or_else(|| OidcError::Invalid("the token answer holds no ID token".into()))?;
        let nonce = Nonce::new(flow.nonce);
        let skew = chrono::Duration::from_std(self.config.clock_skew).unwrap_or_default();
        let verify = |client: &CoreClient<_, _, _, _, _, _>| {
            let verifier = client
                .id_token_verifier()
                .set_allowed_algs(SIGNING_ALGS.iter().cloned())
                .set_time_fn(move || chrono::Utc::now() - skew)
                .set_issue_time_verifier_fn(move |iat| {
                    let now = chrono::Utc::now();
                    if iat > now + skew {
                        Err(format!("issued in the future ({iat}; now {now})"))
                    } else {
                        Ok(())
                    }
                });
            id_token.claims(&verifier, &nonce).cloned()
        };
        let claims = match verify(&client) {
            // A key this server does not hold: the provider may have rotated its keys. They are
            // fetched again (at most every FORCED_REFRESH); a key gone from them is refused.
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                let metadata = self.metadata(true).await?;
                verify(&self.client(metadata)?)
            }
            other => other,
        }
        .map_err(|e| OidcError::Invalid(chain(&e)))?;
        let subject = format!("{}#{}", claims.issuer().as_str(), claims.subject().as_str());
        let name = claims
            .preferred_username()
            .map(|n| n.as_str().to_string())
            // An address the provider has not verified could be anyone's.
            .or_else(|| {
                claims
                    .email()
                    .filter(|_| claims.email_verified() == Some(true))
                    .map(|e| e.as_str().to_string())
            })
            .ok_or_else(|| {
                OidcError::NoName(
                    "the provider gave neither a preferred_username nor a verified email for your account; ask your IT to release one of them to this server".into(),
                )
            })?;
        let name = super::directory::canonical_name(&name).ok_or_else(|| {
            OidcError::NoName(format!(
                "the name the provider gave ({}) is not one this server takes: 1 to 64 letters, digits and . _ - @",
                name.chars().take(80).collect::<String>()
            ))
        })?;
        // The claims were checked above over these very bytes; the groups claim is read
        // from them as JSON, whatever its name.
        let groups = groups_of(&id_token.to_string(), &self.config.groups_claim);
        let Some((role, group)) = role_of(&self.config, &groups) else {
            return Err(OidcError::NoRole { name, groups });
        };
        let Ok(plants) = self.config.plants.of(&groups, |a, b| a == b) else {
            return Err(OidcError::NoPlants { name });
        };
        let logout = end_session.map(|endpoint| {
            let mut request = LogoutRequest::from(endpoint)
                .set_client_id(ClientId::new(self.config.client_id.clone()))
                .set_id_token_hint(id_token)
                .set_state(CsrfToken::new_random());
            if let Ok(back) = PostLogoutRedirectUrl::new(self.home()) {
                request = request.set_post_logout_redirect_uri(back);
            }
            request.http_get_url().to_string()
        });
        Ok(OidcUser {
            name,
            subject,
            role,
            group,
            logout,
            plants,
        })
    }

    /// This server's own address as the provider's redirect names it: where a signed-out
    /// browser comes back to.
    pub fn home(&self) -> String {
        let mut u = url::Url::parse(&self.config.redirect_url).expect("checked in the config");
        u.set_path("/");
        u.to_string()
    }
}

/// The algorithms an ID token may be signed with: the provider's public keys only (never
/// `none`, never an HMAC keyed with the client secret).
const SIGNING_ALGS: &[CoreJwsSigningAlgorithm] = &[
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An error with its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut why = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !why.contains(&s_text) {
            why = format!("{why}: {s_text}");
        }
        source = s.source();
    }
    why
}

/// The groups a compact JWT's claim `claim` lists: an array of strings, or one string.
fn groups_of(jwt: &str, claim: &str) -> Vec<String> {
    use base64::Engine;
    let Some(payload) = jwt.split('.').nth(1) else {
        return Vec::new();
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else {
        return Vec::new();
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Vec::new();
    };
    match value.get(claim) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .take(1000)
            .collect(),
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// The highest role the groups give, and the group that gives it.
fn role_of(config: &OidcConfig, groups: &[String]) -> Option<(Role, String)> {
    [
        (Role::Admin, &config.admin),
        (Role::Operator, &config.operator),
        (Role::Viewer, &config.viewer),
    ]
    .into_iter()
    .find_map(|(role, mapped)| {
        mapped
            .iter()
            .find(|m| groups.contains(m))
            .map(|g| (role, g.clone()))
    })
}

// ---------- The two pages: the way out to the provider, and the way back ----------

/// Where the sign-in page's button leads: off to the provider.
pub const START: &str = "/auth/oidc/start";

/// The pages' own policy: the stylesheet, nothing else; the way on is a meta refresh.
const PAGE_CSP: &str =
    "default-src 'none'; style-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'";

/// A page of the sign-in's end: a title, what happened, and the way back.
fn page(status: StatusCode, title: &str, message: &str, on_to: Option<&str>) -> Response {
    let esc = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let refresh = on_to
        .map(|u| format!("<meta http-equiv=\"refresh\" content=\"0;url={}\">", esc(u)))
        .unwrap_or_default();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{refresh}<title>{t} · plantd</title><link rel=\"stylesheet\" href=\"/app.css\"></head><body><main class=\"auth\"><div class=\"card auth-card\" id=\"oidc-outcome\"><h1>{t}</h1><p id=\"oidc-message\">{m}</p><p><a href=\"/\">Back to the sign-in page</a></p></div></main></body></html>",
        t = esc(title),
        m = esc(message),
    );
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// The flow cookie: sent back on the provider's redirect (a top-level GET from another site,
/// hence `Lax`), only to these two paths, for as long as a flow lives.
fn flow_cookie(id: Option<&str>) -> String {
    match id {
        Some(id) => format!(
            "{FLOW_COOKIE}={id}; Path=/auth/oidc/; HttpOnly; Secure; SameSite=Lax; Max-Age={}",
            FLOW_TTL.as_secs()
        ),
        None => {
            format!("{FLOW_COOKIE}=; Path=/auth/oidc/; HttpOnly; Secure; SameSite=Lax; Max-Age=0")
        }
    }
}

fn status_of(e: &OidcError) -> StatusCode {
    match e {
        OidcError::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        OidcError::UnknownFlow => StatusCode::BAD_REQUEST,
        OidcError::Refused(_)
        | OidcError::NoRole { .. }
        | OidcError::NoPlants { .. }
        | OidcError::NoName(_) => StatusCode::FORBIDDEN,
        OidcError::Invalid(_) => StatusCode::BAD_GATEWAY,
        OidcError::Busy => StatusCode::TOO_MANY_REQUESTS,
        OidcError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn not_offered() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "No company sign-in here",
        "This server has no OpenID Connect provider configured ([identity.oidc]); sign in with a local user.",
        None,
    )
}

/// `GET /auth/oidc/start`: a new flow, and the browser sent to the provider.
pub async fn start(State(admin): State<SignIn>, headers: HeaderMap) -> Response {
    let Some(provider) = admin.oidc.clone() else {
        return not_offered();
    };
    // Only a page a person opens starts a flow: not an image or a script of another site's.
    if headers
        .get("sec-fetch-dest")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|d| d != "document")
    {
        return page(
            StatusCode::FORBIDDEN,
            "Not signed in",
            "a sign-in starts from the sign-in page, opened in the browser",
            None,
        );
    }
    match provider.start().await {
        Ok((id, url)) => {
            let (Ok(location), Ok(cookie)) = (
                HeaderValue::from_str(&url),
                HeaderValue::from_str(&flow_cookie(Some(&id))),
            ) else {
                return page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Company sign-in unavailable",
                    "the provider's authorization address cannot be sent to a browser; its details are in plantd's log",
                    None,
                );
            };
            let mut r = StatusCode::SEE_OTHER.into_response();
            let h = r.headers_mut();
            h.insert(header::LOCATION, location);
            h.insert(header::SET_COOKIE, cookie);
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "starting a sign-in through OIDC");
            page(
                status_of(&e),
                "Company sign-in unavailable",
                &e.to_string(),
                None,
            )
        }
    }
}

/// What the provider's redirect carries back.
#[derive(serde::Deserialize)]
pub struct Answer {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/oidc/callback`: the provider's answer; a session on success, else a page that
/// says why not. Refusals of someone the provider vouched for are audited.
pub async fn callback(
    State(admin): State<SignIn>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    query: Result<Query<Answer>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(provider) = admin.oidc.clone() else {
        return not_offered();
    };
    let flow = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| super::auth::cookie(c, FLOW_COOKIE))
        .unwrap_or("")
        .to_string();
    let from = super::sign_in::source(&extensions);
    let outcome = match query {
        // Not an answer of the provider's: as a flow not started here.
        Err(_) => Err(OidcError::UnknownFlow),
        // The provider's refusal, when it answers a flow of this browser's (else anyone could
        // show their text on this server's page).
        Ok(Query(Answer {
            error: Some(error),
            error_description,
            state: Some(state),
            ..
        })) if provider.open(&flow, &state).is_ok() => {
            let error: String = error.chars().take(100).collect();
            Err(OidcError::Refused(match error_description {
                Some(d) => format!("{error} ({})", d.chars().take(200).collect::<String>()),
                None => error,
            }))
        }
        Ok(Query(Answer {
            code: Some(code),
            state: Some(state),
            ..
        })) if code.len() <= 4096 && state.len() <= 256 => {
            provider.finish(&flow, &state, &code).await
        }
        Ok(_) => Err(OidcError::UnknownFlow),
    };
    let user = match outcome {
        Ok(user) => user,
        Err(e) => {
            // Someone the provider vouched for, or an answer that failed a check, is audited;
            // what costs a stranger nothing (a stale or made-up flow) only logged.
            tracing::warn!(error = %e, from = %from, "a sign-in through OIDC was refused");
            match &e {
                OidcError::NoRole { name, groups } => {
                    tracing::warn!(user = %name, groups = ?groups, "an OIDC user of no mapped group was refused");
                    let refusal = AdminError::Forbidden(e.to_string());
                    admin
                        .audit_refusal(&from, name, "sign_in", None, &refusal)
                        .await;
                }
                OidcError::NoPlants { name } => {
                    let refusal = AdminError::Forbidden(e.to_string());
                    admin
                        .audit_refusal(&from, name, "sign_in", None, &refusal)
                        .await;
                }
                OidcError::Invalid(_) | OidcError::NoName(_) => {
                    // Its own kind of refusal: never folded into the count of others.
                    let refusal = AdminError::Invalid(e.to_string());
                    admin
                        .audit_refusal(&from, "(oidc)", "sign_in", None, &refusal)
                        .await;
                }
                _ => {}
            }
            let mut r = page(status_of(&e), "Not signed in", &e.to_string(), None);
            if let Ok(v) = HeaderValue::from_str(&flow_cookie(None)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            return r;
        }
    };
    // A local user's name is theirs: someone else's account must not be audited, shown or
    // signed out as them.
    let store = admin.store.clone();
    let name = user.name.clone();
    let local = match blocking(move || store.user_state(&name)).await {
        Ok(Ok(found)) => found.is_some(),
        _ => true,
    };
    if local {
        let refusal = AdminError::Forbidden(format!(
            "{} is the name of a local user of this server; a company account cannot sign in under it. Sign in as the local user, or ask your IT to rename one of the two",
            user.name
        ));
        admin
            .audit_refusal(&from, &user.name, "sign_in", None, &refusal)
            .await;
        return page(
            StatusCode::FORBIDDEN,
            "Not signed in",
            &refusal.to_string(),
            None,
        );
    }
    let who = super::auth::External {
        via: super::auth::Via::Oidc,
        role: user.role,
        subject: user.subject.clone(),
        logout: user.logout.clone(),
        plants: user.plants.clone(),
    };
    let (id, _) = match admin.auth.sign_in_external(&user.name, who, Instant::now()) {
        Ok(started) => started,
        Err(e) => {
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Not signed in",
                &format!("{e:#}"),
                None,
            )
        }
    };
    let detail = format!(
        "signed in through OIDC as {} ({} by group {})",
        user.subject, user.role, user.group
    );
    admin.audit(&user.name, "sign_in", None, Ok(&detail)).await;
    // On to the UI from a page of this site: the session cookie is SameSite=Strict, which a
    // redirect begun at the provider's site would not carry.
    let mut r = page(
        StatusCode::OK,
        "Signed in",
        &format!(
            "Signed in as {} ({}). Going on to the console…",
            user.name, user.role
        ),
        Some("/"),
    );
    let h = r.headers_mut();
    for cookie in [super::auth::set_cookie(Some(&id)), flow_cookie(None)] {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.append(header::SET_COOKIE, v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OidcConfig {
        OidcConfig {
            issuer: "https://idp.test".into(),
            client_id: "plantd".into(),
            client_secret_file: "/nonexistent".into(),
            redirect_url: "https://plant.test:8443/auth/oidc/callback".into(),
            display_name: "IdP".into(),
            scopes: vec![],
            groups_claim: "groups".into(),
            ca_file: None,
            timeout: Duration::from_secs(5),
            keys_refresh: Duration::from_secs(300),
            clock_skew: Duration::from_secs(60),
            admin: vec!["it".into()],
            operator: vec!["leads".into()],
            viewer: vec!["staff".into()],
            plants: Default::default(),
        }
    }

    #[test]
    fn a_flow_cookie_opens_only_here_unaltered_in_time_and_with_its_state() {
        let dir = std::env::temp_dir().join(format!("plantd-oidc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let mut c = config();
        c.client_secret_file = secret;
        let p = Provider::new(c.clone()).unwrap();
        let other = Provider::new(c).unwrap();
        let flow = |until: u64| Flow {
            state: "the-state".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            until,
        };
        let sealed = p.seal(&flow(unix_now() + 60)).unwrap();
        assert_eq!(p.open(&sealed, "the-state").unwrap().verifier, "v");
        for (cookie, state) in [
            (sealed.as_str(), "another-state"),
            (sealed.as_str(), ""),
            (&sealed[..sealed.len() - 2], "the-state"),
            ("", "the-state"),
            ("not base64 !", "the-state"),
        ] {
            assert!(
                matches!(p.open(cookie, state), Err(OidcError::UnknownFlow)),
                "{cookie:?} {state:?}"
            );
        }
        // Another server's (or this one's before a restart), and an expired one.
        assert!(other.open(&sealed, "the-state").is_err());
        let old = p.seal(&flow(unix_now() - 1)).unwrap();
        assert!(p.open(&old, "the-state").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_highest_mapped_group_gives_the_role() {
        let c = config();
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            role_of(&c, &g(&["staff", "leads"])),
            Some((Role::Operator, "leads".into()))
        );
        assert_eq!(
            role_of(&c, &g(&["it", "staff"])),
            Some((Role::Admin, "it".into()))
        );
        assert_eq!(role_of(&c, &g(&["IT", "visitors"])), None);
        assert_eq!(role_of(&c, &[]), None);
    }

    #[test]
    fn groups_are_read_as_a_list_or_one_string() {
        use base64::Engine;
        let jwt = |claims: &str| {
            format!(
                "e30.{}.sig",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims)
            )
        };
        assert_eq!(
            groups_of(&jwt(r#"{"groups":["a","b",3]}"#), "groups"),
            ["a", "b"]
        );
        assert_eq!(groups_of(&jwt(r#"{"roles":"a"}"#), "roles"), ["a"]);
        assert!(groups_of(&jwt(r#"{"groups":{"a":1}}"#), "groups").is_empty());
        assert!(groups_of("not a jwt", "groups").is_empty());
    }
}
