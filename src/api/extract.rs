//! Request extractors whose every rejection is an [`ApiError`]: a JSON body
//! object (content type checked, size capped by `DefaultBodyLimit`, serde
//! errors answered as `bad_request`), path parameters, and the query string.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Request},
    http::{StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;

use super::{MAX_BODY_BYTES, error::ApiError};

/// A JSON request body of type `T`.
pub struct ApiJson<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json);
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the request body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::bad_request(format!(
                    "could not read the request body: {}",
                    r.body_text()
                ))
            }
        })?;
        let value = serde_json::from_slice::<Strict>(&bytes)
            .map(|s| s.0)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
        // serde would take an array for a struct (fields by position); only objects are bodies here.
        if !value.is_object() {
            return Err(ApiError::bad_request(
                "invalid JSON body: invalid type, expected a JSON object",
            ));
        }
        T::deserialize(value)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// An optional JSON body (`Option<ApiJson<T>>`): a request without a body
/// and without a content type is `None`; anything else is parsed as
/// [`ApiJson`] (so a body that is not JSON is still 415).
impl<T, S> axum::extract::OptionalFromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        if req.headers().contains_key(header::CONTENT_TYPE) {
            return <Self as FromRequest<S>>::from_request(req, state)
                .await
                .map(Some);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            ApiError::bad_request(format!(
                "could not read the request body: {}",
                r.body_text()
            ))
        })?;
        if bytes.is_empty() {
            Ok(None)
        } else {
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the request body must be JSON (Content-Type: application/json)",
            ))
        }
    }
}

/// A JSON value whose objects have no key twice. serde_json keeps the last
/// of duplicate keys silently, so `{"kind": "restore", "kind": "ping"}`
/// would mean one thing to a proxy that reads the first and another here:
/// such a body is refused instead.
struct Strict(serde_json::Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(serde_json::Value::Array(out))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate key {:?}",
                    crate::message::truncate(&key)
                )));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(serde_json::Value::Object(out))
    }
}

/// Path parameters of type `T`.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| ApiError::bad_request(format!("invalid path: {}", e.body_text())))
    }
}

/// The query string as `(name, value)` pairs, only the `allowed` names,
/// each value at most 200 characters and without NUL.
pub fn query_pairs(
    query: Option<&str>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some((k, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter {:?}; allowed: {}",
            crate::message::truncate(k),
            if allowed.is_empty() {
                "none".to_string()
            } else {
                allowed.join(", ")
            }
        )));
    }
    // PostgreSQL text cannot hold NUL, and no filter needs a long value.
    if let Some((k, _)) = pairs
        .iter()
        .find(|(_, v)| v.len() > 200 || v.contains('\0'))
    {
        return Err(ApiError::invalid(format!(
            "{} must be at most 200 characters, without NUL",
            crate::message::truncate(k)
        )));
    }
    Ok(pairs)
}

/// A status filter from a query string (any catalog state enum).
pub fn parse_status<T>(v: &str) -> Result<T, ApiError>
where
    T: std::str::FromStr<Err = crate::text_enum::UnknownValue>,
{
    v.parse::<T>().map_err(|e| {
        ApiError::invalid(format!(
            "unknown status {:?}; statuses: {}",
            crate::message::truncate(&e.value),
            e.valid.join(", ")
        ))
    })
}

/// A page size from a query string: a whole number from 1 to `max`.
pub fn parse_limit(v: &str, max: i64) -> Result<i64, ApiError> {
    match v.parse::<i64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(format!(
            "limit must be a whole number from 1 to {max}, got {:?}",
            crate::message::truncate(v)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let parse = |s: &str| serde_json::from_str::<Strict>(s).map(|s| s.0);
        assert_eq!(
            parse(r#"{"a": [1, 2.5, "x", null, true], "b": {"c": -1}}"#).ok(),
            Some(serde_json::json!({"a": [1, 2.5, "x", null, true], "b": {"c": -1}}))
        );
        for dup in [
            r#"{"kind": "restore", "kind": "ping"}"#,
            r#"{"args": {"a": 1, "a": 2}}"#,
        ] {
            let e = parse(dup).expect_err(dup).to_string();
            assert!(e.contains("duplicate key"), "{e}");
        }
    }

    #[test]
    fn query_rejects_unknown_names() {
        assert_eq!(
            query_pairs(Some("status=active"), &["status"]).ok(),
            Some(vec![("status".to_string(), "active".to_string())])
        );
        assert!(query_pairs(Some("x=1"), &["status"]).is_err());
        assert_eq!(query_pairs(None, &[]).ok(), Some(vec![]));
    }
}
