//! The local admin UI and its JSON API (`/api/v1/admin/`), and `/metrics`, on the daemon's HTTPS
//! listener only (never on the plain-HTTP one: passwords and session cookies need TLS).
//!
//! The UI is three files from `web/`, compiled into the binary: nothing to install beside it and
//! nothing fetched from elsewhere (a strict Content-Security-Policy says so to the browser). The
//! UI reads and acts through the same JSON API that monitoring tools read; every action goes
//! through the daemon's [`Control`] (as the CLI's do) or the backup functions the CLI calls, and
//! is written to the audit log with who, what, when and the outcome.

pub mod alerts;
pub mod api;
pub mod apply;
pub(crate) mod assets;
pub mod auth;
mod backups;
pub mod devices;
pub mod directory;
mod error;
pub mod history;
mod jobs;
pub(crate) mod metrics;
pub mod monitor;
pub mod oidc;
pub mod refusals;
pub mod sign_in;
pub mod store;
pub mod totp;
pub mod users;

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::routing::{get, post};
use axum::Router;

pub use error::AdminError;

use crate::config::PlantConfig;
use crate::control::Control;

/// Who may sign in, their sessions and the audit log: shared by the plant's admin UI and the
/// hub's fleet page, which sign in the same way (`plantd admin add --data-dir DIR`).
#[derive(Clone)]
pub struct SignIn {
    pub store: Arc<store::Store>,
    pub auth: Arc<auth::Auth>,
    /// Where the setup code file lives.
    pub data_dir: std::path::PathBuf,
    /// Password hashes running at once (each takes 19 MiB and a core for tens of ms).
    hashing: Arc<tokio::sync::Semaphore>,
    /// The company's LDAP directory, when `[identity.ldap]` names one.
    pub directory: Option<Arc<directory::Directory>>,
    /// The company's OpenID Connect provider, when `[identity.oidc]` names one.
    pub oidc: Option<Arc<oidc::Provider>>,
    /// Local admins need a second factor (`[identity] require_totp_for_admins`).
    pub require_totp_for_admins: bool,
    /// What an authenticator app calls this server ("plantd lyon", "plantd hub").
    pub issuer: String,
}

impl SignIn {
    /// With no user yet, makes the one-time setup code, logs it and writes it to
    /// `DATA_DIR/admin-setup-code` (mode 0600) for the installer to show.
    pub fn new(
        store: Arc<store::Store>,
        data_dir: &std::path::Path,
        url: &str,
        identity: &crate::config::identity::IdentityConfig,
    ) -> anyhow::Result<SignIn> {
        let directory = identity
            .ldap
            .clone()
            .map(directory::Directory::new)
            .transpose()?
            .map(Arc::new);
        let oidc = identity
            .oidc
            .clone()
            .map(oidc::Provider::new)
            .transpose()?
            .map(Arc::new);
        let auth = Arc::new(auth::Auth::default());
        let code_file = setup_code_file(data_dir);
        if store.user_count()? == 0 {
            let code = auth::new_setup_code()?;
            crate::fsutil::write_atomic(&code_file, format!("{code}\n").as_bytes(), 0o600)?;
            // Never shipped to the hub: the code makes the first admin.
            tracing::warn!(
                target: crate::telemetry::LOCAL_ONLY,
                setup_code = %code,
                "no admin user yet: open {url} (this server's address) and create the first admin with setup code {code}, or run `plantd admin add NAME --role admin --data-dir {}`",
                data_dir.display()
            );
            auth.set_setup_code(Some(code));
        } else {
            let _ = std::fs::remove_file(&code_file);
        }
        Ok(SignIn {
            store,
            auth,
            data_dir: data_dir.to_path_buf(),
            hashing: Arc::new(tokio::sync::Semaphore::new(2)),
            directory,
            oidc,
            require_totp_for_admins: identity.require_totp_for_admins,
            // What the app lists the account under: one plant's from another's.
            issuer: format!(
                "plantd {}",
                url.trim_start_matches("https://")
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .replace(':', " ")
            ),
        })
    }

