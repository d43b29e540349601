//! The console's one error type: an HTML page with the right status, never a
//! stack trace. Library errors map to it as they map to the API's codes
//! (bad input 422, state conflicts 409, unknown things 404); internal
//! failures answer with a reference and log the detail.

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use super::layout;
use crate::{
    backup::manage::BackupChangeError,
    lifecycle::LifecycleError,
    runtime::store::{EnqueueError, JobActionError},
    tenants::TenantError,
};

/// Why a console request was not served.
#[derive(Debug)]
pub enum UiError {
    /// No (valid) session: to the login page.
    Login,
    /// 403 with the reason.
    Forbidden(String),
    /// 404.
    NotFound(String),
    /// 422: bad input, nothing changed.
    Invalid(String),
    /// 409: the state forbids it, nothing changed.
    Conflict(String),
    /// 500 with a reference; the detail is logged.
    Internal(anyhow::Error),
}

/// A console handler's result.
pub type UiResult<T = Response> = Result<T, UiError>;

impl UiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Login => StatusCode::SEE_OTHER,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (title, message) = match self {
            Self::Login => {
                return (status, [(header::LOCATION, "/ui/login")]).into_response();
            }
            Self::Forbidden(m) => ("Not allowed", m),
            Self::NotFound(m) => ("Not found", m),
            Self::Invalid(m) => ("Not accepted", m),
            Self::Conflict(m) => ("Not possible now", m),
            Self::Internal(e) => {
                let reference = uuid::Uuid::new_v4();
                tracing::error!(%reference, error = format!("{e:#}"), "console request failed");
                (
                    "Internal error",
                    format!(
                        "internal error (reference {reference}); the details are in the server's log"
                    ),
                )
            }
        };
        (status, layout::error_page(status, title, &message)).into_response()
    }
}

impl From<anyhow::Error> for UiError {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(e)
    }
}

impl From<sqlx::Error> for UiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

impl From<LifecycleError> for UiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::Invalid(m) => Self::Invalid(m),
            LifecycleError::NotFound(m) => Self::NotFound(m),
            LifecycleError::Other(inner) => Self::Internal(inner),
            other => Self::Conflict(other.to_string()),
        }
    }
}

impl From<TenantError> for UiError {
    fn from(e: TenantError) -> Self {
        LifecycleError::from(e).into()
    }
}

impl From<EnqueueError> for UiError {
    fn from(e: EnqueueError) -> Self {
        match e {
            EnqueueError::Tenant(t) => t.into(),
            EnqueueError::Other(inner) => Self::Internal(inner),
            EnqueueError::DedupeRace(_) | EnqueueError::DedupeTaken(_) => {
                Self::Conflict(e.to_string())
            }
            other => Self::Invalid(other.to_string()),
        }
    }
}

impl From<JobActionError> for UiError {
    fn from(e: JobActionError) -> Self {
        match e {
            JobActionError::NotFound(_) => Self::NotFound(e.to_string()),
            JobActionError::Other(inner) => Self::Internal(inner),
            other => Self::Conflict(other.to_string()),
        }
    }
}

impl From<BackupChangeError> for UiError {
    fn from(e: BackupChangeError) -> Self {
        match e {
            BackupChangeError::NotFound(_) | BackupChangeError::NotComplete(_) => {
                Self::NotFound(e.to_string())
            }
            BackupChangeError::Other(inner) => Self::Internal(inner),
            other => Self::Conflict(other.to_string()),
        }
    }
}
