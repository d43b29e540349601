//! The error a job handler returns: retryable or fatal.
//!
//! Anything converted from `anyhow::Error` is retryable; a handler that knows
//! an error cannot heal by itself says so with [`JobError::fatal`], or on a
//! `Result` with [`ResultExt::fatal`] (`.retryable()?` for the other way).
//! This module never decides which errors are which: the handler does.

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

/// Classifies any displayable error as a [`JobError`] where it happens:
/// `store.get(key).await.retryable_ctx("reading the manifest")?`.
///
/// The message is the error's alternate form (`{e:#}`): the whole cause chain
/// of an `anyhow::Error`, the plain message of other errors. The `_ctx` forms
/// put `what: ` in front.
pub trait ResultExt<T> {
    /// May succeed on a later attempt.
    fn retryable(self) -> Result<T, JobError>;
    /// Will fail the same way every time.
    fn fatal(self) -> Result<T, JobError>;
    /// [`ResultExt::retryable`] with `what: ` in front of the message.
    fn retryable_ctx(self, what: impl std::fmt::Display) -> Result<T, JobError>;
    /// [`ResultExt::fatal`] with `what: ` in front of the message.
    fn fatal_ctx(self, what: impl std::fmt::Display) -> Result<T, JobError>;
}

impl<T, E: std::fmt::Display> ResultExt<T> for Result<T, E> {
    fn retryable(self) -> Result<T, JobError> {
        self.map_err(|e| JobError::Retryable(format!("{e:#}")))
    }

    fn fatal(self) -> Result<T, JobError> {
        self.map_err(|e| JobError::Fatal(format!("{e:#}")))
    }

    fn retryable_ctx(self, what: impl std::fmt::Display) -> Result<T, JobError> {
        self.map_err(|e| JobError::Retryable(format!("{what}: {e:#}")))
    }

    fn fatal_ctx(self, what: impl std::fmt::Display) -> Result<T, JobError> {
        self.map_err(|e| JobError::Fatal(format!("{what}: {e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn the_kind_and_the_message_follow_the_call() {
        let e: Result<(), anyhow::Error> = Err(anyhow::anyhow!("refused")).context("connecting");
        match e.retryable_ctx("creating database t1") {
            Err(JobError::Retryable(m)) => {
                assert_eq!(m, "creating database t1: connecting: refused")
            }
            other => panic!("{other:?}"),
        }
        match Err::<(), _>("bad key").fatal() {
            Err(JobError::Fatal(m)) => assert_eq!(m, "bad key"),
            other => panic!("{other:?}"),
        }
    }
}