    /// A turn to hash a password, or 429 when two hashes run already: a flood of sign-ins
    /// cannot take the server's memory and cores from Odoo.
    fn hashing(&self) -> Result<tokio::sync::OwnedSemaphorePermit, AdminError> {
        self.hashing
            .clone()
            .try_acquire_owned()
            .map_err(|_| AdminError::TooManySignIns)
    }
}

/// What the admin handlers share.
#[derive(Clone)]
pub struct Admin {
    pub control: Arc<Control>,
    pub config: Arc<PlantConfig>,
    pub signin: SignIn,
    pub store: Arc<store::Store>,
    pub monitor: monitor::Monitor,
    pub host: Arc<crate::telemetry::HostProbe>,
    pub jobs: Arc<jobs::Jobs>,
    /// The plant's name: its enrollment's, else its stack's.
    pub plant: String,
}

impl axum::extract::FromRef<Admin> for SignIn {
    fn from_ref(admin: &Admin) -> SignIn {
        admin.signin.clone()
    }
}

impl Admin {
    pub fn new(
        control: Arc<Control>,
        config: Arc<PlantConfig>,
        store: Arc<store::Store>,
        monitor: monitor::Monitor,
        https: std::net::SocketAddr,
    ) -> anyhow::Result<Admin> {
        let signin = SignIn::new(
            store.clone(),
            &config.data_dir,
            &format!("https://{https}/"),
            &config.identity,
        )?;
        let plant = crate::enrollment::load(&config.data_dir)
            .ok()
            .flatten()
            .map(|e| e.plant)
            .or_else(|| config.stack.as_ref().map(|s| s.name.clone()))
            .unwrap_or_else(|| "plant".into());
        Ok(Admin {
            control,
            config,
            signin,
            store,
            monitor,
            host: Default::default(),
            jobs: Default::default(),
            plant,
        })
    }
}

/// Where the first-run setup code is written while no admin exists.
pub fn setup_code_file(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("admin-setup-code")
}

use assets::Asset;

static INDEX: Asset = Asset::new(
    include_str!("../../web/index.html"),
    "text/html; charset=utf-8",
);
static APP_JS: Asset = Asset::new(
    include_str!("../../web/app.js"),
    "text/javascript; charset=utf-8",
);
/// What the admin UI and the hub's fleet page share (`web/common.js`).
pub(crate) static COMMON_JS: Asset = Asset::new(
    include_str!("../../web/common.js"),
    "text/javascript; charset=utf-8",
);
pub(crate) static APP_CSS: Asset =
    Asset::new(include_str!("../../web/app.css"), "text/css; charset=utf-8");

