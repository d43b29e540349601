//! Running the PostgreSQL client programs (pg_dump, pg_restore, psql) against
//! a configured server. Connection details go through `PG*` environment
//! variables, never the command line, so passwords do not show in `ps`.

use std::process::{Command, Stdio};

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
            "sslmode" => {
                cmd.env("PGSSLMODE", v.as_ref());
            }
            "sslrootcert" => {
                cmd.env("PGSSLROOTCERT", v.as_ref());
            }
            _ => {}
        }
    }
    cmd.env("PGDATABASE", db)
        .env("PGAPPNAME", format!("landlord-{program}"))
        .env("PGCONNECT_TIMEOUT", "15")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    Ok(cmd)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// The major version of a client program (`pg_dump --version` → 15).
pub fn major_version(settings: &Settings, program: &str) -> Result<u32> {
    let out = Command::new(settings.backup.pg_tool(program))
        .arg("--version")
        .output()
        .with_context(|| {
            format!("{program} is not installed or not on PATH (set LANDLORD_PG_BIN_DIR)")
        })?;
    if !out.status.success() {
        bail!("{program} --version failed");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    parse_major(&text)
        .with_context(|| format!("cannot read the version of {program} from {text:?}"))
}

/// The full version line of a client program.
pub fn version_line(settings: &Settings, program: &str) -> String {
    Command::new(settings.backup.pg_tool(program))
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
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
