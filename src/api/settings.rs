//! Settings of `landlord api`: the listen address, the bearer tokens it
//! accepts, each bound to a scope (`admin`, or `tenant:SLUG`), and the
//! limits on callers ([`ApiLimits`]: requests per minute per token, live
//! jobs per tenant for tenant tokens).
//!
//! Tokens come from `LANDLORD_API_TOKENS` (`admin=s3cret,tenant:acme=t0k`).
//! They are held as [`SecretString`]s, never printed (not even by `Debug`),
//! and compared through their SHA-256 digests in constant time, so neither a
//! log line nor response timing reveals them.

use std::fmt;

use anyhow::{Result, bail};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::message::truncate;

/// Address used when neither `--listen` nor `LANDLORD_API_LISTEN` is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Environment variable holding the tokens.
pub const TOKENS_ENV: &str = "LANDLORD_API_TOKENS";
/// Environment variable holding the listen address.
pub const LISTEN_ENV: &str = "LANDLORD_API_LISTEN";
/// Environment variable holding the requests per minute allowed per token.
pub const RATE_ENV: &str = "LANDLORD_API_RATE_PER_MINUTE";
/// Environment variable holding the live jobs a tenant token may have per tenant.
pub const MAX_LIVE_JOBS_ENV: &str = "LANDLORD_API_MAX_LIVE_JOBS_PER_TENANT";
/// Requests per minute per token when [`RATE_ENV`] is unset.
pub const DEFAULT_RATE_PER_MINUTE: u32 = 600;
/// Live jobs per tenant for tenant tokens when [`MAX_LIVE_JOBS_ENV`] is unset.
pub const DEFAULT_MAX_LIVE_JOBS_PER_TENANT: u32 = 20;
/// Upper bound of both limits (a typo's guard, not a policy).
const LIMIT_MAX: u32 = 1_000_000;

/// Limits on callers; 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Requests per minute per token (a token bucket holding a minute's
    /// worth); beyond it, 429 with `Retry-After`.
    pub rate_per_minute: u32,
    /// Queued, running and retrying jobs a tenant token may have for its
    /// tenant; beyond it, enqueueing is refused with 409. Admin tokens are
    /// not capped.
    pub max_live_jobs_per_tenant: u32,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            rate_per_minute: DEFAULT_RATE_PER_MINUTE,
            max_live_jobs_per_tenant: DEFAULT_MAX_LIVE_JOBS_PER_TENANT,
        }
    }
}

impl ApiLimits {
    /// Builds the limits from raw values (unset or blank: the default).
    pub fn parse(rate: Option<&str>, max_live: Option<&str>) -> Result<Self> {
        let one = |name: &str, raw: Option<&str>, default: u32| -> Result<u32> {
            match raw.map(str::trim).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => match v.parse::<u32>() {
                    Ok(n) if n <= LIMIT_MAX => Ok(n),
                    _ => bail!(
                        "{name}={:?} is not valid: use a whole number from 0 (off) to {LIMIT_MAX}",
                        truncate(v)
                    ),
                },
            }
        };
        Ok(Self {
            rate_per_minute: one(RATE_ENV, rate, DEFAULT_RATE_PER_MINUTE)?,
            max_live_jobs_per_tenant: one(
                MAX_LIVE_JOBS_ENV,
                max_live,
                DEFAULT_MAX_LIVE_JOBS_PER_TENANT,
            )?,
        })
    }

    /// Reads [`RATE_ENV`] and [`MAX_LIVE_JOBS_ENV`].
    pub fn from_env() -> Result<Self> {
        let rate = std::env::var(RATE_ENV).ok();
        let live = std::env::var(MAX_LIVE_JOBS_ENV).ok();
        Self::parse(rate.as_deref(), live.as_deref())
    }

    /// `config show` lines (`api.…`, environment only); an invalid value is
    /// shown as such, since `landlord api` would refuse to start with it.
    pub fn show_lines() -> Vec<(&'static str, String)> {
        match Self::from_env() {
            Ok(l) => vec![
                ("api.rate_per_minute", l.rate_per_minute.to_string()),
                (
                    "api.max_live_jobs_per_tenant",
                    l.max_live_jobs_per_tenant.to_string(),
                ),
            ],
            Err(e) => vec![("api.limits", format!("{:?}", format!("invalid: {e:#}")))],
        }
    }
}

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every route, every tenant.
    Admin,
    /// Reads what an admin reads (GET only, never credentials); changes nothing.
    Viewer,
    /// Only its own tenant, and only the tenant-level routes.
    Tenant(String),
}

