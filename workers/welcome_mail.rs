//! `welcome_mail`: the seed's SendTenantWelcomeMail. Renders the welcome
//! message in the tenant's language (settings.language: en or es) and sends
//! it to the owner over SMTP (`crate::mail`: TLS and AUTH as
//! `LANDLORD_SMTP_URL` says). A receipt in the catalog, keyed per
//! tenant, makes a retry after a successful send a no-op; the Message-ID is
//! fixed per tenant so a mail server can drop the rare duplicate of a crash
//! between send and receipt.

use lettre::{Message, message::header::ContentType};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::runtime::{Job, JobContext, JobError, ResultExt};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WelcomeMail {}

/// Subject and body in one language.
pub fn render(language: &str, tenant_name: &str, slug: &str) -> (String, String) {
    match language {
        "es" => (
            format!("Bienvenido a {tenant_name}"),
            format!(
                "Hola,\n\nTu espacio «{tenant_name}» ({slug}) ya está listo.\n\
                 Puedes empezar a usarlo ahora mismo.\n\n— El equipo"
            ),
        ),
        _ => (
            format!("Welcome to {tenant_name}"),
            format!(
                "Hello,\n\nYour workspace \"{tenant_name}\" ({slug}) is ready.\n\
                 You can start using it right away.\n\n— The team"
            ),
        ),
    }
}

impl Job for WelcomeMail {
    const KIND: &'static str = "welcome_mail";
    const QUEUE: &'static str = "mail";
    const NEEDS_TENANT: bool = true;
    const TENANT_EXCLUSIVE: bool = false;
    const MAX_ATTEMPTS: u32 = 8;

    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let t = ctx.tenant()?.clone();
        let key = format!("welcome:{}", t.id);
        if let Some(sent_at) = sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
            "SELECT sent_at FROM mail_receipts WHERE dedupe_key = $1",
        )
        .bind(&key)
        .fetch_optional(&ctx.catalog)
        .await?
        {
            return Ok(json!({"already_sent_at": sent_at}));
        }
        let recipient: String = sqlx::query_scalar(
            "SELECT o.email FROM owners o JOIN tenants t ON t.owner_id = o.id WHERE t.id = $1",
        )
        .bind(t.id)
        .fetch_optional(&ctx.catalog)
        .await?
        .ok_or_else(|| JobError::fatal(format!("tenant {} has no owner to welcome", t.slug)))?;
        let smtp = ctx
            .settings
            .mail
            .endpoint()
            .map_err(|e| JobError::retryable(format!("{e:#}")))?;
        let language = t
            .settings
            .get("language")
            .and_then(Value::as_str)
            .unwrap_or("en")
            .to_string();
        let (subject, body) = render(&language, &t.name, &t.slug);
        let message_id = format!("<welcome-{}-{}@landlord>", t.slug, t.id);
        let email = Message::builder()
            .from(
                ctx.settings
                    .mail
                    .from
                    .parse()
                    .fatal_ctx("LANDLORD_MAIL_FROM")?,
            )
            .to(recipient
                .parse()
                .fatal_ctx(format_args!("owner address {recipient:?}"))?)
            .subject(subject.clone())
            .message_id(Some(message_id.clone()))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .fatal_ctx("building the mail")?;
        // TLS, STARTTLS and AUTH as the URL says (see `crate::mail`).
        let mut session = crate::mail::Session::open(&smtp)
            .await
            .map_err(|e| JobError::retryable(format!("{e:#}")))?;
        let sent = session.send(&email).await;
        session.quit().await;
        sent.map_err(|e| JobError::retryable(format!("{e:#}")))?;
        // The mail is out: failing now would send it again on the retry, so
        // the receipt is retried through short catalog outages (a killed
        // session, a restart) instead (the soak, seeds 101 and 202, saw two
        // mails where the receipt's connection had been terminated).
        let mut tries = 0;
        loop {
            let wrote = sqlx::query(
                "INSERT INTO mail_receipts (dedupe_key, tenant_id, recipient, message_id) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (dedupe_key) DO NOTHING",
            )
            .bind(&key)
            .bind(t.id)
            .bind(&recipient)
            .bind(&message_id)
            .execute(&ctx.catalog)
            .await;
            match wrote {
                Ok(_) => break,
                Err(e) if tries < 20 => {
                    tries += 1;
                    tracing::warn!(error = %e, "recording the mail receipt failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        ctx.emit(
            "mail.sent",
            json!({"template": "welcome", "language": language, "to": recipient, "message_id": message_id}),
        );
        Ok(
            json!({"to": recipient, "language": language, "subject": subject, "message_id": message_id}),
        )
    }
}
