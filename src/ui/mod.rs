//! The operator console at `/ui` (on `landlord api` and `landlord serve`):
//! server-rendered HTML pages for the fleet — overview, tenants, jobs, dead
//! letters, schedules — with a session login by API token, CSRF on every
//! action, and live updates by polling HTML fragments (`static/app.js`,
//! plain JavaScript, no build step). Static assets are compiled into the
//! binary.
//!
//! The console is another face of the library, like the CLI and the API: its
//! handlers call `lifecycle`, `runtime::store`, `backup`, `scheduler` and
//! `event_feed` with the session's actor (audited), and never write SQL
//! beyond the read-only views in `queries` and the session rows; the broker
//! they only read (`dead_letters`), never ack, publish or purge.
//!
//! Files: `session` (login, cookie, [`session::Action`] = session + CSRF),
//! `layout` (page frame, helpers), `error` (error pages), `queries` (read-only
//! catalog views and sessions), and one file per page: `overview`, `tenants`,
//! `backups`, `jobs`, `dead_letters` (also the broker's queue counts),
//! `schedules`.

mod backups;
mod dead_letters;
mod error;
mod jobs;
mod layout;
mod overview;
mod queries;
pub mod schedules;
pub mod session;
mod tenants;

use axum::{
    Router,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::{any, get, post},
};

pub use error::{UiError, UiResult};

use crate::api::AppState;

const APP_CSS: &str = include_str!("static/app.css");
const APP_JS: &str = include_str!("static/app.js");

/// The console's routes, all under `/ui`, merged into the API's router.
/// Unknown `/ui` paths get an HTML 404, not the API's JSON one.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(overview::page))
        .route("/ui/", get(|| async { Redirect::to("/ui") }))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route(
            "/ui/static/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/ui/static/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route("/ui/fragments/overview", get(overview::fragment))
        .route("/ui/tenants", get(tenants::list))
        .route("/ui/tenants/{slug}", get(tenants::show))
        .route("/ui/tenants/{slug}/status", post(tenants::change_status))
        .route("/ui/tenants/{slug}/settings", post(tenants::settings))
        .route("/ui/tenants/{slug}/backup", post(backups::backup_now))
        .route("/ui/backups/{id}/verify", post(backups::verify))
        .route("/ui/backups/{id}/restore", post(backups::restore))
        .route("/ui/backups/{id}/hold", post(backups::hold))
        .route("/ui/jobs", get(jobs::list))
        .route("/ui/jobs/retry", post(jobs::bulk_retry))
        .route("/ui/jobs/{id}", get(jobs::show))
        .route("/ui/jobs/{id}/retry", post(jobs::retry))
        .route("/ui/jobs/{id}/cancel", post(jobs::cancel))
        .route("/ui/fragments/jobs/{id}", get(jobs::fragment))
        .route("/ui/dead-letters", get(dead_letters::page))
        .route("/ui/schedules", get(schedules::list))
        .route("/ui/schedules/{name}", get(schedules::show))
        .route("/ui/schedules/{name}/run", post(schedules::run_now))
        .route("/ui/{*rest}", any(not_found))
        .layer(middleware::from_fn(headers))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn not_found() -> UiError {
    UiError::NotFound("there is no such page in the console".into())
}

/// Headers of every console answer: only our own scripts and styles, never
/// framed, pages never cached (they carry the session's CSRF token).
async fn headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if res.status() == StatusCode::METHOD_NOT_ALLOWED {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            layout::error_page(
                StatusCode::METHOD_NOT_ALLOWED,
                "Not allowed",
                "this page does not take that method",
            ),
        )
            .into_response();
    }
    res
}
