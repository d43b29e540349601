//! Bearer-token authentication and the authorization rules.
//!
//! Every `/v1` handler takes a [`Caller`] as its first argument, so a request
//! without a valid token is answered 401 before anything else is looked at,
//! and a token outside its scope is answered 403 before the tenant or job is
//! looked up (a tenant token learns nothing about other tenants).
//!
//! Rules: an `admin` token may do everything. A `tenant:SLUG` token may read
//! its own tenant, update its settings, read its credentials, enqueue its
//! jobs and read its jobs; creating, listing and changing the status of
//! tenants need `admin`.

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};

use super::{AppState, error::ApiError, settings::Scope};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub scope: Scope,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if !state.api.has_tokens() {
            return Err(ApiError::unauthorized(
                "this API has no tokens configured; the operator must set LANDLORD_API_TOKENS (SCOPE=TOKEN,…) and restart it",
            ));
        }
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "missing bearer token (send Authorization: Bearer TOKEN)",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be: Bearer TOKEN")
            })?;
        let scope = state
            .api
            .authenticate(token)
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("invalid token"))?;
        tracing::Span::current().record("scope", tracing::field::display(&scope));
        Ok(Caller { scope })
    }
}

impl Caller {
    /// The actor written to the audit log (`api:admin`, `api:tenant:acme`).
    pub fn actor(&self) -> String {
        self.scope.actor()
    }

    pub fn is_admin(&self) -> bool {
        self.scope == Scope::Admin
    }

    /// Admin-only routes.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match &self.scope {
            Scope::Admin => Ok(()),
            Scope::Tenant(own) => Err(ApiError::forbidden(format!(
                "this operation needs an admin token; this token is scoped to tenant {own}"
            ))),
        }
    }

    /// Routes about one tenant: admin, or that tenant's own token.
    pub fn require_tenant(&self, slug: &str) -> Result<(), ApiError> {
        match &self.scope {
            Scope::Admin => Ok(()),
            Scope::Tenant(own) if own == slug => Ok(()),
            Scope::Tenant(own) => Err(ApiError::forbidden(format!(
                "this token is scoped to tenant {own}; it cannot act on another tenant"
            ))),
        }
    }
}
