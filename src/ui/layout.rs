//! The console's page frame (navigation, notices, the logout form), its
//! login and error pages, and the small formatting helpers every page uses
//! (ages, sizes, status badges, the hidden CSRF field).
//!
//! Markup is built with `maud`, which escapes every interpolated value: no
//! page ever writes a string into HTML by hand.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::session::Session;

/// The navigation entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Tenants,
    Jobs,
    DeadLetters,
    Schedules,
}

/// Notices an action may leave for the page it redirects to (`?done=CODE`):
/// fixed texts only, so a link cannot make the console say anything else.
pub const NOTICES: [(&str, &str); 12] = [
    ("status", "The tenant's status was changed."),
    ("settings", "The settings were saved."),
    ("backup", "A backup was enqueued; this page follows it."),
    ("restore", "The restore was enqueued; this page follows it."),
    (
        "verify",
        "The verification was enqueued; this page follows it.",
    ),
    ("held", "The backup is on legal hold."),
    ("released", "The backup's legal hold was released."),
    ("retried", "The job was queued again."),
    ("bulk", "The selected jobs were queued again."),
    ("cancelled", "The job was cancelled."),
    ("fired", "The schedule fired; its jobs are queued."),
    (
        "existing",
        "That job was already queued or running; this page follows it.",
    ),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · landlord" }
            link rel="stylesheet" href="/ui/static/app.css";
            script src="/ui/static/app.js" defer {}
        }
    }
}

/// The hidden field every form of the session carries.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A whole page: the frame around `body`.
pub fn page(
    session: &Session,
    active: Nav,
    title: &str,
    done: Option<&str>,
    body: Markup,
) -> Markup {
    let notice = done.and_then(|code| NOTICES.iter().find(|(c, _)| *c == code).map(|(_, t)| *t));
    let mut links: Vec<(Nav, String, &str)> = Vec::new();
    match session.own_tenant() {
        None => {
            links.push((Nav::Overview, "/ui".into(), "Overview"));
            links.push((Nav::Tenants, "/ui/tenants".into(), "Tenants"));
            links.push((Nav::Jobs, "/ui/jobs".into(), "Jobs"));
            links.push((Nav::DeadLetters, "/ui/dead-letters".into(), "Dead letters"));
            links.push((Nav::Schedules, "/ui/schedules".into(), "Schedules"));
        }
        Some(slug) => {
            links.push((Nav::Tenants, format!("/ui/tenants/{slug}"), "My tenant"));
            links.push((Nav::Jobs, "/ui/jobs".into(), "Jobs"));
        }
    }
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "landlord" }
                    nav aria-label="Main" {
                        ul {
                            @for (nav, href, label) in &links {
                                li {
                                    @if *nav == active {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        span { "Logged in as " strong { (session.scope) } }
                        form method="post" action="/ui/logout" {
                            (csrf(session))
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    @if let Some(text) = notice {
                        p.notice role="status" { (text) }
                    }
                    (body)
                }
            }
        }
    }
}

/// The login form, with an error when the last try failed.
pub fn login_page(error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Log in"))
            body.login {
                main #main {
                    h1 { "landlord console" }
                    @if let Some(e) = error {
                        p.error role="alert" { (e) }
                    }
                    form method="post" action="/ui/login" {
                        label for="token" { "API token" }
                        input #token type="password" name="token" autocomplete="current-password" required autofocus;
                        p.hint { "An admin token sees the whole fleet; a tenant token (tenant:SLUG) sees its tenant." }
                        button type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

/// An error page (no session needed).
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                main #main {
                    h1 { (title) }
                    p.error role="alert" { (message) }
                    p.muted { "HTTP " (status.as_u16()) }
                    p { a href="/ui" { "Back to the console" } }
                }
            }
        }
    }
}

/// "3 min ago", "in 2 h".
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let (n, future) = (secs.unsigned_abs(), secs < 0);
    let text = match n {
        0..=59 => format!("{n} s"),
        60..=3599 => format!("{} min", n / 60),
        3600..=172_799 => format!("{} h", n / 3600),
        _ => format!("{} d", n / 86_400),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// A time with its age, as `<time>`.
pub fn when(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    match t {
        Some(t) => {
            html! { time datetime=(t.to_rfc3339()) title=(t.to_rfc3339()) { (ago(t, now)) } }
        }
        None => html! { span.muted { "never" } },
    }
}

/// Bytes as "12.3 MB".
pub fn size(n: Option<i64>) -> String {
    let Some(n) = n else { return "-".into() };
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// A status as a coloured badge (the word is always there: colour is never
/// the only sign).
pub fn badge(status: &str) -> Markup {
    let class = format!(
        "badge st-{}",
        status.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    html! { span class=(class) { (status) } }
}

/// Pretty JSON in a `<pre>`.
pub fn json(v: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    html! { pre.json { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes() {
        let now = Utc::now();
        assert_eq!(ago(now - chrono::Duration::seconds(90), now), "1 min ago");
        assert_eq!(ago(now + chrono::Duration::hours(3), now), "in 3 h");
        assert_eq!(size(Some(999)), "999 B");
        assert_eq!(size(Some(12_345_678)), "12.3 MB");
        assert_eq!(size(None), "-");
    }

    #[test]
    fn values_are_escaped() {
        let m = error_page(StatusCode::NOT_FOUND, "x", "<script>alert(1)</script>").into_string();
        assert!(!m.contains("<script>alert"), "{m}");
        assert!(m.contains("&lt;script&gt;"), "{m}");
    }
}
