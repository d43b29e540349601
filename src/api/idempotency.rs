//! `Idempotency-Key` on every POST: a client that did not hear the answer
//! sends the request again with the same key and gets the first answer
//! (header `Idempotent-Replayed: true`), not a second tenant, job or backup.
//!
//! Keys are scoped to the token that sent them (by a digest of the token,
//! never the token): another token's key is another key. The first request
//! with a key claims it in the catalog (`api_idempotency`) before it runs;
//! a repeat while it runs gets 409 `idempotency_in_progress`, a repeat with
//! a different method, path or body 422 `idempotency_key_reused`. Answers
//! 2xx and 4xx are kept a day; after a 5xx, 401 or 429 the claim is given
//! back, so the repeat runs. A claim left by a process that died mid-request
//! is taken over after [`ABANDONED_AFTER`].
//!
//! This middleware never looks inside a body beyond hashing it, and never
//! stores a request.

use std::time::Duration;

use axum::{
    body::{Body, Bytes, to_bytes},
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

use super::{AppState, MAX_BODY_BYTES, error::ApiError};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Set on a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";
/// Longest key.
pub const MAX_KEY: usize = 255;
/// How long an answer is kept.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);
/// A claim without an answer this old belonged to a request that died.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(300);
/// Largest answer kept (bigger ones are not replayable; the claim is given back).
const MAX_ANSWER: usize = 1 << 20;

/// The middleware: only POSTs with the header are touched.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !req.headers().contains_key(HEADER) {
        return next.run(req).await;
    }
    match handle(&state, req, next).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    }
}

/// The key, checked: 1-255 visible ASCII characters.
fn key_of(req: &Request) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "Idempotency-Key must be 1-{MAX_KEY} visible ASCII characters (a UUID is a good key)"
        ))
    };
    let v = req.headers().get(HEADER).ok_or_else(bad)?;
    let s = v.to_str().map_err(|_| bad())?.trim();
    if s.is_empty() || s.len() > MAX_KEY || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(s.to_string())
}

/// The digest of the bearer token, or `None` (the handler answers 401).
fn token_key(req: &Request) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| hex(&Sha256::digest(token.trim().as_bytes())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the request is: method, path and query, content type, body.
fn request_hash(req: &Request, body: &Bytes) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(req.method().as_str().as_bytes());
    h.update([0]);
    h.update(req.uri().to_string().as_bytes());
    h.update([0]);
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        h.update(ct.as_bytes());
    }
    h.update([0]);
    h.update(body);
    h.finalize().to_vec()
}

async fn handle(state: &AppState, req: Request, next: Next) -> Result<Response, ApiError> {
    let key = key_of(&req)?;
    let Some(token) = token_key(&req) else {
        // Not authenticated: the handler's 401 is the answer, nothing is claimed.
        return Ok(next.run(req).await);
    };
    // Only known tokens claim keys: an unknown one must not fill the table.
    if !bearer_is_known(state, &req) {
        return Ok(next.run(req).await);
    }
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
    })?;
    let req = Request::from_parts(parts, Body::from(body.clone()));
    let hash = request_hash(&req, &body);
    match claim(state, &token, &key, &hash).await? {
        Claim::Ours => {}
        Claim::Replay(res) => return Ok(res),
    }
    let res = next.run(req).await;
    finish(state, &token, &key, res).await
}

fn bearer_is_known(state: &AppState, req: &Request) -> bool {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .is_some_and(|(_, t)| state.api.identify(t.trim()).is_some())
}

enum Claim {
    /// This request runs; its answer is stored.
    Ours,
    /// The stored answer (or the refusal) to send instead.
    Replay(Response),
}

