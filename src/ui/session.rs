//! Console sessions: logging in with an API token, the session cookie, and
//! the CSRF check of every action.
//!
//! A login takes the same tokens as the API (`ApiSettings::identify`) and
//! opens a session in the catalog (`ui_sessions`, so every replica knows it):
//! a random id whose SHA-256 is the key, the token's scope, the actor written
//! to the audit log (`ui:admin`, `ui:tenant:SLUG`), a random CSRF token and
//! an expiry. The browser holds only the id, in the `landlord_session`
//! cookie (HttpOnly, SameSite=Strict, Path=/ui, Secure behind TLS).
//!
//! Every request of a page goes through [`Session`]; every POST through
//! [`Action`], which also parses the form and refuses it (403, nothing done)
//! unless its `csrf` field equals the session's token. No handler that
//! changes anything takes a bare `Session`.
//!
//! As in the API: a session whose token is no longer configured is refused,
//! and so is a tenant session whose tenant is deleted or unknown; the session
//! of a tenant that is not active may only read its tenant's page.

use std::time::Duration;

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use super::{UiError, UiResult, layout, queries};
use crate::{
    api::{AppState, Scope},
    tenants::{self, TenantStatus},
};

/// The session cookie's name.
pub const COOKIE: &str = "landlord_session";
/// How long a session lasts after login.
pub const TTL: Duration = Duration::from_secs(12 * 3600);
/// Largest form body accepted (the API's body limit applies too).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// A logged-in console user.
#[derive(Debug, Clone)]
pub struct Session {
    pub scope: Scope,
    /// Written to the audit log for every action of this session.
    pub actor: String,
    /// The token every form of this session carries.
    pub csrf: String,
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.scope == Scope::Admin
    }

    /// The tenant of a tenant session.
    pub fn own_tenant(&self) -> Option<&str> {
        match &self.scope {
            Scope::Admin | Scope::Viewer => None,
            Scope::Tenant(slug) => Some(slug),
        }
    }

    /// Admin pages; a viewer session sees them too (its actions are refused by [`Action`]).
    pub fn require_admin(&self) -> UiResult<()> {
        match &self.scope {
            Scope::Admin | Scope::Viewer => Ok(()),
            Scope::Tenant(own) => Err(UiError::Forbidden(format!(
                "this page needs an admin login; you are logged in for tenant {own}"
            ))),
        }
    }

    /// Pages about one tenant: admin, or that tenant's own session.
    pub fn require_tenant(&self, slug: &str) -> UiResult<()> {
        match &self.scope {
            Scope::Admin | Scope::Viewer => Ok(()),
            Scope::Tenant(own) if own == slug => Ok(()),
            Scope::Tenant(own) => Err(UiError::Forbidden(format!(
                "you are logged in for tenant {own}; other tenants are not yours to see"
            ))),
        }
    }
}

/// SHA-256 of a session id, the catalog's key for it.
fn digest(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

/// Equality that takes the same time wherever the inputs differ.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The session id the request's cookie carries.
fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// Whether the request reached us over TLS (a proxy in front says so).
fn over_tls(headers: &HeaderMap) -> bool {
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("proto=https"));
    proto || forwarded
}

