//! The error a job handler returns: retryable or fatal.
//!
//! Anything converted from `anyhow::Error` is retryable; a handler that knows
//! an error cannot heal by itself says so with [`JobError::fatal`].

use thiserror::Error;

#[derive(Debug, Error)]
pub enum JobError {
    /// May succeed on a later attempt (network, lock timeouts, a busy server).
    #[error("{0}")]
    Retryable(String),
    /// Will fail the same way every time (bad arguments, missing tenant).
    #[error("{0}")]
    Fatal(String),
    /// Not a failure: a shared resource is busy; run again after the delay
    /// without spending an attempt.
    #[error("postponed: {reason}")]
    Postpone {
        delay: std::time::Duration,
        reason: String,
    },
}

impl JobError {
    pub fn retryable(msg: impl std::fmt::Display) -> Self {
        Self::Retryable(msg.to_string())
    }

    pub fn fatal(msg: impl std::fmt::Display) -> Self {
        Self::Fatal(msg.to_string())
    }

    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Fatal(_))
    }
}

impl From<anyhow::Error> for JobError {
    fn from(e: anyhow::Error) -> Self {
        Self::Retryable(format!("{e:#}"))
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        Self::Retryable(format!("database: {e}"))
    }
}
