//! The users page's API: who may sign in, and an admin's changes to them (add, remove, new
//! password, new role, sign out everywhere). `plantd admin list|add|remove|passwd|role|sign-out`
//! does the same beside the daemon, on the same store.
//!
//! Every change but adding ends the user's sessions at once, here and wherever they were
//! opened (the store's epoch, checked on every request). The last admin can be neither removed
//! nor made a viewer: someone must always be able to act. Passwords are hashed under the same
//! two-at-a-time limit as sign-ins, and never reach the audit log.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::api::{blocking, body, Answer, Nothing};
use super::store::{Role, Store};
use super::{Admin, AdminError};

/// Every user, with their live sessions on this server; `you` marks the caller.
pub async fn list(State(admin): State<Admin>, headers: HeaderMap) -> Answer {
    let caller = admin.reader(&headers)?;
    let store = admin.store.clone();
    let users = blocking(move || store.users()).await??;
    let sessions = admin.signin.auth.session_counts(Instant::now());
    let users: Vec<_> = users
        .into_iter()
        .map(|u| {
            json!({
                "name": u.name,
                "role": u.role,
                "created_at": u.created_at,
                "password_set_at": u.password_set_at,
                "sessions": sessions.get(&u.name).copied().unwrap_or(0),
                "totp": u.totp,
                "you": u.name == caller.user,
            })
        })
        .collect();
    Ok(Json(json!({ "users": users })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    user: String,
    role: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    role: String,
}

/// One change: the caller must be an admin; the outcome, done or refused, is audited with
/// the user as its target.
async fn change<F>(admin: Admin, headers: HeaderMap, action: &str, target: &str, run: F) -> Answer
where
    F: std::future::Future<Output = Result<String, AdminError>>,
{
    let caller = admin.actor(&headers, action, Some(target)).await?;
    let outcome = run.await;
    admin
        .audit(&caller.user, action, Some(target), outcome.as_deref())
        .await;
    Ok(Json(json!({ "message": outcome? })).into_response())
}

/// The target of a change as the audit log records it (never a password typed as a name).
fn target(name: &str) -> String {
    super::sign_in::audit_name(name)
}

pub async fn add(State(admin): State<Admin>, headers: HeaderMap, bytes: Bytes) -> Answer {
    let parsed: Result<NewUser, _> = body(&headers, &bytes);
    let who = parsed
        .as_ref()
        .map_or_else(|_| "(unreadable body)".to_string(), |b| target(&b.user));
    let a = admin.clone();
    change(admin, headers, "user.add", &who, async move {
        let b = parsed?;
        let role = Role::parse(&b.role)?;
        let _permit = a.signin.hashing()?;
        let store = a.store.clone();
        let user = b.user.clone();
        blocking(move || store.add(&user, role, &b.password, false)).await??;
        Ok(format!("added {} as {}", b.user, role.as_str()))
    })
    .await
}

/// A change to an existing user: the body read, `op` run on the store (under the hashing limit
/// when it hashes a password), then the user's sessions on this server ended at once (the
/// store's epoch ends them elsewhere).
async fn change_user<B: DeserializeOwned + Send + 'static>(
    (admin, headers, name, bytes): (Admin, HeaderMap, String, Bytes),
    action: &str,
    hashes: bool,
    op: impl FnOnce(&Store, &str, B) -> Result<String, AdminError> + Send + 'static,
) -> Answer {
    let a = admin.clone();
    let who = target(&name);
    change(admin, headers.clone(), action, &who, async move {
        let b: B = body(&headers, &bytes)?;
        let _permit = if hashes {
            Some(a.signin.hashing()?)
        } else {
            None
        };
        let store = a.store.clone();
        let n = name.clone();
        let message = blocking(move || op(&store, &n, b)).await??;
        a.signin.auth.sign_out_user(&name);
        Ok(message)
    })
    .await
}

pub async fn remove(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Answer {
    let request = (admin, headers, name, bytes);
    change_user(request, "user.remove", false, |store, name, Nothing {}| {
        store.remove(name)?;
        Ok(format!("removed {name}; their sessions ended"))
    })
    .await
}

pub async fn password(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Answer {
    let request = (admin, headers, name, bytes);
    change_user(
        request,
        "user.password",
        true,
        |store, name, b: NewPassword| {
            store.set_password(name, &b.password)?;
            Ok(format!(
            "set a new password for {name}; their sessions ended, they sign in with the new one"
        ))
        },
    )
    .await
}

pub async fn role(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Answer {
    let request = (admin, headers, name, bytes);
    change_user(request, "user.role", false, |store, name, b: NewRole| {
        let role = Role::parse(&b.role)?;
        store.set_role(name, role)?;
        Ok(format!(
            "{name} is now {}; their sessions ended, they sign in again",
            role.as_str()
        ))
    })
    .await
}

pub async fn sign_out(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Answer {
    let request = (admin, headers, name, bytes);
    change_user(
        request,
        "user.sign_out",
        false,
        |store, name, Nothing {}| {
            store.end_sessions(name)?;
            Ok(format!("signed {name} out everywhere"))
        },
    )
    .await
}

/// `POST /api/v1/admin/users/{name}/totp-reset`: takes a user's second factor away (a lost
/// phone); their sessions end, and they sign in with their password alone (and set up a new
/// one, where admins need it).
pub async fn totp_reset(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Answer {
    let request = (admin, headers, name, bytes);
    change_user(
        request,
        "user.totp_reset",
        false,
        |store, name, Nothing {}| {
            store.totp_reset(name)?;
            Ok(format!(
                "took the second factor of {name} away; their sessions ended"
            ))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_target_is_never_a_password() {
        assert_eq!(super::target("ana"), "ana");
        assert_eq!(super::target("correct horse"), "(not a user name)");
    }
}
