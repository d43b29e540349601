//! Running the PostgreSQL client programs (pg_dump, pg_restore, psql) against
//! a configured server. Connection details go through `PG*` environment
//! variables, never the command line, so passwords do not show in `ps`.
//! TLS parameters (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) reach them
//! as `PGSSL*` through `pg_tls::set_child_env`, which refuses a URL whose TLS
//! settings the programs and landlord's own connections would not both honour.
//!
//! A program started during an attempt carries the attempt's name
//! (`runtime::sessions`) as `PGAPPNAME` and `LANDLORD_ATTEMPT`, so its
//! sessions are ended and the process itself killed when the attempt stops;
//! the pipelines that spawn it (`stream`) kill and reap it when dropped.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Mutex, OnceLock},
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::config::Settings;

/// A command for `program` connected to database `db` on `server`.
pub fn command(settings: &Settings, server: &str, db: &str, program: &str) -> Result<Command> {
    crate::ident::validate_db_name(db).map_err(|e| anyhow::anyhow!("database name {db:?}: {e}"))?;
    let raw = settings
        .servers
        .get(server)
        .with_context(|| format!("database server {server:?} is not configured"))?;
    let url = url::Url::parse(raw.expose())
        .with_context(|| format!("parsing the URL of database server {server:?}"))?;
    let mut cmd = Command::new(settings.backup.pg_tool(program));
    for var in ["PGSERVICE", "PGSERVICEFILE", "PGPASSFILE", "PGOPTIONS"] {
        cmd.env_remove(var);
    }
    let decode = |s: &str| percent_decode(s);
    if let Some(host) = url.host_str().filter(|h| !h.is_empty()) {
        cmd.env("PGHOST", host.trim_matches(|c| c == '[' || c == ']'));
    }
    if let Some(port) = url.port() {
        cmd.env("PGPORT", port.to_string());
    }
    if !url.username().is_empty() {
        cmd.env("PGUSER", decode(url.username()));
    }
    if let Some(pw) = url.password() {
        cmd.env("PGPASSWORD", decode(pw));
    }
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "host" => {
                cmd.env("PGHOST", v.as_ref());
            }
            "port" => {
                cmd.env("PGPORT", v.as_ref());
            }
            "user" => {
                cmd.env("PGUSER", v.as_ref());
            }
            "password" => {
                cmd.env("PGPASSWORD", v.as_ref());
            }
            _ => {}
        }
    }
    // sslmode, sslrootcert, sslcert, sslkey; anything else of TLS is refused.
    crate::pg_tls::set_child_env(&mut cmd, &format!("database server {server:?}"), raw)?;
    cmd.env("PGDATABASE", db)
        .env("PGCONNECT_TIMEOUT", "15")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    Ok(attempt_named(cmd))
}

/// A command for a client program that reads no server (`pg_restore --list`),
/// named after the current attempt like [`command`]'s.
pub fn offline(settings: &Settings, program: &str) -> Command {
    let mut cmd = Command::new(settings.backup.pg_tool(program));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    attempt_named(cmd)
}

/// Names `cmd` after the current attempt: `PGAPPNAME` for its sessions,
/// `LANDLORD_ATTEMPT` so `runtime::sessions` finds the process.
fn attempt_named(mut cmd: Command) -> Command {
    let name = crate::runtime::sessions::application_name();
    cmd.env("LANDLORD_ATTEMPT", &name).env("PGAPPNAME", name);
    cmd
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// How long a client program's `--version` answer is reused: every backup
/// checks it, and spawning it each time costs more than a small dump.
const VERSION_TTL: std::time::Duration = std::time::Duration::from_secs(60);

type VersionCache = HashMap<PathBuf, (Instant, String)>;

static VERSIONS: OnceLock<Mutex<VersionCache>> = OnceLock::new();

/// The `--version` output of a client program, cached for [`VERSION_TTL`].
fn version_text(settings: &Settings, program: &str) -> Result<String> {
    let path = settings.backup.pg_tool(program);
    let cache = VERSIONS.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(c) = cache.lock()
        && let Some((at, text)) = c.get(&path)
        && at.elapsed() < VERSION_TTL
    {
        return Ok(text.clone());
    }
    let out = Command::new(&path)
        .arg("--version")
        .output()
        .with_context(|| {
            format!("{program} is not installed or not on PATH (set LANDLORD_PG_BIN_DIR)")
        })?;
    if !out.status.success() {
        bail!("{program} --version failed");
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if let Ok(mut c) = cache.lock() {
        c.insert(path, (Instant::now(), text.clone()));
    }
    Ok(text)
}

/// The major version of a client program (`pg_dump --version` → 15).
pub fn major_version(settings: &Settings, program: &str) -> Result<u32> {
    let text = version_text(settings, program)?;
    parse_major(&text)
        .with_context(|| format!("cannot read the version of {program} from {text:?}"))
}

/// The full version line of a client program.
pub fn version_line(settings: &Settings, program: &str) -> String {
    version_text(settings, program).unwrap_or_default()
}

fn parse_major(text: &str) -> Option<u32> {
    text.split_whitespace()
        .find_map(|w| w.split('.').next()?.parse::<u32>().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn majors() {
        assert_eq!(
            super::parse_major("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(super::parse_major("pg_restore (PostgreSQL) 17beta1"), None);
        assert_eq!(super::percent_decode("p%40ss+w"), "p@ss+w");
    }
}
