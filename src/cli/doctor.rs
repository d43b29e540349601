//! `landlord doctor`: prints the requirement checks of `backup::doctor`;
//! exit 1 if any failed.

use std::process::ExitCode;

use anyhow::Result;

use crate::{backup::doctor, config::Settings};

pub async fn run(settings: &Settings, json: bool) -> Result<ExitCode> {
    let checks = doctor::run(settings).await;
    let ok = checks.iter().all(|c| c.ok);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"ok": ok, "checks": checks}))?
        );
    } else {
        for c in &checks {
            let transport = c
                .transport
                .as_ref()
                .map(|t| format!("; {}", t.describe()))
                .unwrap_or_default();
            println!(
                "{:4}  {:<16} {}{transport}",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_FAILED)
    })
}