impl Scope {
    /// Parses `admin`, `viewer` or `tenant:SLUG`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "admin" => return Ok(Self::Admin),
            "viewer" => return Ok(Self::Viewer),
            _ => {}
        }
        match s.strip_prefix("tenant:") {
            Some(slug) => crate::ident::validate_slug(slug)
                .map(|()| Self::Tenant(slug.to_string()))
                .map_err(|e| format!("invalid tenant slug {:?} in scope: {e}", truncate(slug))),
            None => Err(format!(
                "unknown scope {:?} (use admin, viewer or tenant:SLUG)",
                truncate(s)
            )),
        }
    }

    /// The actor recorded in the audit log for requests made with this scope.
    pub fn actor(&self) -> String {
        format!("api:{self}")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Admin => f.write_str("admin"),
            Self::Viewer => f.write_str("viewer"),
            Self::Tenant(slug) => write!(f, "tenant:{slug}"),
        }
    }
}

struct Token {
    scope: Scope,
    secret: SecretString,
}

/// Typed settings of the API role.
pub struct ApiSettings {
    /// Address to bind (`host:port`).
    pub listen: String,
    /// Limits on callers.
    pub limits: ApiLimits,
    tokens: Vec<Token>,
}

impl fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiSettings")
            .field("listen", &self.listen)
            .field("limits", &self.limits)
            .field("scopes", &self.scopes().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Equality of two digests that takes the same time wherever they differ.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ApiSettings {
    /// Builds the settings from a listen address and the raw token list
    /// (`SCOPE=TOKEN`, comma-separated). Errors never quote a token.
    pub fn new(listen: impl Into<String>, raw_tokens: &str) -> Result<Self> {
        let mut tokens: Vec<Token> = Vec::new();
        for (i, entry) in raw_tokens
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let n = i + 1;
            let Some((scope, secret)) = entry.split_once('=') else {
                bail!("entry {n} of {TOKENS_ENV} is not SCOPE=TOKEN");
            };
            let scope = Scope::parse(scope.trim())
                .map_err(|e| anyhow::anyhow!("entry {n} of {TOKENS_ENV}: {e}"))?;
            let secret = secret.trim();
            if secret.is_empty() {
                bail!("entry {n} of {TOKENS_ENV} ({scope}) has an empty token");
            }
            if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
                bail!(
                    "entry {n} of {TOKENS_ENV} ({scope}): tokens may not contain spaces or control characters"
                );
            }
            if let Some(j) = tokens
                .iter()
                .position(|t| same_digest(&digest(t.secret.expose_secret()), &digest(secret)))
            {
                bail!(
                    "entries {} and {n} of {TOKENS_ENV} have the same token; every token must be unique",
                    j + 1
                );
            }
            if secret.len() < 16 {
                tracing::warn!(%scope, "an API token is shorter than 16 characters; use long random tokens");
            }
            tokens.push(Token {
                scope,
                secret: SecretString::from(secret.to_string()),
            });
        }
        Ok(Self {
            listen: listen.into(),
            limits: ApiLimits::default(),
            tokens,
        })
    }

    /// Reads `LANDLORD_API_TOKENS`, `LANDLORD_API_LISTEN` and the limits;
    /// `listen` (from `--listen`) wins over the environment.
    pub fn from_env(listen: Option<String>) -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let listen = listen
            .filter(|l| !l.trim().is_empty())
            .or_else(|| var(LISTEN_ENV))
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let mut s = Self::new(listen, &var(TOKENS_ENV).unwrap_or_default())?;
        s.limits = ApiLimits::from_env()?;
        Ok(s)
    }

    /// Whether any token is configured (without one, every request is refused).
    pub fn has_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The scopes that have a token, for the start-up log.
    pub fn scopes(&self) -> impl Iterator<Item = &Scope> {
        self.tokens.iter().map(|t| &t.scope)
    }

    /// The scope of a presented token, if it is one of ours. Every
    /// configured token is compared, whichever matches.
    pub fn authenticate(&self, presented: &str) -> Option<&Scope> {
        self.identify(presented).map(|(_, scope)| scope)
    }

    /// The index (stable while the process runs; the rate limiter's key) and
    /// scope of a presented token, if it is one of ours.
    pub fn identify(&self, presented: &str) -> Option<(usize, &Scope)> {
        let presented = digest(presented);
        let mut found = None;
        for (i, t) in self.tokens.iter().enumerate() {
            if same_digest(&digest(t.secret.expose_secret()), &presented) {
                found = Some((i, &t.scope));
            }
        }
        found
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_scopes_and_authenticates() {
        let s = ApiSettings::new(
            "127.0.0.1:0",
            " admin=s3cret-admin-token , tenant:acme=t0k=with=equals,",
        )
        .unwrap();
        assert!(s.has_tokens());
        assert_eq!(s.authenticate("s3cret-admin-token"), Some(&Scope::Admin));
        assert_eq!(
            s.authenticate("t0k=with=equals"),
            Some(&Scope::Tenant("acme".into()))
        );
        assert_eq!(s.authenticate("s3cret"), None);
        assert_eq!(s.authenticate(""), None);
        assert_eq!(Scope::Tenant("acme".into()).actor(), "api:tenant:acme");
        assert_eq!(Scope::Admin.actor(), "api:admin");
    }

    #[test]
    fn empty_means_no_tokens() {
        let s = ApiSettings::new("x", "").unwrap();
        assert!(!s.has_tokens());
        assert_eq!(s.authenticate(""), None);
    }

    #[test]
    fn bad_entries_are_refused_without_echoing_tokens() {
        for (raw, why) in [
            ("hunter2", "not SCOPE=TOKEN"),
            ("root=hunter2", "unknown scope"),
            ("tenant:Bad_Slug=hunter2", "invalid tenant slug"),
            ("admin=", "empty token"),
            ("admin=hun ter2", "spaces"),
            ("admin=hunter2,tenant:acme=hunter2", "same token"),
        ] {
            let err = ApiSettings::new("x", raw).expect_err(raw).to_string();
            assert!(err.contains(why), "{raw}: {err}");
            assert!(!err.contains("hunter2"), "{raw}: token leaked in {err}");
        }
    }

    #[test]
    fn limits_default_parse_and_refuse_nonsense() {
        assert_eq!(
            ApiLimits::parse(None, Some(" ")).unwrap(),
            ApiLimits::default()
        );
        let l = ApiLimits::parse(Some(" 0 "), Some("5")).unwrap();
        assert_eq!((l.rate_per_minute, l.max_live_jobs_per_tenant), (0, 5));
        for bad in ["-1", "ten", "1.5", "2000000"] {
            let err = ApiLimits::parse(Some(bad), None).unwrap_err().to_string();
            assert!(err.contains(RATE_ENV), "{bad}: {err}");
            let err = ApiLimits::parse(None, Some(bad)).unwrap_err().to_string();
            assert!(err.contains(MAX_LIVE_JOBS_ENV), "{bad}: {err}");
        }
    }

    #[test]
    fn debug_never_shows_tokens() {
        let s = ApiSettings::new("x", "admin=hunter2-long-enough-token").unwrap();
        let d = format!("{s:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("Admin"), "{d}");
    }
}
