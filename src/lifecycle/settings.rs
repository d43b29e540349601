//! Tenant settings: the known keys and their validation. Unknown keys are
//! refused so a typo never silently becomes a setting.

use serde_json::{Map, Value};
use sqlx::PgPool;

/// Languages the welcome mail is written in.
pub const LANGUAGES: [&str; 2] = ["en", "es"];

/// Keys a tenant's settings may hold.
pub const KEYS: [&str; 3] = ["timezone", "language", "display_name"];

/// Parses `key=value` pairs into a settings object.
pub fn parse_pairs(pairs: &[String]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("setting {:?} is not key=value", crate::message::truncate(p)))?;
        out.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
    }
    Ok(out)
}

/// Checks every key and value; the timezone is checked against the server's
/// own list (`pg_timezone_names`).
pub async fn validate(pool: &PgPool, settings: &Map<String, Value>) -> Result<(), String> {
    for (k, v) in settings {
        if !KEYS.contains(&k.as_str()) {
            return Err(format!(
                "unknown setting {:?}; known settings: {}",
                crate::message::truncate(k),
                KEYS.join(", ")
            ));
        }
        let Some(s) = v.as_str() else {
            return Err(format!("setting {k} must be a string"));
        };
        match k.as_str() {
            "language" if !LANGUAGES.contains(&s) => {
                return Err(format!(
                    "language {:?} is not supported; use one of {}",
                    crate::message::truncate(s),
                    LANGUAGES.join(", ")
                ));
            }
            "timezone" => {
                // No zone name has control characters (PostgreSQL text cannot
                // even hold NUL): refused without asking the server.
                let known: bool = if s.len() > 64 || s.chars().any(char::is_control) {
                    false
                } else {
                    sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)",
                    )
                    .bind(s)
                    .fetch_one(pool)
                    .await
                    .map_err(|e| format!("checking the timezone: {e}"))?
                };
                if !known {
                    return Err(format!(
                        "unknown timezone {:?} (use an IANA name such as Europe/Madrid)",
                        crate::message::truncate(s)
                    ));
                }
            }
            "display_name" => {
                crate::ident::validate_display_name(s).map_err(|e| format!("display_name: {e}"))?;
            }
            _ => {}
        }
    }
    Ok(())
}
