//! The versioned job message contract (`schemas/job-message.v1.json`).
//!
//! This module parses and checks the bytes of a message; it never touches the
//! catalog. A message that fails here is dead-lettered with the returned reason.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Largest message body accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Version 1 of the message every job travels in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobMessage {
    /// Contract version; always 1.
    pub v: u32,
    pub job_id: Uuid,
    pub kind: String,
    /// Tenant slug, for per-tenant jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default = "empty_object")]
    pub args: serde_json::Value,
    /// Optional dedupe key, honoured when a message is adopted: it lives in
    /// the namespace of foreign producers (stored as `caller:amqp:{key}`),
    /// so it can never take a key landlord makes itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_key: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl JobMessage {
    pub fn new(job_id: Uuid, kind: &str, tenant: Option<&str>, args: serde_json::Value) -> Self {
        Self {
            v: 1,
            job_id,
            kind: kind.to_string(),
            tenant: tenant.map(str::to_string),
            args,
            dedupe_key: None,
        }
    }

    /// Parses and checks a message body. The error is a reason fit for the
    /// dead-letter queue.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(format!(
                "message is {} bytes; at most {MAX_MESSAGE_BYTES} are accepted",
                body.len()
            ));
        }
        let msg: JobMessage = serde_json::from_slice(body)
            .map_err(|e| limit(&format!("not a v1 job message: {e}")))?;
        if msg.v != 1 {
            return Err(format!("unsupported message version {}", msg.v));
        }
        if msg.kind.is_empty()
            || msg.kind.len() > 63
            || !msg
                .kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!("invalid job kind {:?}", truncate(&msg.kind)));
        }
        if !msg.args.is_object() {
            return Err("args must be a JSON object".to_string());
        }
        if let Some(t) = &msg.tenant {
            crate::ident::validate_slug(t)
                .map_err(|e| format!("invalid tenant slug {:?}: {e}", truncate(t)))?;
        }
        if let Some(k) = &msg.dedupe_key
            && (k.is_empty() || k.len() > 500)
        {
            return Err("dedupe_key must be 1-500 characters".to_string());
        }
        // PostgreSQL text and jsonb cannot hold NUL: such a message could
        // never be written, and would come back at every delivery.
        if msg.dedupe_key.as_deref().is_some_and(|k| k.contains('\0')) {
            return Err("dedupe_key must not contain a NUL character (\\u0000)".to_string());
        }
        if let Some(at) = nul_in(&msg.args) {
            return Err(format!(
                "args must not contain a NUL character (\\u0000); found in {at}"
            ));
        }
        Ok(msg)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks this message as a worker will: `Err` is the reason
    /// [`JobMessage::parse`] would refuse its bytes (too large, bad slug…).
    /// A job whose message fails here must never be written or published:
    /// it would be dead-lettered at every delivery.
    pub fn check(&self) -> Result<(), String> {
        let bytes = serde_json::to_vec(self).map_err(|e| format!("cannot encode: {e}"))?;
        Self::parse(&bytes).map(|_| ())
    }
}

/// Where `v` holds a NUL character (in a string or a key), as a JSON
/// path (`args.backup`), if anywhere.
pub fn nul_in(v: &serde_json::Value) -> Option<String> {
    fn walk(v: &serde_json::Value, path: &str) -> Option<String> {
        match v {
            serde_json::Value::String(s) if s.contains('\0') => Some(path.to_string()),
            serde_json::Value::Array(a) => a
                .iter()
                .enumerate()
                .find_map(|(i, x)| walk(x, &format!("{path}[{i}]"))),
            serde_json::Value::Object(o) => o.iter().find_map(|(k, x)| {
                let at = format!("{path}.{}", truncate(&k.replace('\0', "\\u0000")));
                if k.contains('\0') {
                    Some(at)
                } else {
                    walk(x, &at)
                }
            }),
            _ => None,
        }
    }
    walk(v, "args")
}

/// Arguments that are an operator's decision on shared resources, never a
/// tenant token's or a foreign producer's: a legal hold and a retention on
/// `backup` (retention can prune a tenant's whole backup history), a
/// restore test on `verify_backup` (a full load on the shared server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorArg {
    Hold,
    Retention,
    RestoreTest,
}

impl OperatorArg {
    /// The operator-only argument `args` of a job of `kind` give, if any.
    pub fn find(kind: &str, args: &serde_json::Value) -> Option<Self> {
        let given = |name: &str| args.get(name).is_some_and(|v| !v.is_null());
        match kind {
            "backup" if args.get("hold").is_some() => Some(Self::Hold),
            "backup" if given("keep") || given("retention") => Some(Self::Retention),
            "verify_backup"
                if args
                    .get("restore_test")
                    .is_some_and(|v| !v.is_null() && *v != serde_json::Value::Bool(false)) =>
            {
                Some(Self::RestoreTest)
            }
            _ => None,
        }
    }

