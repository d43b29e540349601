//! The one error type of the lifecycle boundary, with a stable code for the
//! HTTP API and exit code 2 (bad input) or 1 (failure) for the CLI.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LifecycleError {
    /// Bad input; nothing was changed.
    #[error("{0}")]
    Invalid(String),
    #[error("owner {owner} already has {used} tenant(s) on plan {plan}, the plan's limit")]
    PlanLimit {
        owner: String,
        plan: String,
        used: i64,
    },
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the tenant's state forbids it.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl LifecycleError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_input",
            Self::PlanLimit { .. } => "plan_limit_reached",
            Self::Exists(_) => "already_exists",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Other(_) => "internal",
        }
    }

    /// Whether the caller did something wrong (as opposed to the system failing).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Self::Other(_))
    }
}

impl From<sqlx::Error> for LifecycleError {
    fn from(e: sqlx::Error) -> Self {
        Self::Other(anyhow::Error::new(e))
    }
}

impl From<crate::tenants::TenantError> for LifecycleError {
    fn from(e: crate::tenants::TenantError) -> Self {
        use crate::tenants::TenantError as T;
        match e {
            T::NotFound(s) => Self::NotFound(format!("unknown tenant {s:?}")),
            // Taken is a conflict with what exists, not bad input (409, not 422).
            e @ T::Exists(_) => Self::Exists(e.to_string()),
            e @ T::DatabaseTaken { .. } => Self::Conflict(e.to_string()),
            T::Other(e) => Self::Other(e),
            other => Self::Invalid(other.to_string()),
        }
    }
}
