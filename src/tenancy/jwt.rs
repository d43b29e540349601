//! The seed's request flow as a tower layer: the bearer token (HS256, secret
//! TENANCY_JWT_SECRET) names the tenant in `tid` and the channel in `aud`;
//! the token's audience must be the channel the route serves
//! (EnforceContextBinding); the resolved [`TenantContext`] goes into the
//! request's extensions for handlers and the scoped executor. A channel
//! whose tenancy is off gets a context without a tenant.
//!
//! Never trusts an unsigned or expired token; never guesses a tenant.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::{config::TenancyConfig, context::TenantContext};

/// The claims landlord reads.
#[derive(Debug, Deserialize)]
pub struct Claims {
    /// Subject: the actor.
    pub sub: String,
    /// Tenant key.
    #[serde(default)]
    pub tid: Option<String>,
    /// Superuser flag (may use for_tenant / without_tenant).
    #[serde(default)]
    pub su: bool,
}

/// What the layer needs: the configuration and the channel its routes serve.
#[derive(Clone)]
pub struct ChannelGate {
    pub config: Arc<TenancyConfig>,
    pub channel: String,
}

fn refuse(status: StatusCode, msg: &str) -> Response {
    let body = serde_json::json!({"error": {"code": "unauthorized", "message": msg}});
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Resolves the context from a token for one channel.
pub fn resolve(gate: &ChannelGate, token: &str) -> Result<TenantContext, String> {
    let secret = gate
        .config
        .jwt_secret
        .as_ref()
        .ok_or("TENANCY_JWT_SECRET is not set")?;
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&[gate.channel.as_str()]);
    v.set_required_spec_claims(&["exp", "aud", "sub"]);
    let data = decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.expose_secret().as_bytes()),
        &v,
    )
    .map_err(|e| format!("invalid token: {e}"))?;
    let isolated = gate.config.channel_enabled(&gate.channel);
    let c = data.claims;
    if isolated && c.tid.is_none() && !c.su {
        return Err(format!(
            "channel {} is multi-tenant: the token names no tenant (tid)",
            gate.channel
        ));
    }
    Ok(TenantContext {
        tenant: if isolated { c.tid } else { None },
        channel: gate.channel.clone(),
        actor: c.sub,
        superuser: c.su,
    })
}

/// `axum::middleware::from_fn_with_state(gate, tenant_context)`.
pub async fn tenant_context(
    State(gate): State<ChannelGate>,
    mut req: Request,
    next: Next,
) -> Response {
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    let Some(token) = token else {
        return refuse(StatusCode::UNAUTHORIZED, "a bearer token is required");
    };
    match resolve(&gate, token) {
        Ok(ctx) => {
            req.extensions_mut().insert(ctx);
            next.run(req).await
        }
        Err(msg) => refuse(StatusCode::UNAUTHORIZED, &msg),
    }
}