    /// The argument's names, for messages.
    pub fn names(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Retention => "keep, retention",
            Self::RestoreTest => "restore_test",
        }
    }
}

/// The job id of a message that does not parse, if its bytes still name one
/// (so the worker can look at the job the refused message was for).
pub fn job_id_of(body: &[u8]) -> Option<Uuid> {
    #[derive(Deserialize)]
    struct JobIdOnly {
        job_id: Uuid,
    }
    serde_json::from_slice::<JobIdOnly>(body)
        .ok()
        .map(|m| m.job_id)
}

/// Caps an error text (which may quote input) at 1000 characters.
pub fn limit(s: &str) -> String {
    if s.chars().count() <= 1000 {
        s.to_string()
    } else {
        let head: String = s.chars().take(1000).collect();
        format!("{head}… (truncated)")
    }
}

/// Shortens a hostile value before it is echoed in an error.
pub fn truncate(s: &str) -> String {
    if s.chars().count() <= 64 {
        s.to_string()
    } else {
        let head: String = s.chars().take(64).collect();
        format!("{head}… ({} chars)", s.chars().count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = JobMessage::new(Uuid::new_v4(), "ping", Some("acme"), serde_json::json!({}));
        assert_eq!(JobMessage::parse(&m.to_bytes()).expect("parses"), m);
    }

    #[test]
    fn rejects_bad_messages() {
        let id = Uuid::new_v4();
        for (body, why) in [
            ("not json".to_string(), "not a v1"),
            (
                format!(r#"{{"v":2,"job_id":"{id}","kind":"ping"}}"#),
                "version",
            ),
            (
                format!(r#"{{"v":1,"job_id":"{id}","kind":"Ping!"}}"#),
                "kind",
            ),
            (
                format!(r#"{{"v":1,"job_id":"{id}","kind":"ping","args":[]}}"#),
                "object",
            ),
            (
                format!(r#"{{"v":1,"job_id":"{id}","kind":"ping","tenant":"a\"; DROP"}}"#),
                "slug",
            ),
            (
                format!(r#"{{"v":1,"job_id":"{id}","kind":"ping","extra":1}}"#),
                "unknown field",
            ),
            (
                r#"{"v":1,"job_id":42,"kind":"ping"}"#.to_string(),
                "not a v1",
            ),
            (
                format!(r#"{{"v":1,"job_id":"{id}","kind":"ping","args":{{"a":["x\u0000"]}}}}"#),
                "args.a[0]",
            ),
            (
                format!(r#"{{"v":1,"job_id":"{id}","kind":"ping","dedupe_key":"k\u0000"}}"#),
                "NUL",
            ),
        ] {
            let err = JobMessage::parse(body.as_bytes()).expect_err(&body);
            assert!(err.contains(why), "{err} should mention {why}");
        }
        let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(
            JobMessage::parse(&huge)
                .expect_err("too big")
                .contains("bytes")
        );
    }

    #[test]
    fn operator_arguments_are_found() {
        use serde_json::json;
        for (kind, args, found) in [
            ("backup", json!({"hold": "legal"}), Some(OperatorArg::Hold)),
            ("backup", json!({"keep": 1}), Some(OperatorArg::Retention)),
            (
                "backup",
                json!({"retention": "keep:1"}),
                Some(OperatorArg::Retention),
            ),
            ("backup", json!({"codec": "gzip", "keep": null}), None),
            (
                "verify_backup",
                json!({"restore_test": true}),
                Some(OperatorArg::RestoreTest),
            ),
            (
                "verify_backup",
                json!({"restore_test": "yes"}),
                Some(OperatorArg::RestoreTest),
            ),
            ("verify_backup", json!({"restore_test": false}), None),
            ("maintenance", json!({"keep": 1}), None),
        ] {
            assert_eq!(OperatorArg::find(kind, &args), found, "{kind} {args}");
        }
    }

    #[test]
    fn check_refuses_what_parse_would_refuse() {
        let id = Uuid::new_v4();
        let fits = JobMessage::new(id, "ping", Some("acme"), serde_json::json!({"a": "x"}));
        assert_eq!(fits.check(), Ok(()));
        let big = serde_json::json!({"a": "x".repeat(MAX_MESSAGE_BYTES)});
        let err = JobMessage::new(id, "ping", Some("acme"), big.clone())
            .check()
            .expect_err("too big");
        assert!(err.contains("bytes"), "{err}");
        // The refused bytes still name their job.
        let bytes = JobMessage::new(id, "ping", None, big).to_bytes();
        assert!(JobMessage::parse(&bytes).is_err());
        assert_eq!(job_id_of(&bytes), Some(id));
        assert_eq!(job_id_of(b"not json"), None);
    }
}
