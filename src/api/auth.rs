//! Bearer-token authentication and the authorization rules.
//!
//! Every `/v1` handler takes a [`Caller`] as its first argument, so a request
//! without a valid token is answered 401 before anything else is looked at,
//! and a token outside its scope is answered 403 before the tenant or job is
//! looked up (a tenant token learns nothing about other tenants).
//!
//! Rules: an `admin` token may do everything. A `viewer` token may make
//! every GET an admin may, except credentials, and nothing else (any other
//! method is 403 before a handler runs); it sees what a tenant token sees
//! of jobs and backups, not the internals. A `tenant:SLUG` token may read
//! its own tenant, update its settings, read its credentials, enqueue its
//! jobs and read its jobs; creating, listing and changing the status of
//! tenants need `admin`.
//!
//! Then, in this order, for every authenticated request: the token's rate
//! limit ([`super::limits`], 429 with `Retry-After`), and for a tenant token,
//! its tenant's status: only an `active` tenant's token works. The token of
//! a tenant that is provisioning, inactive, suspended, failed or being
//! deleted may still read its own tenant (`GET /v1/tenants/SLUG`, to see the
//! status and reason) and gets 403 on everything else; the token of a
//! deleted or unknown tenant gets 403 everywhere.

use axum::{
    extract::FromRequestParts,
    http::{Method, header, request::Parts},
};

use super::{AppState, error::ApiError, limits::retry_after_secs, settings::Scope};
use crate::tenants::{self, TenantStatus};

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
        let (key, scope) = state
            .api
            .identify(token)
            .map(|(key, scope)| (key, scope.clone()))
            .ok_or_else(|| ApiError::unauthorized("invalid token"))?;
        tracing::Span::current().record("scope", tracing::field::display(&scope));
        if let Err(wait) = state.limiter.check(key) {
            return Err(ApiError::rate_limited(
                retry_after_secs(wait),
                state.api.limits.rate_per_minute,
            ));
        }
        if scope == Scope::Viewer && !matches!(parts.method, Method::GET | Method::HEAD) {
            return Err(ApiError::forbidden(
                "a viewer token only reads (GET); changes need an admin or tenant token",
            ));
        }
        if let Scope::Tenant(own) = &scope {
            let reads_itself = parts.method == Method::GET
                && parts.uri.path().strip_prefix("/v1/tenants/") == Some(own.as_str());
            let status = tenants::find(&state.pool, own)
                .await
                .map_err(|e| ApiError::internal(&e))?
                .map(|t| t.status);
            refuse_out_of_service(own, status, reads_itself)?;
        }
        Ok(Caller { scope })
    }
}

/// Whether a tenant token may be used now, given its tenant's status
/// (`None`: no such tenant) and whether the request reads the tenant itself.
fn refuse_out_of_service(
    own: &str,
    status: Option<TenantStatus>,
    reads_itself: bool,
) -> Result<(), ApiError> {
    match status {
        Some(TenantStatus::Active) => Ok(()),
        None => Err(ApiError::forbidden(format!(
            "this token is scoped to tenant {own}, which does not exist; an operator must create it or remove the token"
        ))),
        Some(TenantStatus::Deleted) => Err(ApiError::forbidden(format!(
            "tenant {own} is deleted; its token no longer works"
        ))),
        Some(_) if reads_itself => Ok(()),
        Some(s) => Err(ApiError::forbidden(format!(
            "tenant {own} is {s}; its token only reads the tenant (GET /v1/tenants/{own}) until an operator makes it active"
        ))),
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

    /// Admin-only routes (a viewer token reaches only their GETs: the
    /// extractor refused every other method).
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match &self.scope {
            Scope::Admin | Scope::Viewer => Ok(()),
            Scope::Tenant(own) => Err(ApiError::forbidden(format!(
                "this operation needs an admin token; this token is scoped to tenant {own}"
            ))),
        }
    }

    /// Routes about one tenant: admin (or a viewer, reading), or that tenant's own token.
    pub fn require_tenant(&self, slug: &str) -> Result<(), ApiError> {
        match &self.scope {
            Scope::Admin | Scope::Viewer => Ok(()),
            Scope::Tenant(own) if own == slug => Ok(()),
            Scope::Tenant(own) => Err(ApiError::forbidden(format!(
                "this token is scoped to tenant {own}; it cannot act on another tenant"
            ))),
        }
    }
}

impl Caller {
    /// A tenant's secrets (its credentials): admin, or that tenant's own
    /// token; never a viewer, which reads everything else.
    pub fn require_secrets_of(&self, slug: &str) -> Result<(), ApiError> {
        if self.scope == Scope::Viewer {
            return Err(ApiError::forbidden(
                "a viewer token does not read credentials; use an admin or the tenant's token",
            ));
        }
        self.require_tenant(slug)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_tenants_tokens_work() {
        assert!(refuse_out_of_service("acme", Some(TenantStatus::Active), false).is_ok());
        for s in [
            TenantStatus::Provisioning,
            TenantStatus::Inactive,
            TenantStatus::Suspended,
            TenantStatus::Failed,
            TenantStatus::Deleting,
        ] {
            let e = refuse_out_of_service("acme", Some(s), false).unwrap_err();
            assert_eq!(e.status().as_u16(), 403);
            assert!(refuse_out_of_service("acme", Some(s), true).is_ok(), "{s}");
        }
        for reads in [false, true] {
            assert!(refuse_out_of_service("acme", Some(TenantStatus::Deleted), reads).is_err());
            assert!(refuse_out_of_service("acme", None, reads).is_err());
        }
    }
}