async fn claim(state: &AppState, token: &str, key: &str, hash: &[u8]) -> Result<Claim, ApiError> {
    let pool = &state.pool;
    let keep = KEEP.as_secs_f64();
    // Expired answers go first, so an old key is a new one again.
    sqlx::query!(
        "DELETE FROM api_idempotency WHERE created_at < now() - make_interval(secs => $1)",
        keep
    )
    .execute(pool)
    .await
    .map_err(anyhow::Error::from)?;
    let inserted = sqlx::query!(
        "INSERT INTO api_idempotency (token_key, key, request_hash) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
        token,
        key,
        hash
    )
    .execute(pool)
    .await
    .map_err(anyhow::Error::from)?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::Ours);
    }
    let Some(row) = sqlx::query!(
        "SELECT request_hash, status, body, content_type, \
                created_at < now() - make_interval(secs => $3) AS \"abandoned!\" \
           FROM api_idempotency WHERE token_key = $1 AND key = $2",
        token,
        key,
        ABANDONED_AFTER.as_secs_f64()
    )
    .fetch_optional(pool)
    .await
    .map_err(anyhow::Error::from)?
    else {
        // Given back between our insert and select: claim it again.
        return Box::pin(claim(state, token, key, hash)).await;
    };
    if row.request_hash != hash {
        return Err(ApiError::invalid(
            "this Idempotency-Key was used with a different request (method, path or body); use a new key",
        )
        .with_code("idempotency_key_reused"));
    }
    match (row.status, row.body) {
        (Some(status), Some(body)) => Ok(Claim::Replay(replay(status, body, row.content_type))),
        _ if row.abandoned => {
            let taken = sqlx::query!(
                "UPDATE api_idempotency SET created_at = now() \
                  WHERE token_key = $1 AND key = $2 AND status IS NULL \
                    AND created_at < now() - make_interval(secs => $3)",
                token,
                key,
                ABANDONED_AFTER.as_secs_f64()
            )
            .execute(pool)
            .await
            .map_err(anyhow::Error::from)?;
            if taken.rows_affected() == 1 {
                Ok(Claim::Ours)
            } else {
                Err(in_progress())
            }
        }
        _ => Err(in_progress()),
    }
}

fn in_progress() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_in_progress",
        "a request with this Idempotency-Key is still running; ask again when it has answered",
    )
}

fn replay(status: i16, body: Vec<u8>, content_type: Option<String>) -> Response {
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut res = (status, body).into_response();
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        res.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    res.headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    res
}

/// Stores the answer (2xx, 4xx but 401 and 429), or gives the claim back.
async fn finish(
    state: &AppState,
    token: &str,
    key: &str,
    res: Response,
) -> Result<Response, ApiError> {
    let status = res.status();
    let keep = (status.is_success() || status.is_client_error())
        && status != StatusCode::UNAUTHORIZED
        && status != StatusCode::TOO_MANY_REQUESTS;
    if !keep {
        give_back(state, token, key).await;
        return Ok(res);
    }
    let (parts, body) = res.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_ANSWER).await else {
        give_back(state, token, key).await;
        return Err(ApiError::internal(&anyhow::anyhow!(
            "an answer was too big to keep for Idempotency-Key replays"
        )));
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let stored = sqlx::query!(
        "UPDATE api_idempotency SET status = $3, body = $4, content_type = $5, completed_at = now() \
          WHERE token_key = $1 AND key = $2",
        token,
        key,
        status.as_u16() as i16,
        bytes.as_ref(),
        content_type
    )
    .execute(&state.pool)
    .await;
    if let Err(e) = stored {
        // The work is done and answered; a repeat will run again (logged).
        tracing::warn!(error = %e, "could not keep the answer for its Idempotency-Key");
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

async fn give_back(state: &AppState, token: &str, key: &str) {
    let r = sqlx::query!(
        "DELETE FROM api_idempotency WHERE token_key = $1 AND key = $2 AND status IS NULL",
        token,
        key
    )
    .execute(&state.pool)
    .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "could not give back an Idempotency-Key claim; it is freed after 5 minutes");
    }
}
