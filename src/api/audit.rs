//! `GET /v1/audit`: the audit log, newest first, paged by entry id.
//!
//! An admin token reads every entry (filters `tenant`, `actor`, `action`); a
//! tenant token reads its own tenant's entries only, whatever it asked for.

use axum::{
    extract::State,
    http::{StatusCode, Uri},
    response::Response,
};
use serde_json::json;

use super::{
    AppState,
    auth::Caller,
    error::ApiError,
    extract::{parse_limit, query_pairs},
    json as respond,
    settings::Scope,
};
use crate::{audit, tenants};

/// Default page.
pub const PAGE: i64 = 100;

/// `GET /v1/audit[?tenant=&actor=&action=&limit=&cursor=]`; `next_cursor`
/// continues below the page's last entry.
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let mut f = audit::Filter {
        limit: PAGE,
        ..Default::default()
    };
    let mut tenant = None;
    let allowed = ["tenant", "actor", "action", "limit", "cursor"];
    for (k, v) in query_pairs(uri.query(), &allowed)? {
        match k.as_str() {
            "tenant" => tenant = Some(v),
            "actor" => f.actor = Some(v),
            "action" => f.action = Some(v),
            "limit" => f.limit = parse_limit(&v, audit::MAX_PAGE)?,
            _ => {
                f.before = Some(v.parse().ok().filter(|n: &i64| *n > 0).ok_or_else(|| {
                    ApiError::bad_request("cursor must be an entry id (a positive whole number)")
                })?)
            }
        }
    }
    if let Scope::Tenant(own) = &caller.scope {
        if tenant.as_deref().is_some_and(|t| t != own) {
            return Err(ApiError::forbidden(format!(
                "a tenant token reads only its own tenant's audit entries ({own})"
            )));
        }
        tenant = Some(own.clone());
    }
    if let Some(slug) = &tenant {
        f.tenant_id = Some(tenants::get(&state.pool, slug).await?.id);
    }
    let entries = audit::page(&state.pool, &f).await?;
    let next = (entries.len() as i64 == f.limit)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(respond(
        StatusCode::OK,
        &json!({"entries": entries, "next_cursor": next}),
    ))
}
