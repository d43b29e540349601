//! Errors every layer may return to the program's edge, and the exit code
//! each maps to. A library layer (api, scheduler, lifecycle, ...) returns a
//! [`BadInput`] when the operator's input or configuration is at fault; only
//! the binary's entry point (`cli::main`) turns errors into exit codes.
//!
//! This module never prints and never depends on any other module of the crate.

use std::process::ExitCode;

/// Exit code for bad input (nothing was changed).
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code for a job that ended in failure, or an operation that failed.
pub const EXIT_FAILED: u8 = 1;

/// Bad input from the operator: shown as is, exit code 2, nothing changed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// The exit code for an error that ended the program: [`EXIT_BAD_INPUT`]
/// when a [`BadInput`] is anywhere in its chain, else [`EXIT_FAILED`].
pub fn exit_code(e: &anyhow::Error) -> ExitCode {
    if e.downcast_ref::<BadInput>().is_some() {
        ExitCode::from(EXIT_BAD_INPUT)
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_exits_2_even_under_context_and_anything_else_1() {
        let bad = anyhow::Error::new(BadInput("no".into())).context("loading settings");
        assert_eq!(exit_code(&bad), ExitCode::from(EXIT_BAD_INPUT));
        assert_eq!(
            exit_code(&anyhow::anyhow!("boom")),
            ExitCode::from(EXIT_FAILED)
        );
    }
}
