//! `landlord secrets`: the catalog key that seals tenant passwords
//! (`lifecycle::sealing`): `status` counts what is sealed to which key,
//! `rekey` seals everything to the first key of `LANDLORD_SECRETS_KEY_FILE`.
//!
//! Prints counts and public keys only; it must never print a password.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::{config::Settings, lifecycle::sealing};

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// How many tenant passwords are sealed to the current key, to older keys, or in clear.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Seal every stored tenant password to the first key of LANDLORD_SECRETS_KEY_FILE
    /// (values sealed to the file's other keys, and clear values left by older versions).
    /// Rotate a key: put a new `age-keygen` key first in the file, run this, then delete the old key.
    Rekey {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: SecretsCommand, settings: &Settings) -> Result<ExitCode> {
    let pool = super::catalog(settings).await?;
    match cmd {
        SecretsCommand::Status { json } => {
            let current = sealing::Sealer::load(&settings.secrets).map(|s| s.current());
            let key = current.as_ref().ok().cloned();
            let (clear, other) = sealing::status(&pool, key.as_deref()).await?;
            let ok = current.is_ok() && clear == 0 && other == 0;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ok": ok,
                        "current_key": key,
                        "key_error": current.as_ref().err().map(|e| format!("{e:#}")),
                        "clear": clear,
                        "sealed_to_other_keys": other,
                    })
                );
            } else {
                match &current {
                    Ok(k) => println!("current key: {k}"),
                    Err(e) => println!("current key: none ({e:#})"),
                }
                println!("stored in clear: {clear}");
                println!("sealed to another key: {other}");
                if !ok && current.is_ok() {
                    println!("run `landlord secrets rekey` to seal them to the current key");
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(super::EXIT_FAILED)
            })
        }
        SecretsCommand::Rekey { json } => {
            let sealer = sealing::Sealer::load(&settings.secrets)
                .map_err(|e| super::BadInput(format!("{e:#}")))?;
            let done = sealing::rekey(&pool, &sealer).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"current_key": sealer.current(), "done": done})
                );
            } else {
                println!(
                    "sealed to {}: {} re-sealed from older keys, {} sealed from clear, {} already current",
                    sealer.current(),
                    done.resealed,
                    done.sealed_from_clear,
                    done.current
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