fn set_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let c =
        format!("{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&c)
        .unwrap_or_else(|_| HeaderValue::from_static("landlord_session=; Path=/ui; Max-Age=0"))
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

impl FromRequestParts<AppState> for Session {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> UiResult<Self> {
        let id = cookie_value(&parts.headers).ok_or(UiError::Login)?;
        let row = queries::session_find(&state.pool, &digest(&id))
            .await?
            .ok_or(UiError::Login)?;
        let scope = Scope::parse(&row.scope).map_err(|_| UiError::Login)?;
        // A token taken out of the configuration ends the sessions it opened.
        if !state.api.scopes().any(|s| *s == scope) {
            return Err(UiError::Login);
        }
        if let Scope::Tenant(own) = &scope {
            let status = tenants::find(&state.pool, own).await?.map(|t| t.status);
            let reads_itself = parts.method == Method::GET
                && (parts.uri.path() == format!("/ui/tenants/{own}") || parts.uri.path() == "/ui");
            match status {
                Some(TenantStatus::Active) => {}
                None | Some(TenantStatus::Deleted) => {
                    return Err(UiError::Forbidden(format!(
                        "tenant {own} does not exist any more; its token no longer logs in"
                    )));
                }
                Some(_) if reads_itself => {}
                Some(s) => {
                    return Err(UiError::Forbidden(format!(
                        "tenant {own} is {s}; until an operator makes it active you may only read its page"
                    )));
                }
            }
        }
        tracing::Span::current().record("scope", tracing::field::display(&scope));
        Ok(Self {
            scope,
            actor: row.actor,
            csrf: row.csrf_token,
        })
    }
}

/// A submitted form, in order, repeated names kept (`id=…&id=…`).
#[derive(Debug, Default)]
pub struct FormData(Vec<(String, String)>);

impl FormData {
    pub fn parse(body: &[u8]) -> Self {
        Self(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`, trimmed, if not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .collect()
    }
}

/// A POST of a logged-in user whose CSRF token matched: the only way a
/// console handler may change anything.
#[derive(Debug)]
pub struct Action {
    pub session: Session,
    pub form: FormData,
}

impl FromRequest<AppState> for Action {
    type Rejection = UiError;

    async fn from_request(req: Request, state: &AppState) -> UiResult<Self> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| UiError::Invalid("the form is too large".into()))?;
        let form = FormData::parse(&bytes);
        // A viewer reads; its one action is logging out.
        if session.scope == Scope::Viewer && parts.uri.path() != "/ui/logout" {
            return Err(UiError::Forbidden(
                "a viewer login only reads; nothing was changed. Log in with an admin or tenant token to act."
                    .into(),
            ));
        }
        match form.get("csrf") {
            Some(sent) if same(sent, &session.csrf) => Ok(Self { session, form }),
            _ => {
                tracing::warn!(actor = %session.actor, path = %parts.uri.path(), "console action refused: missing or wrong CSRF token");
                Err(UiError::Forbidden(
                    "this form did not carry this session's CSRF token; nothing was changed. Reload the page and try again."
                        .into(),
                ))
            }
        }
    }
}

/// Whether a request names another site as its origin (a login form posted
/// from elsewhere).
fn cross_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        host,
    ) {
        (None, _) | (Some("null"), _) => false,
        (Some(origin), Some(host)) => {
            let o = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            o != host
        }
        (Some(_), None) => true,
    }
}

/// `GET /ui/login`.
pub async fn login_page() -> Response {
    layout::login_page(None).into_response()
}

/// `POST /ui/login`: a valid token opens a session; anything else gets the
/// form again (401), after a short pause that makes guessing slow.
pub async fn login(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> UiResult {
    if cross_origin(&headers) {
        return Err(UiError::Forbidden(
            "a login must come from this console's own page".into(),
        ));
    }
    let form = FormData::parse(&body);
    let scope = form
        .get("token")
        .and_then(|t| state.api.identify(t))
        .map(|(_, scope)| scope.clone());
    let Some(scope) = scope else {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let msg = if state.api.has_tokens() {
            "that token is not valid"
        } else {
            "no API tokens are configured (LANDLORD_API_TOKENS); nobody can log in yet"
        };
        return Ok((StatusCode::UNAUTHORIZED, layout::login_page(Some(msg))).into_response());
    };
    if let Scope::Tenant(own) = &scope {
        let status = tenants::find(&state.pool, own).await?.map(|t| t.status);
        if matches!(status, None | Some(TenantStatus::Deleted)) {
            return Ok((
                StatusCode::FORBIDDEN,
                layout::login_page(Some(&format!(
                    "tenant {own} does not exist; its token does not log in"
                ))),
            )
                .into_response());
        }
    }
    let id = random_token();
    let actor = format!("ui:{scope}");
    queries::session_create(
        &state.pool,
        &digest(&id),
        &scope.to_string(),
        &actor,
        &random_token(),
        TTL,
    )
    .await?;
    tracing::info!(%actor, "console login");
    let to = match &scope {
        Scope::Admin | Scope::Viewer => "/ui".to_string(),
        Scope::Tenant(slug) => format!("/ui/tenants/{slug}"),
    };
    let mut res = see_other(&to);
    res.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&id, TTL.as_secs(), over_tls(&headers)),
    );
    Ok(res)
}

/// `POST /ui/logout`: the session is deleted from the catalog, the cookie cleared.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap, action: Action) -> UiResult {
    if let Some(id) = cookie_value(&headers) {
        queries::session_delete(&state.pool, &digest(&id)).await?;
    }
    tracing::info!(actor = %action.session.actor, "console logout");
    let mut res = see_other("/ui/login");
    res.headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", 0, over_tls(&headers)));
    Ok(res)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; landlord_session=abc ; b=2"),
        );
        assert_eq!(cookie_value(&h).as_deref(), Some("abc"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("landlord_session="),
        );
        assert_eq!(cookie_value(&h), None);
    }

    #[test]
    fn cookie_flags() {
        let c = set_cookie("x", 60, true);
        let c = c.to_str().unwrap();
        for flag in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/ui",
            "Secure",
            "Max-Age=60",
        ] {
            assert!(c.contains(flag), "{c}");
        }
        assert!(
            !set_cookie("x", 60, false)
                .to_str()
                .unwrap()
                .contains("Secure")
        );
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("HTTPS"));
        assert!(over_tls(&h));
    }

    #[test]
    fn forms_and_csrf() {
        let f = FormData::parse(b"csrf=abc&id=1&id=2&empty=");
        assert_eq!(f.get("csrf"), Some("abc"));
        assert_eq!(f.all("id"), ["1", "2"]);
        assert_eq!(f.get("empty"), None);
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
    }

    #[test]
    fn cross_origin_logins_are_spotted() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(!cross_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(!cross_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cross_origin(&h));
    }
}
