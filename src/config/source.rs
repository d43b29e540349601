//! Where settings come from: the optional settings file (`LANDLORD_CONFIG`,
//! else `./landlord.toml` if it exists) parsed into [`FileSettings`], and the
//! `LANDLORD_*` environment is read through `config::env`.
//!
//! This module only reads; it must never default or validate a value (each
//! concern's module does, so a setting's default, range and error message
//! live in one place).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::Deserialize;

use super::{
    env::env, observability::FileObservability, schedules::ScheduleSpec, servers::FileServer,
    worker::FileWorker,
};

/// The shape of `landlord.toml`. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSettings {
    pub database_url: Option<String>,
    pub amqp_url: Option<String>,
    pub prefix: Option<String>,
    pub delivery_limit: Option<u32>,
    #[serde(default)]
    pub worker: FileWorker,
    #[serde(default)]
    pub observability: FileObservability,
    #[serde(default)]
    pub servers: BTreeMap<String, FileServer>,
    pub tenant_migrations: Option<String>,
    pub template_strategy: Option<String>,
    pub delete_grace_days: Option<u64>,
    pub smtp_url: Option<String>,
    pub mail_from: Option<String>,
    pub secrets_key_file: Option<PathBuf>,
    pub heavy_per_server: Option<u32>,
    pub cleanup_rules: Option<String>,
    pub schedules: Option<Vec<ScheduleSpec>>,
    #[serde(default)]
    pub backup: super::backup::FileBackup,
    #[serde(default)]
    pub tenancy: crate::tenancy::config::FileTenancy,
}

/// The settings file to read: `LANDLORD_CONFIG`, else `./landlord.toml` if it exists.
pub(super) fn locate() -> Option<PathBuf> {
    env("LANDLORD_CONFIG").map(PathBuf::from).or_else(|| {
        let p = PathBuf::from("landlord.toml");
        p.exists().then_some(p)
    })
}

/// The file at `path` (an empty table when there is none).
pub(super) fn read(path: Option<&Path>) -> Result<FileSettings> {
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading settings file {}", p.display()))?;
            toml::from_str::<FileSettings>(&text)
                .with_context(|| format!("parsing settings file {}", p.display()))
        }
        None => Ok(FileSettings::default()),
    }
}