/// The UI's pages and the admin API; merged into the HTTPS listener's router.
pub fn router(admin: Admin) -> Router {
    use api::*;
    use backups::*;
    use sign_in::*;
    let change = change_layer(admin.signin.clone());
    Router::new()
        .route("/", get(|h: HeaderMap| async move { INDEX.serve(&h) }))
        .route(
            "/common.js",
            get(|h: HeaderMap| async move { COMMON_JS.serve(&h) }),
        )
        .route(
            "/app.js",
            get(|h: HeaderMap| async move { APP_JS.serve(&h) }),
        )
        .route(
            "/app.css",
            get(|h: HeaderMap| async move { APP_CSS.serve(&h) }),
        )
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .route("/metrics", get(metrics::serve))
        .route("/api/v1/admin/session", get(session))
        .route("/auth/oidc/start", get(oidc::start))
        .route("/auth/oidc/callback", get(oidc::callback))
        .route("/api/v1/admin/setup", post(setup).layer(sign_in_body()))
        .route("/api/v1/admin/login", post(login).layer(sign_in_body()))
        .route(
            "/api/v1/admin/logout",
            change(post(logout)).layer(sign_in_body()),
        )
        .route("/api/v1/admin/overview", get(overview))
        .route("/api/v1/admin/services", get(services))
        .route("/api/v1/admin/services/{service}/logs", get(service_logs))
        .route(
            "/api/v1/admin/services/{service}/restart",
            change(post(service_restart)),
        )
        .route(
            "/api/v1/admin/services/{service}/reset",
            change(post(service_reset)),
        )
        .route("/api/v1/admin/journal", get(journal))
        .route("/api/v1/admin/history", get(api::history))
        .route("/api/v1/admin/backups", get(backups))
        .route("/api/v1/admin/backups/run", change(post(backup_run)))
        .route(
            "/api/v1/admin/backups/{id}/verify",
            change(post(backup_verify)),
        )
        .route(
            "/api/v1/admin/backups/{id}/restore",
            change(post(backup_restore)),
        )
        .route("/api/v1/admin/backups/{id}/download", get(backup_download))
        .route("/api/v1/admin/jobs/{job}", get(job))
        .route("/api/v1/admin/failover", get(failover))
        .route("/api/v1/admin/island", change(post(island)))
        .route("/api/v1/admin/rejoin", change(post(rejoin)))
        .route("/api/v1/admin/audit", get(audit))
        .route("/api/v1/admin/audit/export", get(audit_export))
        .route("/api/v1/admin/devices", get(devices::list))
        .route(
            "/api/v1/admin/devices/{name}/revoke",
            change(post(devices::revoke)),
        )
        .route(
            "/api/v1/admin/users",
            change(get(users::list).post(users::add)).layer(sign_in_body()),
        )
        .route(
            "/api/v1/admin/users/{name}/remove",
            change(post(users::remove)).layer(sign_in_body()),
        )
        .route(
            "/api/v1/admin/users/{name}/password",
            change(post(users::password)).layer(sign_in_body()),
        )
        .route(
            "/api/v1/admin/users/{name}/role",
            change(post(users::role)).layer(sign_in_body()),
        )
        .route(
            "/api/v1/admin/users/{name}/sign-out",
            change(post(users::sign_out)).layer(sign_in_body()),
        )
        .route(
            "/api/v1/admin/users/{name}/totp-reset",
            change(post(users::totp_reset)).layer(sign_in_body()),
        )
        .route(
            "/api/v1/admin/totp/enrol",
            change(post(totp::enrol)).layer(sign_in_body()),
        )
        .route(
            "/api/v1/admin/totp/confirm",
            change(post(totp::confirm)).layer(sign_in_body()),
        )
        .route("/api/v1/admin/alerts", get(api::alerts))
        .route("/api/v1/admin/apply", get(apply::status))
        .route("/api/v1/admin/apply/retry", change(post(apply::retry)))
        .route("/api/v1/admin/apply/park", change(post(apply::park)))
        .route("/api/v1/admin/apply/replay", change(post(apply::replay)))
        .route(
            "/api/v1/admin/apply/bulk-park",
            change(post(apply::bulk_park)),
        )
        .route(
            "/api/v1/admin/apply/bulk-replay",
            change(post(apply::bulk_replay)),
        )
        .layer(axum::middleware::map_request(host_from_authority))
        .with_state(admin)
}

/// What every change (every POST but sign-in and setup) goes through: no session, no body read
/// (401 at once). On the method, not the path, so that another method gets its 405.
pub(crate) fn change_layer<S: Clone + Send + Sync + 'static>(
    signin: SignIn,
) -> impl Fn(axum::routing::MethodRouter<S>) -> axum::routing::MethodRouter<S> {
    move |route| {
        route.route_layer(axum::middleware::from_fn_with_state(
            signin.clone(),
            sign_in::session_before_body,
        ))
    }
}

/// The body limit of sign-in, setup and sign-out: a few KiB, read before any credential.
pub(crate) fn sign_in_body() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::max(sign_in::SIGN_IN_BODY)
}

/// HTTP/2 carries the host in the URI's authority, not in a `Host` header; the same-origin
/// check reads the header, so it is filled in from the authority.
pub(crate) async fn host_from_authority(mut req: axum::extract::Request) -> axum::extract::Request {
    if !req.headers().contains_key(header::HOST) {
        let authority = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        if let Some(value) = authority {
            req.headers_mut().insert(header::HOST, value);
        }
    }
    req
}
