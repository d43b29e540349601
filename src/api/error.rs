//! The API's one error shape, `{"error": {"code": "...", "message": "..."}}`,
//! with stable codes, and the mapping from library errors to it.
//!
//! Internal failures answer with a generic message and a reference; the
//! detail goes only to the server's log.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::{
    lifecycle::LifecycleError, message::limit, runtime::store::EnqueueError, tenants::TenantError,
};

/// Every error code the API answers with, and its HTTP status.
pub const CODES: [(&str, u16); 17] = [
    ("bad_request", 400),
    ("unauthorized", 401),
    ("forbidden", 403),
    ("not_found", 404),
    ("method_not_allowed", 405),
    ("already_exists", 409),
    ("conflict", 409),
    ("plan_limit_reached", 409),
    ("live_job_limit_reached", 409),
    ("wrong_status", 409),
    ("idempotency_in_progress", 409),
    ("payload_too_large", 413),
    ("unsupported_media_type", 415),
    ("invalid_input", 422),
    ("idempotency_key_reused", 422),
    ("rate_limited", 429),
    ("internal", 500),
];

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl AsRef<str>) -> Self {
        Self {
            status,
            code,
            message: limit(message.as_ref()),
            retry_after: None,
        }
    }

    /// 429: this token's requests per minute are used up; `Retry-After`
    /// says in how many seconds the next one is allowed.
    pub fn rate_limited(retry_after_secs: u64, per_minute: u32) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "this token is limited to {per_minute} requests per minute; retry in {retry_after_secs} s (Retry-After)"
            ),
        );
        e.retry_after = Some(retry_after_secs);
        e
    }

    /// The same error under another code of the same status.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn bad_request(message: impl AsRef<str>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl AsRef<str>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl AsRef<str>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl AsRef<str>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn invalid(message: impl AsRef<str>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
    }

    /// A failure of the system, not of the caller: logged in full, answered
    /// with a reference the operator can find in the log.
    pub fn internal(error: &anyhow::Error) -> Self {
        let reference = uuid::Uuid::new_v4();
        tracing::error!(%reference, error = format!("{error:#}"), "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!(
                "internal error (reference {reference}); the details are in the API server's log"
            ),
        )
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        };
        let mut res = super::json(self.status, &body);
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"landlord\""),
            );
        }
        res
    }
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        let status = match &e {
            LifecycleError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            LifecycleError::PlanLimit { .. }
            | LifecycleError::Exists(_)
            | LifecycleError::Conflict(_) => StatusCode::CONFLICT,
            LifecycleError::NotFound(_) => StatusCode::NOT_FOUND,
            LifecycleError::Other(inner) => return Self::internal(inner),
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> Self {
        LifecycleError::from(e).into()
    }
}

impl From<EnqueueError> for ApiError {
    fn from(e: EnqueueError) -> Self {
        match e {
            EnqueueError::Tenant(t) => t.into(),
            EnqueueError::DedupeRace(_) | EnqueueError::DedupeTaken(_) => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            EnqueueError::Other(inner) => Self::internal(&inner),
            EnqueueError::UnknownKind(..)
            | EnqueueError::InvalidArgs(_)
            | EnqueueError::TenantRequired(_)
            | EnqueueError::Invalid(_) => Self::invalid(e.to_string()),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_codes_keep_their_status() {
        for (e, status) in [
            (LifecycleError::Invalid("x".into()), 422),
            (
                LifecycleError::PlanLimit {
                    owner: "a@b.c".into(),
                    plan: "free".into(),
                    used: 1,
                },
                409,
            ),
            (LifecycleError::Exists("x".into()), 409),
            (LifecycleError::NotFound("x".into()), 404),
            (LifecycleError::Conflict("x".into()), 409),
            (
                LifecycleError::Other(anyhow::anyhow!("db password=hunter2")),
                500,
            ),
        ] {
            let code = e.code();
            let api = ApiError::from(e);
            assert_eq!(api.status().as_u16(), status, "{code}");
            assert_eq!(api.code(), code);
            assert!(CODES.contains(&(code, status)), "{code} missing from CODES");
            assert!(!api.message.contains("hunter2"), "{}", api.message);
        }
    }
}
