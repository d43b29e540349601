//! Events over HTTP, for a program without AMQP: `GET /v1/events` (a page
//! of the feed, oldest first, `next_cursor` to continue) and
//! `GET /v1/events/stream` (the same feed as Server-Sent Events: `id` is the
//! cursor, `event` the event name, `data` the event JSON; a reconnecting
//! `EventSource` sends `Last-Event-ID` and continues after it).
//!
//! An admin token follows every event (or `tenant=`); a tenant token only its
//! own tenant's. A stream polls the catalog every second, ends after
//! [`STREAM_FOR`] (clients reconnect, and a token is checked again) and at
//! shutdown, so it never holds a stopping API.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::stream::{self, Stream};
use serde_json::json;

use super::{
    AppState,
    auth::Caller,
    error::ApiError,
    extract::{parse_limit, query_pairs},
    json as respond,
    settings::Scope,
};
use crate::{broker::topology, event_feed};

/// Default page of `GET /v1/events`.
pub const PAGE: i64 = 100;
/// How often a stream looks for new events.
pub const POLL: Duration = Duration::from_secs(1);
/// How long one stream lasts before the client reconnects.
pub const STREAM_FOR: Duration = Duration::from_secs(600);

fn parse_after(v: &str) -> Result<i64, ApiError> {
    v.trim()
        .parse()
        .ok()
        .filter(|n: &i64| *n >= 0)
        .ok_or_else(|| {
            ApiError::bad_request(
                "the cursor (after, Last-Event-ID) must be an event id (a whole number, 0 or more)",
            )
        })
}

/// The filter a request asks for, narrowed to what its token may read.
fn filter(
    caller: &Caller,
    uri: &Uri,
    headers: &HeaderMap,
    paged: bool,
) -> Result<event_feed::Filter, ApiError> {
    let mut f = event_feed::Filter {
        exchange: topology::EVENTS.to_string(),
        limit: PAGE,
        ..Default::default()
    };
    let allowed: &[&str] = if paged {
        &["tenant", "after", "limit"]
    } else {
        &["tenant", "after"]
    };
    for (k, v) in query_pairs(uri.query(), allowed)? {
        match k.as_str() {
            "tenant" => f.tenant = Some(v),
            "after" => f.after = Some(parse_after(&v)?),
            _ => f.limit = parse_limit(&v, event_feed::MAX_PAGE)?,
        }
    }
    if let Some(last) = headers.get("last-event-id") {
        let v = last
            .to_str()
            .map_err(|_| ApiError::bad_request("Last-Event-ID must be an event id"))?;
        f.after = Some(parse_after(v)?);
    }
    if let Scope::Tenant(own) = &caller.scope {
        if f.tenant.as_deref().is_some_and(|t| t != own) {
            return Err(ApiError::forbidden(format!(
                "a tenant token follows only its own tenant's events ({own})"
            )));
        }
        f.tenant = Some(own.clone());
    }
    Ok(f)
}

/// `GET /v1/events[?tenant=&after=&limit=]`.
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let f = filter(&caller, &uri, &headers, true)?;
    let events = event_feed::page(&state.pool, &f).await?;
    let next = events.last().map(|e| e.id).or(f.after);
    Ok(respond(
        StatusCode::OK,
        &json!({"events": events, "next_cursor": next}),
    ))
}

/// `GET /v1/events/stream[?tenant=&after=]`: without `after` (or
/// `Last-Event-ID`) it starts at the newest event, sending only what follows.
pub async fn stream(
    caller: Caller,
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut f = filter(&caller, &uri, &headers, false)?;
    f.limit = event_feed::MAX_PAGE;
    if f.after.is_none() {
        f.after = Some(event_feed::newest_id(&state.pool, &f.exchange).await?);
    }
    let events = follow(state, f);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// The stream: pages of the feed as they appear, until [`STREAM_FOR`] or shutdown.
fn follow(state: AppState, f: event_feed::Filter) -> impl Stream<Item = Result<Event, Infallible>> {
    let until = tokio::time::Instant::now() + STREAM_FOR;
    let pending: std::collections::VecDeque<Event> = Default::default();
    stream::unfold(
        (state, f, pending),
        move |(state, mut f, mut pending)| async move {
            loop {
                if let Some(e) = pending.pop_front() {
                    return Some((Ok(e), (state, f, pending)));
                }
                if tokio::time::Instant::now() >= until || state.shutdown.is_cancelled() {
                    return None;
                }
                match event_feed::page(&state.pool, &f).await {
                    Ok(page) if !page.is_empty() => {
                        for e in page {
                            f.after = Some(e.id);
                            let data = serde_json::to_string(&e.payload).unwrap_or_default();
                            pending.push_back(
                                Event::default()
                                    .id(e.id.to_string())
                                    .event(e.event)
                                    .data(data),
                            );
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        error = format!("{e:#}"),
                        "event stream could not read the feed; retrying"
                    ),
                }
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    () = state.shutdown.cancelled() => return None,
                }
            }
        },
    )
}
